"""The one entry point to the data (:func:`get_dataset`), profile-sized domain sets and loaders.

- :func:`get_dataset`: one domain, samples rendered (synthetic) or read (real) when indexed.
- :func:`domain_datasets`: the profile-sized split of several domains; synthetic splits come
  rendered once into a uint8 :class:`~emclip.data.store.TensorStore` (memoised per process).
- :func:`make_dataloader`: a :class:`~emclip.data.pipeline.BatchLoader` -- persistent workers,
  pinned memory on a GPU, batches converted and augmented on the training device.

Every argument is checked by type and range first; a wrong one raises
:class:`emclip.errors.ConfigError` naming the argument, the value and what is valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset

from emclip.data.augment import Augment
from emclip.data.cache import cache_from_env
from emclip.data.pipeline import BatchLoader, build_loader
from emclip.data.splits import SOURCES, SPLITS, SYNTHETIC_DEFAULT_N
from emclip.data.store import TensorStore, synthetic_store
from emclip.data.synthetic import SyntheticDataset
from emclip.errors import ConfigError
from emclip.runtime import DATA_DIR_ENV, Profile, data_dir, get_profile
from emclip.tasks import TASKS, Task, get_task

MIN_SIZE = 16


def _check_int(name: str, value, low: int, high: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int in low..high (``bool`` and non-integral numbers are refused)."""
    if value is None and allow_none:
        return None
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < low or (high is not None and value > high):
        valid = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
        raise ConfigError(f"{name}={value!r} is invalid: give {valid}{' or None' if allow_none else ''}.")
    return int(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is invalid: give True or False.")
    return value


def _check_choice(name: str, value, valid: Sequence[str]) -> str:
    """``value`` if it is one of ``valid`` (a ConfigError that lists them otherwise)."""
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"Unknown {name} {value!r}. Valid {name}s: {', '.join(valid)}.")
    return value


def _check_task(task) -> Task:
    if isinstance(task, Task):
        return task
    key = task.strip().lower() if isinstance(task, str) else task
    return get_task(_check_choice("task", key, tuple(TASKS)))


def _check_root(root):
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ConfigError(f"root={root!r} is invalid: give a folder path (str or Path) or None.")
    return root


def get_dataset(task, domain, split="train", source="synthetic", size=128, seed=0, root=None, n=None) -> Dataset:
    """One domain of one task as a torch Dataset of samples (docs/architecture.md).

    Args:
        task: ``"fundus"`` or ``"cardiac"``.
        domain: fundus ``domain1``..``domain4``; cardiac ``A``..``D``.
        split: ``train``, ``val`` or ``test`` (see :mod:`emclip.data.splits`).
        source: ``synthetic`` (generated when indexed) or ``real`` (Fundus-DG / M&Ms on disk).
        size: output side in pixels, an int >= 16 (real images are resized).
        seed: synthetic data seed, an int >= 0 (ignored for real data).
        root: real-data root; ``None`` reads ``$EMCLIP_DATA_DIR``. Fundus-DG is looked for in
            ``root/Fundus`` (or ``root``), M&Ms in ``root/MnM`` (or ``root``).
        n: number of synthetic samples, an int >= 0; ``None`` = the ``cpu`` profile's per-domain
            count of the split (``emclip.data.splits.SYNTHETIC_DEFAULT_N``). For real data, ``n``
            keeps the first ``n`` samples.

    Returns:
        Dataset whose items are ``{"image": float32 (3, size, size) in [0, 1], "mask": int64
        (size, size), "domain": str, "id": str}``.

    Raises:
        ConfigError: an argument of the wrong type or range (the message names it).
    """
    spec = _check_task(task)
    _check_choice("domain", domain, spec.domains)
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, SOURCES)
    size = _check_int("size", size, MIN_SIZE)
    seed = _check_int("seed", seed, 0)
    n = _check_int("n", n, 0, allow_none=True)
    _check_root(root)
    if source == "synthetic":
        count = SYNTHETIC_DEFAULT_N[split] if n is None else n
        return SyntheticDataset(spec.name, domain, split, count, size=size, seed=seed, cache=cache_from_env())
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

        dataset = FundusDGDataset(base, domain, split, size)
    else:
        from emclip.data.real_mms import MMsDataset

        dataset = MMsDataset(base / "MnM" if (base / "MnM").is_dir() else base, domain, split, size)
    if n is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(n, len(dataset))))
    return dataset


