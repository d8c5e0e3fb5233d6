"""A rendered split held as compact uint8 tensors: render once, read for every epoch.

Rendering a synthetic sample costs milliseconds (about 64 samples/s per process at 224 px);
reading one from memory costs microseconds. :func:`render_store` turns any dataset of samples
(docs/architecture.md) into a :class:`TensorStore`:

- ``images`` uint8 (N, C, H, W), C = 1 when every image is grey (three equal channels: MRI),
  else 3; ``masks`` uint8 (N, H, W); ``meta`` one dict per sample with every other key
  (``domain``, ``id``, and for cardiac data ``volume``, ``slice``, ...).
- ``store[i]`` is a sample of the data contract again: float32 (3, H, W) image = uint8 / 255,
  int64 mask. Images are quantised to 8 bits (the real data sets are 8-bit images too); the
  difference from the float render is at most 1/510.
- ``store.gather(indices)`` reads a whole uint8 batch in one indexing op (no per-sample tensors,
  no per-sample collation): what the training loader moves to the device, where
  :mod:`emclip.data.pipeline` converts it.

Rendering runs in ``workers`` processes (a DataLoader over the source). :func:`synthetic_store`
renders one synthetic (task, domain, split, n, size, seed) once per process (memoised), and keeps
it in the on-disk cache (``$EMCLIP_SYNTHETIC_CACHE``, one file per split, memory-mapped on load)
when that is enabled. Stores hold plain tensors, so forked loader workers share their memory.
Design choice, not from the paper.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from emclip.data import render, styles, synthetic, synthetic_cardiac, synthetic_fundus
from emclip.data.cache import cache_from_env
from emclip.data.synthetic import SyntheticDataset

_TENSOR_KEYS = ("image", "mask")


def to_float_image(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (..., C, H, W) -> float32 in [0, 1] with 3 channels (grey repeated); floats pass."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    if images.shape[-3] == 1:
        images = images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    return images


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _quantise_batch(samples: list[dict]) -> dict:
    """Collate in a render worker: uint8 image and mask tensors, the other keys as lists."""
    out = {"image": _to_uint8(torch.stack([s["image"] for s in samples])),
           "mask": torch.stack([torch.as_tensor(s["mask"]) for s in samples]),
           "meta": [{k: v for k, v in s.items() if k not in _TENSOR_KEYS} for s in samples]}
    if out["mask"].numel() and (int(out["mask"].min()) < 0 or int(out["mask"].max()) > 255):
        raise ValueError("TensorStore holds label maps as uint8: labels must lie in 0..255.")
    out["mask"] = out["mask"].to(torch.uint8)
    return out


def _select(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[index]``; in a loader worker written straight into shared memory (as
    ``default_collate`` does), so the batch reaches the main process without another copy."""
    if get_worker_info() is None:
        return tensor.index_select(0, index)
    shape = (len(index), *tensor.shape[1:])
    storage = tensor._typed_storage()._new_shared(math.prod(shape), device=tensor.device)
    return torch.index_select(tensor, 0, index, out=tensor.new(storage).resize_(shape))


class TensorStore(Dataset):
    """Samples held as uint8 tensors (see the module docstring).

    Args:
        images: uint8 (N, C, H, W) with C = 1 (grey) or 3.
        masks: uint8 (N, H, W) label maps.
        meta: N dicts with the sample's other keys (``domain``, ``id``, ...).
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, meta: Sequence[dict]):
        if images.dtype != torch.uint8 or masks.dtype != torch.uint8:
            raise TypeError(f"TensorStore holds uint8 tensors, got images {images.dtype}, masks {masks.dtype}.")
        if images.ndim != 4 or images.shape[1] not in (1, 3) or masks.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"TensorStore needs images (N, 1|3, H, W) and masks (N, H, W), got "
                             f"{tuple(images.shape)} and {tuple(masks.shape)}.")
        if len(meta) != images.shape[0]:
            raise ValueError(f"TensorStore got {images.shape[0]} images but {len(meta)} meta entries.")
        self.images, self.masks, self.meta = images, masks, list(meta)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        return {"image": to_float_image(self.images[index]).contiguous(), "mask": self.masks[index].long(),
                **self.meta[index]}

    def gather(self, indices: Sequence[int]) -> dict:
        """A uint8 batch in one indexing op: ``image`` (B, C, H, W), ``mask`` (B, H, W), and the
        other keys collated as ``default_collate`` collates them (lists of str, ...)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        batch = default_collate([self.meta[i] for i in index.tolist()]) if self.meta and self.meta[0] else {}
        return {"image": _select(self.images, index), "mask": _select(self.masks, index), **batch}

    @property
    def indices(self) -> IndexView:
        """A dataset of this store's indices; a loader over it with ``collate_fn=store.gather``
        reads whole uint8 batches (what :class:`~emclip.data.pipeline.BatchLoader` does)."""
        return IndexView(len(self))

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.masks.nbytes

    @classmethod
    def concat(cls, stores: Sequence[TensorStore]) -> TensorStore:
        """One store of several (grey stores are widened to 3 channels if colour ones are mixed in)."""
        stores = list(stores)
        if len(stores) == 1:
            return stores[0]
        channels = max(s.images.shape[1] for s in stores)
        images = torch.cat([s.images.expand(-1, channels, -1, -1) for s in stores])
        return cls(images, torch.cat([s.masks for s in stores]), [m for s in stores for m in s.meta])

    def state(self) -> dict:
        """Tensors and meta as a dict that ``torch.save`` writes and ``weights_only`` loads."""
        return {"images": self.images, "masks": self.masks, "meta": self.meta}

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"TensorStore(n={n}, channels={c}, size={h}x{w}, {self.nbytes / 2**20:.1f} MiB)"


