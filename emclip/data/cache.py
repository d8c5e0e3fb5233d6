"""Optional on-disk cache of synthetic data: one compressed ``.npz`` per sample, or one ``.pt``
file per rendered split (:func:`emclip.data.store.synthetic_store`, memory-mapped on load).

Generation is fast, so the cache matters only for large images or slow disks-vs-CPU
trade-offs (e.g. the ``gpu`` profile at 224 px, rendered again by every new process). Enable it with
``EMCLIP_SYNTHETIC_CACHE=1`` (stored under ``emclip.runtime.cache_dir()/synthetic``) or a path.
Files are written atomically (:func:`emclip.fileio.atomic_write`), so parallel workers never read half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from emclip.fileio import atomic_write
from emclip.runtime import cache_dir

CACHE_ENV = "EMCLIP_SYNTHETIC_CACHE"


def cache_from_env() -> SampleCache | None:
    """The cache named by ``$EMCLIP_SYNTHETIC_CACHE`` (``1`` = default folder), else ``None``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value or value.lower() in {"0", "false", "no"}:
        return None
    folder = cache_dir() / "synthetic" if value.lower() in {"1", "true", "yes"} else Path(value).expanduser()
    return SampleCache(folder)


class SampleCache:
    """Stores (image, mask) arrays under a key string."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / (key.replace("|", "_").replace("/", "_") + ".npz")

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return data["image"], data["mask"]
        except (OSError, ValueError, KeyError):  # a corrupt entry is regenerated
            return None

    def save(self, key: str, image: np.ndarray, mask: np.ndarray) -> None:
        with atomic_write(self.path(key)) as tmp:
            np.savez_compressed(tmp, image=image, mask=mask)

    def tensors_path(self, key: str) -> Path:
        return self.folder / (key.replace("|", "_").replace("/", "_") + ".pt")

    def load_tensors(self, key: str) -> dict | None:
        """A dict of tensors saved by :meth:`save_tensors`, memory-mapped (``None`` if absent or corrupt)."""
        path = self.tensors_path(key)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, ValueError, EOFError):  # a corrupt entry is rendered again
            return None

    def save_tensors(self, key: str, state: dict) -> None:
        with atomic_write(self.tensors_path(key)) as tmp:
            torch.save(state, tmp)
