"""The batch loader: workers that stay alive, batches moved to the device, augmentation there.

:class:`BatchLoader` is the ``torch.utils.data.DataLoader`` that :func:`emclip.data.make_dataloader`
returns. Over a :class:`~emclip.data.store.TensorStore` a batch is one indexing op on uint8 tensors
(:meth:`~emclip.data.store.TensorStore.gather`: about one memory copy of the batch), done by the
workers, which stay alive across epochs (``persistent_workers``), or by the main process
(``num_workers=0``, which is enough for a store); batches go to pinned memory when the device is a
GPU. In the main process each batch is then moved to ``device``,
converted to float (uint8 / 255, grey repeated to 3 channels) and augmented there, as one batch,
with torch ops.

Randomness that repeats and resumes exactly (design choice, not from the paper): the
augmentation of batch ``i`` of an epoch uses its own ``torch.Generator`` (on ``device``),
seeded from ``(base, rank, i)``; ``base`` is drawn from the loader's ``generator`` when the epoch's
iterator is created. So a batch's augmentation depends only on the loader's generator state at
the start of the epoch, the rank and the batch's position -- never on how many batches (or
epochs) an earlier iterator consumed, or on workers. :func:`emclip.engine.train`'s epoch
iterator reseeds that generator from ``(seed, epoch)``, so a run killed after a checkpoint and
resumed sees the same batches, bit for bit on the CPU; each DDP rank augments differently.
The numbers a CUDA generator draws differ from the CPU's (another algorithm), so a GPU run
repeats itself but not a CPU run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from emclip.data.augment import Augment
from emclip.data.store import TensorStore, to_float_image


def batch_seed(base: int, rank: int, index: int) -> int:
    """63-bit seed of batch ``index`` of an epoch whose base seed is ``base``, on ``rank``."""
    state = np.random.SeedSequence([int(base) % 2**63, int(rank), int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _current_rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class BatchLoader(DataLoader):
    """A DataLoader whose batches are delivered on ``device`` and augmented there.

    Batches: ``image`` float32 (B, 3, H, W) in [0, 1], ``mask`` int64 (B, H, W), both on
    ``device``; ``domain``/``id`` lists and any other sample keys as ``default_collate`` makes them.

    Args:
        dataset: a :class:`TensorStore` (read as uint8 and converted on ``device``) or any
            dataset of samples (docs/architecture.md).
        augment: an :class:`Augment` or ``None``.
        device: where batches go and augmentation runs (``None``: the CPU).
        rank: the augmentation stream (``None``: the ``torch.distributed`` rank, else 0).
        **loader_kwargs: the usual DataLoader arguments (batch_size, shuffle, sampler, ...).
    """

    def __init__(self, dataset: Dataset, *, augment: Augment | None = None, device=None, rank: int | None = None,
                 **loader_kwargs):
        self.store = dataset if isinstance(dataset, TensorStore) else None
        if self.store is not None:  # workers hand out index batches; gather reads each batch in one op
            super().__init__(self.store.indices, collate_fn=self.store.gather, **loader_kwargs)
        else:
            super().__init__(dataset, **loader_kwargs)
        self.augment = augment
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rank = _current_rank() if rank is None else int(rank)

    def to(self, device) -> BatchLoader:
        """Deliver (and augment) batches on ``device`` from the next epoch on; pins memory for CUDA.

        For a trainer that learns the device only after the loader was built. Returns ``self``.
        """
        device = torch.device(device)
        pin = device.type == "cuda"
        if pin != self.pin_memory and self._iterator is not None:
            self._iterator = None  # the persistent workers' iterator was built with the other setting
        self.device, self.pin_memory = device, pin
        return self

    def __iter__(self):
        if self.generator is not None:
            base = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        else:
            base = int(torch.empty((), dtype=torch.int64).random_().item())
        return self._deliver(super().__iter__(), base)

    def _deliver(self, batches, base: int):
        for index, batch in enumerate(batches):
            yield self.to_device(batch, batch_seed(base, self.rank, index))

    def to_device(self, batch: dict, seed: int) -> dict:
        """Move ``batch`` to the device, convert it to float and augment it with generator ``seed``."""
        non_blocking = self.device.type == "cuda"
        image = to_float_image(batch["image"].to(self.device, non_blocking=non_blocking))
        mask = batch["mask"].to(self.device, non_blocking=non_blocking).long()
        if self.augment is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            image, mask = self.augment(image.contiguous(), mask, generator)
        return {**batch, "image": image.contiguous(), "mask": mask}


def build_loader(dataset: Dataset, batch_size: int, shuffle: bool, augment: Augment | None, seed: int,
                 num_workers: int, drop_last: bool, device=None, rank: int | None = None,
                 world_size: int = 1) -> BatchLoader:
    """A :class:`BatchLoader` with the kit's settings (see :func:`emclip.data.make_dataloader`)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if world_size > 1:
        rank = _current_rank() if rank is None else int(rank)
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=int(seed),
                                     drop_last=drop_last)
    elif shuffle:  # its own generator: the loader's first iterator draws worker seeds from the loader's
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(int(seed)))
    else:
        sampler = SequentialSampler(dataset)
    return BatchLoader(dataset, augment=augment, device=device, rank=rank, batch_size=int(batch_size),
                       sampler=sampler, num_workers=int(num_workers), drop_last=drop_last,
                       generator=torch.Generator().manual_seed(int(seed) + 1), persistent_workers=num_workers > 0,
                       pin_memory=device.type == "cuda")
