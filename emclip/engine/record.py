"""The run record every checkpoint carries: what was trained, on which data, and how.

A record is a JSON-like dict (docs/architecture.md, "A checkpoint carries its full run record")::

    {"task": "fundus",
     "model": {"name": "emclip", "config": {...the model's complete resolved config...}},
     "data": {"source", "root", "train_domains", "image_size", "train_per_domain", "val_per_domain",
              "test_per_domain", "train_images", "val_images", "data_seed", "augment"},
     "train": {"steps", "lr", "seed", "batch_size", "weight_decay", "warmup_steps", "schedule",
               "grad_clip", "amp", "loss", "world_size"},
     "profile": "ci",
     "versions": {"emclip", "torch", "python", ...},
     "runtime": {"device", "precision"}}

Two runs are the *same run* when everything but ``versions`` and ``runtime`` is equal
(:data:`COMPARED`): a checkpoint is resumed or reused only then, otherwise
:func:`check_same_run` raises :class:`emclip.errors.RunMismatchError` listing every difference.
Where the run executed (device, resolved precision) and which package versions wrote it are kept
for the reader but do not make another run — design choice, not from the paper.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass

from emclip.errors import ConfigError, RunMismatchError

#: the sections that define a run (compared before a resume or a reuse)
COMPARED = ("task", "model", "data", "train", "profile")


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation settings of a run (see :func:`emclip.engine.train` for each one)."""

    steps: int
    lr: float
    seed: int = 0
    weight_decay: float = 1e-4
    warmup_steps: int | None = None
    schedule: str = "cosine"
    grad_clip: float | None = 1.0
    amp: str | bool = "auto"

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an int >= 1, got {self.steps!r} (leave it None for the profile's value).")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"lr must be a number > 0, got {self.lr!r}.")

    @property
    def warmup(self) -> int:
        """Linear warm-up steps: ``warmup_steps``, default 5 % of ``steps`` (at least 1)."""
        return max(1, round(0.05 * self.steps)) if self.warmup_steps is None else int(self.warmup_steps)

    def section(self, batch_size, world_size: int, loss: str) -> dict:
        """The record's ``train`` section."""
        out = asdict(self)
        out.update(warmup_steps=self.warmup, batch_size=batch_size, world_size=int(world_size), loss=loss)
        return out


def package_versions() -> dict:
    """Versions of Python and the packages a run's numbers depend on (not compared)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from emclip import __version__

    out = {"emclip": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for dist in ("open_clip_torch", "monai", "numpy", "timm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def jsonable(value):
    """``value`` as it reads back from JSON (tuples -> lists, keys -> str): records compare exactly."""
    return json.loads(json.dumps(value, default=str))


def make_record(model, task: str, data: dict, train: dict, profile: str | None, runtime: dict | None = None) -> dict:
    """The record of a run of ``model`` (its ``config`` holds its name and every setting)."""
    config = dict(getattr(model, "config", {}) or {})
    return jsonable({
        "task": task,
        "model": {"name": str(config.get("name", type(model).__name__)), "config": config},
        "data": data,
        "train": train,
        "profile": profile,
        "versions": package_versions(),
        "runtime": runtime or {},
    })


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def record_differences(stored: dict, requested: dict) -> list[str]:
    """Every compared setting that differs, as ``"train.steps: 30 in the checkpoint, 10 requested"``."""
    missing = object()
    a = _flatten({k: stored.get(k) for k in COMPARED}, "")
    b = _flatten({k: requested.get(k) for k in COMPARED}, "")
    lines = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if old != new:
            show = lambda v: "(not set)" if v is missing else json.dumps(v)  # noqa: E731
            lines.append(f"{key}: {show(old)} in the checkpoint, {show(new)} requested")
    return lines


def check_same_run(stored: dict, requested: dict, path, action: str) -> None:
    """Raise :class:`RunMismatchError` unless the two records describe the same run.

    ``action`` says what was refused (``"resume"``, ``"reuse"``) and appears in the message.
    """
    diffs = record_differences(stored, requested)
    if diffs:
        shown = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
        raise RunMismatchError(
            f"Cannot {action} {path}: it holds another run ({shown}). Train into another path, delete the "
            "file, or pass overwrite=True (--overwrite) to replace it.")
