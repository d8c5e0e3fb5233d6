"""Run-time settings shared by every layer: the run profile, the device, seeding, print_config.

One switch sizes every run: ``EMCLIP_PROFILE`` = ``ci`` (seconds, tiny CLIP, CPU), ``cpu`` (a few
minutes on a laptop), ``gpu`` (paper scale). ``auto`` (the default) picks ``gpu`` when CUDA is
present, else ``cpu``. Modules read their sizes from the :class:`Profile` object, never from
the environment directly, so that a notebook's ``parameters`` cell (or a papermill ``-p``) steers
everything through one value.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "EMCLIP_PROFILE"
DATA_DIR_ENV = "EMCLIP_DATA_DIR"
CACHE_DIR_ENV = "EMCLIP_CACHE_DIR"


@dataclass(frozen=True)
class Profile:
    """Sizes of a run. Read by data, models, training and evaluation.

    Attributes:
        name: ``ci``, ``cpu`` or ``gpu``.
        image_size: side of the square network input, in pixels.
        train_per_domain: synthetic training samples generated per domain.
        val_per_domain: synthetic validation samples per domain.
        test_per_domain: synthetic test samples per domain.
        batch_size: training batch size.
        train_steps: optimiser steps of one training run.
        eval_every: validate every this many steps.
        clip_model: open_clip model name (``emclip-tiny`` is the offline default).
        clip_pretrained: pretrained tag, ``None`` (random init) or ``"auto"`` (real weights when
            reachable, else a loud fall-back to the tiny model).
        em_bases: K, the number of EM bases.
        em_iters: T, the EM iterations per forward pass.
        em_lam: lambda, the E-step inverse temperature.
        lr: peak learning rate of the trainable parts.
        seeds: seeds of a multi-seed evaluation.
        num_workers: DataLoader workers.
    """

    name: str
    image_size: int
    train_per_domain: int
    val_per_domain: int
    test_per_domain: int
    batch_size: int
    train_steps: int
    eval_every: int
    clip_model: str
    clip_pretrained: str | None
    em_bases: int
    em_iters: int
    em_lam: float
    lr: float
    seeds: tuple[int, ...] = field(default=(0,))
    num_workers: int = 0

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (unknown field names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", image_size=64, train_per_domain=24, val_per_domain=8, test_per_domain=8,
        batch_size=8, train_steps=30, eval_every=15, clip_model="emclip-tiny", clip_pretrained=None,
        em_bases=8, em_iters=3, em_lam=1.0, lr=3e-3, seeds=(0,), num_workers=0,
    ),
    "cpu": Profile(
        name="cpu", image_size=96, train_per_domain=96, val_per_domain=16, test_per_domain=32,
        batch_size=8, train_steps=200, eval_every=100, clip_model="emclip-tiny", clip_pretrained=None,
        em_bases=16, em_iters=3, em_lam=1.0, lr=2e-3, seeds=(0,), num_workers=0,
    ),
    "gpu": Profile(
        name="gpu", image_size=224, train_per_domain=800, val_per_domain=64, test_per_domain=200,
        batch_size=32, train_steps=4000, eval_every=500, clip_model="ViT-B-16", clip_pretrained="auto",
        em_bases=32, em_iters=3, em_lam=1.0, lr=3e-4, seeds=(0, 1, 2), num_workers=4,
    ),
}


def _resolve_profile_name(name: str | None) -> str:
    raw = (name if name is not None else os.environ.get(PROFILE_ENV, "auto")).strip().lower() or "auto"
    if raw == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if raw not in PROFILES:
        valid = ", ".join([*PROFILES, "auto"])
        raise ValueError(
            f"Unknown run profile {raw!r}. Valid profiles: {valid}. "
            f"Set {PROFILE_ENV} to one of them (or pass profile=...)."
        )
    return raw


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The run profile ``name`` (default: ``$EMCLIP_PROFILE``, else ``auto``), with overrides.

    >>> get_profile("ci").image_size
    64
    >>> get_profile("ci", train_steps=5).train_steps
    5
    """
    profile = PROFILES[_resolve_profile_name(name)]
    return profile.replace(**overrides) if overrides else profile


def get_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``mps`` on Apple silicon, else ``cpu``.

    An explicit ``"cuda"`` on a machine without CUDA raises a clear ``RuntimeError`` instead of
    failing later inside a kernel.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"Device {str(device)!r} was requested but CUDA is not available on this machine. "
            "Use device='auto' (falls back to CPU) or device='cpu'."
        )
    return dev


def seed_everything(seed: int = 0, deterministic: bool = True) -> int:
    """Seed Python, NumPy and torch (all devices); returns the seed.

    With ``deterministic=True`` cuDNN autotuning is off so that CPU runs repeat exactly and GPU
    runs repeat as far as the kernels allow.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def data_dir(root: str | os.PathLike | None = None) -> Path | None:
    """Where real data sets are looked for: ``root``, else ``$EMCLIP_DATA_DIR``, else ``None``."""
    value = root if root is not None else os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where emclip caches weights and features: ``$EMCLIP_CACHE_DIR`` or ``~/.cache/emclip``."""
    return Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "emclip")).expanduser()


def _version(distribution: str) -> str:
    """Installed version of a distribution, read from its metadata (no slow import of the package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def config_lines(profile: str | None = None) -> list[str]:
    """The lines :func:`print_config` prints (also used by ``emclip info``)."""
    from emclip import __version__

    try:
        prof = get_profile(profile)
        prof_text = f"{prof.name} (image {prof.image_size}px, {prof.train_steps} steps, CLIP {prof.clip_model})"
    except ValueError as err:
        prof_text = f"INVALID: {err}"
    dev = get_device("auto")
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "none"
    lines = [
        f"emclip version:         {__version__}",
        f"Python version:         {sys.version.split()[0]} ({platform.platform()})",
        f"Run profile:            {prof_text} [{PROFILE_ENV}={os.environ.get(PROFILE_ENV, 'auto')}]",
        f"Device:                 {dev} (GPU: {gpu})",
        f"Data dir:               {data_dir() or f'not set (set {DATA_DIR_ENV} for real data; synthetic data is used)'}",
        f"Cache dir:              {cache_dir()}",
        f"HF offline:             {os.environ.get('HF_HUB_OFFLINE', '0')}",
    ]
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    lines.append(f"{'torch version:':24s}{torch.__version__} ({cuda})")
    for label, dist in (("torchvision", "torchvision"), ("open_clip", "open_clip_torch"), ("numpy", "numpy"),
                        ("monai", "monai"), ("scikit-learn", "scikit-learn"), ("pandas", "pandas"),
                        ("matplotlib", "matplotlib")):
        lines.append(f"{label + ' version:':24s}{_version(dist)}")
    return lines


def print_config(profile: str | None = None) -> None:
    """Print versions, device, run profile and data/cache locations (as MONAI's print_config)."""
    print("\n".join(config_lines(profile)))