class IndexView(Dataset):
    """``n`` items that are their own index (0..n-1): the loader's sampler and workers hand out
    indices, and :meth:`TensorStore.gather` turns a batch of them into tensors in one op."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        return int(index) % self.n


def _one_blas_thread(_worker_id: int) -> None:
    threadpool_limits(1, "blas")


def render_store(dataset: Dataset, workers: int = 0, batch_size: int = 16) -> TensorStore:
    """Render every sample of ``dataset`` once into a :class:`TensorStore`.

    ``workers`` > 0 renders in that many processes (order preserved). Rendering runs with one BLAS
    thread per process: its matrix products are small, and more threads only contend for the cores.
    """
    if isinstance(dataset, TensorStore):
        return dataset
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=int(workers),
                        collate_fn=_quantise_batch, worker_init_fn=_one_blas_thread if workers else None)
    images, masks, meta = [], [], []
    with threadpool_limits(1, "blas"):
        for chunk in loader:
            images.append(chunk["image"])
            masks.append(chunk["mask"])
            meta.extend(chunk["meta"])
    if not images:
        raise ValueError("render_store got an empty dataset; there is nothing to render.")
    images = torch.cat(images)
    if bool((images[:, :1] == images[:, 1:]).all()):
        images = images[:, :1].clone()  # grey: one channel is enough
    return TensorStore(images, torch.cat(masks), meta)


@lru_cache(maxsize=1)
def renderer_fingerprint() -> str:
    """12 hex digits over the renderers' source, so an on-disk store of older renderers is never read."""
    digest = hashlib.sha1()
    for module in (synthetic, synthetic_fundus, synthetic_cardiac, render, styles):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


#: rendered stores kept per process, least recently used dropped first beyond this many bytes
MAX_STORE_BYTES = 4 * 2**30
_STORES: OrderedDict[tuple, TensorStore] = OrderedDict()


def clear_stores() -> None:
    """Forget the stores :func:`synthetic_store` keeps in this process (the disk cache stays)."""
    _STORES.clear()


def synthetic_store(task: str, domain: str, split: str, n: int, size: int, seed: int, workers: int = 0) -> TensorStore:
    """The synthetic split ``(task, domain, split, n, size, seed)``, rendered once per process.

    Kept in memory (up to :data:`MAX_STORE_BYTES` in all); ``workers`` render processes. With
    ``$EMCLIP_SYNTHETIC_CACHE`` set the store is also written to (and memory-mapped from) the
    on-disk cache, so later processes skip the rendering too.
    """
    key = (task, domain, split, int(n), int(size), int(seed))
    if key in _STORES:
        _STORES.move_to_end(key)
        return _STORES[key]
    cache = cache_from_env()
    name = f"store-{task}-{domain}-{split}-s{seed}-n{n}-{size}px-{renderer_fingerprint()}"
    state = cache.load_tensors(name) if cache is not None else None
    if state is not None:
        store = TensorStore(state["images"], state["masks"], state["meta"])
    else:
        store = render_store(SyntheticDataset(task, domain, split, n, size=size, seed=seed), workers=workers)
        if cache is not None:
            cache.save_tensors(name, store.state())
    _STORES[key] = store
    while len(_STORES) > 1 and sum(s.nbytes for s in _STORES.values()) > MAX_STORE_BYTES:
        _STORES.popitem(last=False)
    return store
