"""The synthetic multi-centre data set: on-the-fly, deterministic, sample contract (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from emclip.data.cache import SampleCache
from emclip.data.render import sample_rng
from emclip.data.styles import get_style
from emclip.data.synthetic_cardiac import render_cardiac
from emclip.data.synthetic_fundus import render_fundus

RENDERERS = {"fundus": render_fundus, "cardiac": render_cardiac}


def render_sample(task: str, domain: str, split: str, index: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, size, size) float32 in [0, 1] and mask (size, size) int64 of one synthetic sample.

    The same (task, domain, split, index, seed, size) always gives the same arrays.
    """
    rng = sample_rng(task, domain, split, index, seed)
    image, mask = RENDERERS[task](rng, size, get_style(task, domain))
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return image, mask


class SyntheticDataset(Dataset):
    """``n`` synthetic samples of one (task, domain, split), generated when indexed.

    Each item is ``{"image": float32 (3, H, W) in [0, 1], "mask": int64 (H, W), "domain": str,
    "id": str}`` with ``id`` like ``"syn-fundus-domain1-train-s0-00042"``.
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
        key = f"{self.sample_id(index)}-{self.size}px"
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
                "domain": self.domain, "id": self.sample_id(index)}

    def __repr__(self) -> str:
        return (f"SyntheticDataset(task={self.task!r}, domain={self.domain!r}, split={self.split!r}, "
                f"n={self.n}, size={self.size}, seed={self.seed})")
