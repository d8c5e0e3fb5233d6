"""Atomic checkpoints with everything an exact resume needs, loadable with ``weights_only=True``.

A checkpoint is a dict of plain types and tensors:

``format`` (int), ``step`` (optimiser steps done), ``model`` (state_dict: weights and buffers,
EM-CLIP's EM bases ``em.mu`` included), ``optimizer``, ``scheduler``, ``rng`` (Python, NumPy,
torch CPU and CUDA generator states, see :func:`rng_state`), ``config`` (the model's resolved
config), ``model_name``, ``task``, ``history`` (dict of lists), ``meta`` (free dict).

Writes go through :func:`emclip.fileio.atomic_write` (a temporary file moved into place with
``os.replace``), so a run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emclip.fileio import atomic_write

FORMAT = 1


def checkpoint_name(task, model: str, train_domains, profile, seed: int | None = None,
                    tag: str | None = None) -> str:
    """The deterministic file name notebooks 04 and 05 agree on (``tag`` marks non-default configs).

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


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model)


def rng_state() -> dict:
    """Python, NumPy and torch (CPU, every CUDA device) generator states as plain types/tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


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


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, step: int = 0,
                    history: dict | None = None, meta: dict | None = None) -> Path:
    """Write a checkpoint atomically (see the module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bare = unwrap(model)
    payload = {
        "format": FORMAT,
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "config": dict(getattr(bare, "config", {}) or {}),
        "model_name": str(getattr(bare, "config", {}).get("name", type(bare).__name__)),
        "task": getattr(bare, "task_name", None),
        "history": history or {},
        "meta": meta or {},
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path, model: nn.Module | None = None, optimizer=None, scheduler=None,
                    map_location="cpu", restore_rng: bool = False) -> dict:
    """Read a checkpoint (``weights_only=True``) and load what is given into it; returns the dict.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when the checkpoint was
    written for another model or task than ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Train first (emclip train ... --out {path}) "
                                "or pass the path of an existing .pt file.")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an emclip checkpoint (format {FORMAT}).")
    if model is not None:
        bare = unwrap(model)
        task = getattr(bare, "task_name", None)
        if task is not None and ckpt.get("task") not in (None, task):
            raise ValueError(f"Checkpoint {path} was trained for task {ckpt['task']!r}, the model is for {task!r}.")
        name = getattr(bare, "config", {}).get("name")
        if name is not None and ckpt.get("model_name") not in (None, name):
            raise ValueError(f"Checkpoint {path} holds model {ckpt['model_name']!r}, not {name!r}; "
                             f"build it with create_model({ckpt['model_name']!r}, ...) or load_model(path).")
        bare.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if restore_rng:
        set_rng_state(ckpt["rng"])
    return ckpt


def load_model(path, device="cpu") -> nn.Module:
    """Rebuild the model a checkpoint was trained with (from its config) and load its weights."""
    from emclip.models import create_model
    from emclip.runtime import get_device

    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True) if Path(path).is_file() else None
    if ckpt is None:
        raise FileNotFoundError(f"No checkpoint at {path}.")
    config = {k: v for k, v in ckpt["config"].items() if k != "name"}  # name is create_model's 1st argument
    model = create_model(ckpt["model_name"], ckpt["task"], profile=config.pop("profile", None), **config)
    model.load_state_dict(ckpt["model"])
    return model.to(get_device(device)).eval()
