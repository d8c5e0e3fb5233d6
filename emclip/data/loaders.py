"""The one entry point to the data (:func:`get_dataset`), profile-sized domain sets and loaders."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from emclip.data.augment import Augment
from emclip.data.cache import cache_from_env
from emclip.data.splits import SOURCES, SPLITS, SYNTHETIC_DEFAULT_N, check_choice
from emclip.data.synthetic import SyntheticDataset
from emclip.runtime import DATA_DIR_ENV, Profile, data_dir, get_profile
from emclip.tasks import get_task


def get_dataset(task, domain, split="train", source="synthetic", size=128, seed=0, root=None, n=None) -> Dataset:
    """One domain of one task as a torch Dataset of samples (docs/architecture.md).

    Args:
        task: ``"fundus"`` or ``"cardiac"``.
        domain: fundus ``domain1``..``domain4``; cardiac ``A``..``D``.
        split: ``train``, ``val`` or ``test`` (see :mod:`emclip.data.splits`).
        source: ``synthetic`` (generated on the fly) or ``real`` (Fundus-DG / M&Ms on disk).
        size: output side in pixels (real images are resized: image bilinear, mask nearest).
        seed: synthetic data seed (ignored for real data).
        root: real-data root; ``None`` reads ``$EMCLIP_DATA_DIR``. Fundus-DG is looked for in
            ``root/Fundus`` (or ``root``), M&Ms in ``root/MnM`` (or ``root``).
        n: number of synthetic samples; ``None`` = 160 / 24 / 40 for train / val / test (the
            ``cpu`` profile's counts). For real data, ``n`` keeps the first ``n`` samples.

    Returns:
        Dataset whose items are ``{"image": float32 (3, size, size) in [0, 1], "mask": int64
        (size, size), "domain": str, "id": str}``.
    """
    spec = get_task(task)
    spec.check_domain(domain)
    check_choice(split, SPLITS, "split")
    check_choice(source, SOURCES, "source")
    if isinstance(size, bool) or not float(size).is_integer() or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}.")
    if source == "synthetic":
        count = SYNTHETIC_DEFAULT_N[split] if n is None else int(n)
        return SyntheticDataset(spec.name, domain, split, count, size=int(size), seed=seed, cache=cache_from_env())
    base = data_dir(root)
    if base is None:
        raise FileNotFoundError(
            f"source='real' needs the data root: pass root=... or set {DATA_DIR_ENV} "
            "(see data/README.md for where to download Fundus-DG and M&Ms)."
        )
    if not base.is_dir():
        raise FileNotFoundError(f"Real-data root {base} does not exist. Check root= or {DATA_DIR_ENV}.")
    if spec.name == "fundus":
        from emclip.data.real_fundus import FundusDGDataset

        dataset = FundusDGDataset(base, domain, split, int(size))
    else:
        from emclip.data.real_mms import MMsDataset

        dataset = MMsDataset(base / "MnM" if (base / "MnM").is_dir() else base, domain, split, int(size))
    if n is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(int(n), len(dataset))))
    return dataset


def domain_datasets(task, domains: Sequence[str], split: str, profile: Profile | str | None = None,
                    source: str = "synthetic", root=None, seed: int = 0) -> ConcatDataset:
    """The ``split`` of several domains, sized by ``profile`` (image_size and *_per_domain counts)."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    check_choice(split, SPLITS, "split")
    if isinstance(domains, str):
        domains = (domains,)
    count = {"train": prof.train_per_domain, "val": prof.val_per_domain, "test": prof.test_per_domain}[split]
    n = count if source == "synthetic" else None
    return ConcatDataset([get_dataset(task, d, split, source, prof.image_size, seed, root, n) for d in domains])


class AugmentCollate:
    """Collate a list of samples with ``default_collate``, then augment the batch.

    The random stream comes from a torch Generator seeded with ``seed`` in the main process;
    in a worker it is re-seeded from ``worker_info.seed`` (which the DataLoader derives from
    its own seeded generator), so runs repeat and workers never share a stream.
    """

    def __init__(self, augment: Augment | None, seed: int):
        self.augment, self.seed = augment, int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._worker = None

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        if self.augment is None:
            return batch
        info = get_worker_info()
        if info is not None and self._worker != info.id:
            self._worker = info.id
            self.generator = torch.Generator().manual_seed(int(info.seed) % 2**63)
        batch["image"], batch["mask"] = self.augment(batch["image"], batch["mask"], self.generator)
        return batch


def make_dataloader(datasets_or_dataset, batch_size: int, shuffle: bool, augment=False, seed: int = 0,
                    num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over one dataset or a list of them (concatenated).

    Batches: ``image`` (B, 3, H, W), ``mask`` (B, H, W), ``domain`` list[str], ``id`` list[str].
    ``augment``: False / True / "appearance" / "geometric" / "both" / an :class:`Augment`.
    Shuffling and augmentation are seeded by ``seed`` (same seed -> same batches).
    """
    if isinstance(datasets_or_dataset, (list, tuple)):
        if not datasets_or_dataset:
            raise ValueError("make_dataloader got an empty list of datasets.")
        dataset = ConcatDataset(list(datasets_or_dataset))
    else:
        dataset = datasets_or_dataset
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    return DataLoader(dataset, batch_size=int(batch_size), shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, collate_fn=AugmentCollate(Augment.from_spec(augment), seed),
                      generator=torch.Generator().manual_seed(int(seed)),
                      persistent_workers=False)
