"""Atomic checkpoints that carry their run record, loadable with ``weights_only=True``.

A checkpoint is a dict of plain types and tensors:

``format`` (int, :data:`FORMAT`), ``step`` (optimiser steps done), ``finished`` (``step`` reached
the record's ``train.steps``), ``record`` (the run record, :mod:`emclip.engine.record`: task,
model name and complete config, data, training settings, profile, versions), ``model``
(state_dict: weights and buffers, EM-CLIP's EM bases ``em.mu`` included), ``optimizer``,
``scheduler``, ``scaler`` (the fp16 GradScaler, or ``None``), ``rng`` (Python, NumPy, torch CPU
and CUDA generator states, see :func:`rng_state`) and ``history`` (dict of lists).

The model rebuilds from the file alone: :func:`load_run` returns ``(model, record)``. Nothing is
read from the file name. Writes go through :func:`emclip.fileio.atomic_write` (a temporary file
moved into place with ``os.replace``), so a run killed while saving leaves the previous
checkpoint intact. A file that cannot be read as a checkpoint (empty, truncated, another file
type, an older format) raises :class:`emclip.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emclip.errors import CheckpointError
from emclip.fileio import atomic_write

FORMAT = 2
_KEYS = ("step", "record", "model", "history")


def checkpoint_name(task, model: str, train_domains, profile, seed: int | None = None,
                    tag: str | None = None) -> str:
    """A readable file name for a run (``tag`` marks non-default configs); a label, never parsed.

    >>> checkpoint_name("fundus", "emclip", ["domain1"], "ci")
    'fundus_emclip_domain1_ci.pt'
    >>> checkpoint_name("cardiac", "unet", ["A", "B"], "cpu", seed=1)
    'cardiac_unet_A+B_cpu_seed1.pt'
    >>> checkpoint_name("fundus", "emclip", "domain2", "cpu", seed=0, tag="K4-T1")
    'fundus_emclip_domain2_cpu_seed0_K4-T1.pt'
    """
    task_name = getattr(task, "name", task)
    prof = getattr(profile, "name", profile)
    domains = [train_domains] if isinstance(train_domains, str) else list(train_domains)
    if not domains:
        raise ValueError("train_domains must name at least one domain, e.g. ['domain1'].")
    name = f"{task_name}_{model}_{'+'.join(str(d) for d in domains)}_{prof}"
    name += f"_seed{seed}" if seed is not None else ""
    return f"{name}_{tag}.pt" if tag else f"{name}.pt"


def config_tag(overrides: dict) -> str | None:
    """A short readable tag for model-config ``overrides`` (for :func:`checkpoint_name`), ``None`` if empty.

    Each changed key becomes ``<section>_<key><value>``; a dict or list value becomes an 8-digit
    digest of its JSON, so that two different specs never share a file name.

    >>> config_tag({"em": {"bases": 4, "iters": 1}})
    'em_bases4-em_iters1'
    >>> config_tag({"train": {"augment": "style"}})
    'train_augmentstyle'
    >>> config_tag({}) is None
    True
    """
    parts = []
    for section, changes in overrides.items():
        for key, value in changes.items():
            if isinstance(value, (dict, list, tuple)):
                value = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
            parts.append(f"{section}_{key}{value}")
    return "-".join(parts) or None


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


def rng_state() -> dict:
    """Python, NumPy and torch (CPU, every CUDA device) generator states as plain types/tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def save_checkpoint(path, model: nn.Module, record: dict, optimizer=None, scheduler=None, step: int = 0,
                    history: dict | None = None, scaler=None) -> Path:
    """Write a checkpoint atomically (see the module docstring); returns the path."""
    path = Path(path)
    bare = unwrap(model)
    payload = {
        "format": FORMAT,
        "step": int(step),
        "finished": int(step) >= int(record["train"]["steps"]),
        "record": record,
        "model": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_state(),
        "history": history or {},
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path, mmap: bool = False) -> dict:
    """The checkpoint dict of ``path`` (``weights_only=True``, on the CPU), checked.

    ``mmap=True`` maps the tensors instead of reading them (fast when only the record is needed).
    Raises :class:`CheckpointError` (a ``ValueError``) naming the path for a missing, empty,
    truncated or foreign file, or one written by an older emclip without a run record.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train first (emclip train ... --out {path}) or pass the "
                              "path of an existing .pt file.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes): a run was probably killed before its first "
                              "save. Delete it and train again.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        raise CheckpointError(f"Checkpoint {path} cannot be read (truncated, corrupted or not a PyTorch file: "
                              f"{type(err).__name__}: {str(err)[:200]}). Delete it and train again.") from err
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(f"{path} is a PyTorch file but not an emclip checkpoint. Pass a file written by "
                              "emclip train / emclip.engine.train.")
    if ckpt["format"] != FORMAT or any(k not in ckpt for k in _KEYS):
        raise CheckpointError(f"Checkpoint {path} has format {ckpt['format']!r}, not {FORMAT}: it was written by an "
                              "older emclip without a run record. Train it again (the record is what makes a "
                              "checkpoint reusable).")
    return ckpt


def read_record(path) -> tuple[dict, int]:
    """``(record, step)`` of a checkpoint, without reading its weights."""
    ckpt = read_checkpoint(path, mmap=True)
    return ckpt["record"], int(ckpt["step"])


def load_checkpoint(path, model: nn.Module | None = None, optimizer=None, scheduler=None, scaler=None,
                    restore_rng: bool = False) -> dict:
    """Read a checkpoint and load what is given into it; returns the checkpoint dict.

    Raises :class:`CheckpointError` when the file is unreadable or holds another task or model
    than ``model``.
    """
    ckpt = read_checkpoint(path)
    record = ckpt["record"]
    if model is not None:
        bare = unwrap(model)
        task, name = getattr(bare, "task_name", None), getattr(bare, "config", {}).get("name")
        if task is not None and record["task"] != task:
            raise CheckpointError(f"Checkpoint {path} was trained for task {record['task']!r}, the model is for {task!r}.")
        if name is not None and record["model"]["name"] != name:
            raise CheckpointError(f"Checkpoint {path} holds model {record['model']['name']!r}, not {name!r}; rebuild "
                                  "it from the file with emclip.engine.load_run(path).")
        try:
            bare.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise CheckpointError(f"Checkpoint {path} does not fit the model: {str(err)[:300]}") from err
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        set_rng_state(ckpt["rng"])
    return ckpt


def build_model(record: dict) -> nn.Module:
    """A fresh (untrained) model built from a record's complete model config and task."""
    from emclip.models import create_model_from_config
    from emclip.models.schema import upgrade_config

    return create_model_from_config(upgrade_config(record["model"]["config"]), record["task"])


def load_run(path, device="cpu") -> tuple[nn.Module, dict]:
    """``(model, record)``: the model rebuilt from the checkpoint alone, weights loaded, in eval mode."""
    from emclip.runtime import get_device

    ckpt = read_checkpoint(path)
    model = build_model(ckpt["record"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"Checkpoint {path}: the weights do not fit the model its record describes "
                              f"({str(err)[:300]}). Was it written by another emclip version? Train it again.") from err
    return model.to(get_device(device)).eval(), ckpt["record"]


def load_model(path, device="cpu") -> nn.Module:
    """The model of a checkpoint (:func:`load_run` without the record)."""
    return load_run(path, device)[0]
