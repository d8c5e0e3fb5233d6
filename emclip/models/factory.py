"""``create_model(name, task, profile=None, **overrides)``: every model from one factory.

As in open_clip, configurations are data: one JSON file per model name in
``emclip/models/configs/``. A config holds the architecture (``arch``), its widths and switches,
and optional per-profile changes (``profiles: {"gpu": {...}}``). The sizes that depend on the
run profile — ``image_size``, ``clip_model``, ``clip_pretrained``, ``em_bases``, ``em_iters``,
``em_lam`` — come from :func:`emclip.get_profile` unless overridden. Nested sections merge:
``create_model("emclip", "fundus", decoder={"channels": [32, 32, 32]})`` changes only the widths.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from emclip.models.base import SegmentationModel
from emclip.runtime import Profile, get_profile
from emclip.tasks import Task, get_task

CONFIG_DIR = Path(__file__).parent / "configs"
PROFILE_KEYS = ("image_size", "clip_model", "clip_pretrained", "em_bases", "em_iters", "em_lam")
# keys a resolved config carries besides its JSON ones (accepted back as overrides)
RECORD_KEYS = ("name", "arch", "description", "profile", "clip_note", "clip_seed")


@cache
def _configs() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(CONFIG_DIR.glob("*.json"))}


def list_models() -> list[str]:
    """Names of the models :func:`create_model` builds (one JSON config each)."""
    return list(_configs())


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _configs():
        raise ValueError(f"Unknown model {name!r}. Valid models: {', '.join(list_models())}.")
    return key


def get_model_config(name: str, profile: str | Profile | None = None) -> dict:
    """The JSON config of ``name`` (a copy); with ``profile``, resolved for it (sizes filled in)."""
    config = copy.deepcopy(_configs()[_check_name(name)])
    if profile is None:
        return config
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    config = _merge(config, config.pop("profiles", {}).get(prof.name, {}))
    config.update({key: getattr(prof, key) for key in PROFILE_KEYS})
    config.update(name=_check_name(name), profile=prof.name)
    return config


def _merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _architectures() -> dict:
    from emclip.models.baselines import CLIPLinear
    from emclip.models.emclip_model import EMCLIP
    from emclip.models.unet import UNet

    return {"emclip": EMCLIP, "unet": UNet, "clip-linear": CLIPLinear}


def create_model(name: str, task: str | Task, profile: str | Profile | None = None,
                 **overrides) -> SegmentationModel:
    """Build model ``name`` for ``task``; see the module docstring.

    Args:
        name: one of :func:`list_models` (``emclip``, ``unet``, ``clip-linear``,
            ``emclip-no-em``, ``emclip-no-text``).
        task: ``"fundus"``, ``"cardiac"`` or a :class:`~emclip.tasks.Task`.
        profile: run profile for the sizes (default ``$EMCLIP_PROFILE``).
        **overrides: config keys to change (nested dicts merge).

    Returns:
        a :class:`~emclip.models.base.SegmentationModel` mapping (B, 3, H, W) images in [0, 1]
        to logits (B, task.num_outputs, H, W); ``model.config`` is the resolved config and
        ``model.task_name`` the task.
    """
    task = get_task(task)
    config = get_model_config(name, profile)
    config.pop("profiles", None)
    overrides = {k: v for k, v in overrides.items() if k not in ("name", "profile", "clip_note")}
    valid = set(config) | set(PROFILE_KEYS) | set(RECORD_KEYS)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"Unknown config key(s) {unknown} for model {name!r}. Valid keys: {', '.join(sorted(valid))}.")
    config = _merge(config, overrides)
    arch = config.get("arch")
    archs = _architectures()
    if arch not in archs:
        raise ValueError(f"Config of {name!r} names arch {arch!r}; valid archs: {', '.join(archs)}.")
    return archs[arch](task, config)
