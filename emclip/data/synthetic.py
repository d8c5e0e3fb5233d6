"""The synthetic multi-centre data set: on-the-fly, deterministic, sample contract (docs/architecture.md).

Cardiac samples are slices of synthetic volumes (see :mod:`emclip.data.synthetic_cardiac`): sample
``index`` is slice ``index % SLICES_PER_VOLUME`` of volume ``index // SLICES_PER_VOLUME``, and
each carries ``volume``, ``slice``, ``spacing`` and ``slice_thickness`` like the real M&Ms samples
(:func:`sample_meta`). A count ``n`` that is not a multiple of ``SLICES_PER_VOLUME`` leaves the
last volume without its apical slices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from emclip.data.cache import SampleCache
from emclip.data.render import sample_rng, volume_rng
from emclip.data.styles import get_style
from emclip.data.synthetic_cardiac import (
    SLICE_THICKNESS_MM,
    SLICES_PER_VOLUME,
    pixel_spacing_mm,
    render_cardiac,
    slice_params,
    volume_params,
)
from emclip.data.synthetic_fundus import render_fundus

#: part of the cache key: bump it when a generator changes what it draws (old cache files are then unused)
GENERATOR_VERSION = 2


def render_sample(task: str, domain: str, split: str, index: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, size, size) float32 in [0, 1] and mask (size, size) int64 of one synthetic sample.

    The same (task, domain, split, index, seed, size) always gives the same arrays.
    """
    rng = sample_rng(task, domain, split, index, seed)
    style = get_style(task, domain)
    if task == "cardiac":
        volume, z = divmod(int(index), SLICES_PER_VOLUME)
        anatomy = volume_params(volume_rng(task, domain, split, volume, seed), style)
        image, mask = render_cardiac(rng, size, style, slice_params(anatomy, z, rng))
    else:
        image, mask = render_fundus(rng, size, style)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return image, mask


def sample_meta(task: str, domain: str, split: str, index: int, seed: int, size: int) -> dict:
    """The keys a synthetic sample carries besides image, mask, domain and id.

    Cardiac: ``volume`` (str, unique per volume within the domain, split and seed), ``slice``
    (int, 0 = base), ``spacing`` (float32 (2,), nominal in-plane mm) and ``slice_thickness``
    (float32 scalar, nominal mm), as the real M&Ms samples. Fundus: ``{}``.
    """
    if task != "cardiac":
        return {}
    volume, z = divmod(int(index), SLICES_PER_VOLUME)
    mm = pixel_spacing_mm(size)
    return {"volume": f"syn-{task}-{domain}-{split}-s{int(seed)}-v{volume:04d}", "slice": z,
            "spacing": torch.tensor([mm, mm], dtype=torch.float32),
            "slice_thickness": torch.tensor(SLICE_THICKNESS_MM, dtype=torch.float32)}


class SyntheticDataset(Dataset):
    """``n`` synthetic samples of one (task, domain, split), generated when indexed.

    Each item is ``{"image": float32 (3, H, W) in [0, 1], "mask": int64 (H, W), "domain": str,
    "id": str}`` with ``id`` like ``"syn-fundus-domain1-train-s0-00042"``, plus for cardiac data
    the volume keys of :func:`sample_meta`.
    """

    def __init__(self, task: str, domain: str, split: str, n: int, size: int = 128, seed: int = 0,
                 cache: SampleCache | None = None):
        if int(n) < 0 or int(size) < 16:
            raise ValueError(f"Need n >= 0 and size >= 16, got n={n}, size={size}.")
        self.task, self.domain, self.split = task, domain, split
        self.n, self.size, self.seed, self.cache = int(n), int(size), int(seed), cache

    def __len__(self) -> int:
        return self.n

    def sample_id(self, index: int) -> str:
        return f"syn-{self.task}-{self.domain}-{self.split}-s{self.seed}-{index:05d}"

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        key = f"{self.sample_id(index)}-{self.size}px-g{GENERATOR_VERSION}"
        if self.cache is not None:
            hit = self.cache.load(key)
            if hit is not None:
                return hit
        image, mask = render_sample(self.task, self.domain, self.split, index, self.seed, self.size)
        if self.cache is not None:
            self.cache.save(key, image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % self.n
        image, mask = self.arrays(index)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "mask": torch.from_numpy(mask),
                "domain": self.domain, "id": self.sample_id(index),
                **sample_meta(self.task, self.domain, self.split, index, self.seed, self.size)}

    def __repr__(self) -> str:
        return (f"SyntheticDataset(task={self.task!r}, domain={self.domain!r}, split={self.split!r}, "
                f"n={self.n}, size={self.size}, seed={self.seed})")