def domain_datasets(task, domains: Sequence[str], split: str, profile: Profile | str | None = None,
                    source: str = "synthetic", root=None, seed: int = 0,
                    render_workers: int | None = None) -> Dataset:
    """The ``split`` of several domains, sized by ``profile`` (image_size and *_per_domain counts).

    Synthetic data: a :class:`~emclip.data.store.TensorStore`, each domain rendered once per
    process (``render_workers`` processes; default the profile's ``num_workers``) and 8-bit
    quantised; real data: a ``ConcatDataset`` of :func:`get_dataset` sets. Either way the items
    are samples of the data contract, domains in the order given.
    """
    spec = _check_task(task)
    if profile is not None and not isinstance(profile, (str, Profile)):
        raise ConfigError(f"profile={profile!r} is invalid: give a profile name (ci, cpu, gpu, auto), a Profile or None.")
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, SOURCES)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("render_workers", prof.num_workers if render_workers is None else render_workers, 0)
    if isinstance(domains, str):
        domains = (domains,)
    if not isinstance(domains, Sequence) or not domains:
        raise ConfigError(f"domains={domains!r} is invalid: give a domain name or a non-empty list of "
                          f"them ({', '.join(spec.domains)}).")
    for domain in domains:
        _check_choice("domain", domain, spec.domains)
    count = {"train": prof.train_per_domain, "val": prof.val_per_domain, "test": prof.test_per_domain}[split]
    if source == "synthetic":
        return TensorStore.concat([synthetic_store(spec.name, d, split, count, prof.image_size, seed, workers)
                                   for d in domains])
    return ConcatDataset([get_dataset(spec, d, split, source, prof.image_size, seed, root) for d in domains])


def make_dataloader(datasets_or_dataset, batch_size: int, shuffle: bool, augment=False, seed: int = 0,
                    num_workers: int = 0, drop_last: bool = False, device=None, rank: int | None = None,
                    world_size: int = 1) -> BatchLoader:
    """A loader over one dataset or a list of them (concatenated; stores stay one store).

    Batches: ``image`` float32 (B, 3, H, W) in [0, 1], ``mask`` int64 (B, H, W), both on
    ``device``; ``domain`` list[str], ``id`` list[str] (and any other sample keys).

    Args:
        augment: ``False``/``True``, a mode (``"appearance"``, ``"geometric"``, ``"both"``,
            ``"style"``, ``"none"``), a dict spec (``{"mode": ..., "gamma": [lo, hi], ...}``, the
            form of a model config's ``config["train"]["augment"]``) or an :class:`Augment`.
        seed: seeds shuffling and augmentation (same seed -> same batches).
        num_workers: loader processes; they stay alive across epochs.
        device: where batches are delivered and augmented (``None``: the CPU); pins memory on CUDA.
        rank, world_size: each rank augments with its own stream (``rank`` default: the
            ``torch.distributed`` rank, else 0); with ``world_size > 1`` each rank also reads its
            shard (``DistributedSampler``, ``rank`` in 0..world_size-1).
    """
    if isinstance(datasets_or_dataset, (list, tuple)):
        if not datasets_or_dataset:
            raise ConfigError("make_dataloader got an empty list of datasets; pass at least one dataset.")
        parts = list(datasets_or_dataset)
        if all(isinstance(p, TensorStore) for p in parts):
            dataset = TensorStore.concat(parts)
        else:
            dataset = ConcatDataset(parts)
    elif isinstance(datasets_or_dataset, Dataset):
        dataset = datasets_or_dataset
    else:
        raise ConfigError(f"datasets_or_dataset={type(datasets_or_dataset).__name__} is invalid: give a torch "
                          "Dataset of samples (emclip.data.get_dataset / domain_datasets) or a list of them.")
    batch_size = _check_int("batch_size", batch_size, 1)
    shuffle, drop_last = _check_bool("shuffle", shuffle), _check_bool("drop_last", drop_last)
    seed = _check_int("seed", seed, 0)
    num_workers = _check_int("num_workers", num_workers, 0, 64)
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0, world_size - 1 if world_size > 1 else None, allow_none=True)
    try:
        device = torch.device(device) if device is not None else None
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is invalid: give 'cpu', 'cuda', 'cuda:0', a torch.device or None.") from err
    return build_loader(dataset, batch_size, shuffle, Augment.from_spec(augment), seed, num_workers, drop_last,
                        device=device, rank=rank, world_size=world_size)
