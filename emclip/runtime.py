"""Run-time settings shared by every layer: the run profile, the device, seeding, print_config.

One switch sizes every run: ``EMCLIP_PROFILE`` = ``ci`` (seconds, CPU), ``cpu`` (a few minutes
on a laptop), ``colab`` (a class on a Colab T4 GPU), ``gpu`` (paper scale). ``auto`` (the
default) picks ``colab`` inside Google Colab with a GPU, ``gpu`` elsewhere when CUDA is present,
else ``cpu``. Modules read their sizes from the :class:`Profile` object, never from the
environment directly, so that a notebook's ``parameters`` cell (or a papermill ``-p``) steers
everything through one value.

A profile holds data and training sizes. Model settings (CLIP tower, EM bases K, iterations T,
lambda, widths) live in the model configs (``emclip/models/configs/``); where a profile must
change one, it says so in one visible place, :attr:`Profile.model_overrides`, which the model
factory applies (and prints) on top of the config.
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
        name: ``ci``, ``cpu``, ``colab`` or ``gpu``.
        image_size: side of the square network input, in pixels.
        train_per_domain: synthetic training samples generated per domain.
        val_per_domain: synthetic validation samples per domain.
        test_per_domain: synthetic test samples per domain.
        batch_size: training batch size.
        train_steps: optimiser steps of one training run.
        eval_every: validate every this many steps.
        lr: peak learning rate of the trainable parts.
        seeds: seeds of a multi-seed evaluation.
        num_workers: DataLoader workers.
        model_overrides: model-config sections this profile changes, e.g.
            ``{"em": {"bases": 8}, "clip": {"model": "ViT-B-16", "pretrained": "random"}}``.
            The factory merges each section into every model whose config has it (a U-Net has
            no ``clip`` section, so the CLIP choice skips it) and prints what it changed. Empty
            for ``cpu`` and ``colab``: they run the configs as written.
    """

    name: str
    image_size: int
    train_per_domain: int
    val_per_domain: int
    test_per_domain: int
    batch_size: int
    train_steps: int
    eval_every: int
    lr: float
    seeds: tuple[int, ...] = field(default=(0,))
    num_workers: int = 0
    model_overrides: dict = field(default_factory=dict, hash=False)

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (unknown field names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


#: the ci profile keeps the small widths and K it always had (seconds per notebook on a CPU); its
#: stem is the default one (one stage at stride 2)
_CI_MODEL = {"em": {"bases": 8}, "decoder": {"channels": [48, 32, 24]}}
#: the gpu profile's explicit choice: ViT-B/16 at paper widths, CLIP at RANDOM init (offline, no
#: weights can be downloaded: an architecture and speed check, never a silent switch to another
#: tower). With a network, pass clip={"pretrained": "openai"} (or a weights file) to create_model.
_GPU_MODEL = {
    "clip": {"model": "ViT-B-16", "pretrained": "random"},
    "em": {"bases": 32},
    "decoder": {"channels": [256, 128, 64, 32], "stem_channels": [32], "embed_dim": 64},
    "unet": {"features": [32, 64, 128, 256, 512, 32]},
}

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", image_size=64, train_per_domain=24, val_per_domain=8, test_per_domain=8,
        batch_size=8, train_steps=30, eval_every=15, lr=3e-3, seeds=(0,), num_workers=0,
        model_overrides=_CI_MODEL,
    ),
    "cpu": Profile(
        name="cpu", image_size=96, train_per_domain=96, val_per_domain=16, test_per_domain=32,
        batch_size=8, train_steps=200, eval_every=100, lr=2e-3, seeds=(0,), num_workers=0,
    ),
    # A class on Colab's free T4 (16 GB, fp16, 2 vCPUs): every notebook within about 10 minutes.
    # Sizing is an ESTIMATE, not a measurement (no T4 was available): the configs' tiny CLIP at
    # 128 px, batch 16, 600 steps; a step of these small models on a GPU is launch-bound, of the
    # order of 20-40 ms, so one model trains in well under a minute and notebook 05's five to seven
    # models, with data rendering (2 workers) and evaluation, in a few minutes.
    "colab": Profile(
        name="colab", image_size=128, train_per_domain=128, val_per_domain=32, test_per_domain=64,
        batch_size=16, train_steps=600, eval_every=200, lr=2e-3, seeds=(0,), num_workers=2,
    ),
    "gpu": Profile(
        name="gpu", image_size=224, train_per_domain=800, val_per_domain=64, test_per_domain=200,
        batch_size=32, train_steps=4000, eval_every=500, lr=3e-4, seeds=(0, 1, 2), num_workers=4,
        model_overrides=_GPU_MODEL,
    ),
}


def in_colab() -> bool:
    """True inside a Google Colab runtime (its ``COLAB_RELEASE_TAG`` variable is set)."""
    return bool(os.environ.get("COLAB_RELEASE_TAG")) or "google.colab" in sys.modules


def _resolve_profile_name(name: str | None) -> str:
    raw = (name if name is not None else os.environ.get(PROFILE_ENV, "auto")).strip().lower() or "auto"
    if raw == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        return "colab" if in_colab() else "gpu"
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
        changes = ", ".join(f"{k}={v}" for k, v in prof.model_overrides.items()) or "none"
        prof_text = (f"{prof.name} (image {prof.image_size}px, {prof.train_steps} steps, "
                     f"model overrides: {changes})")
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
