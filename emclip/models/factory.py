"""``create_model(name, task, profile=None, **overrides)``: every model from one factory.

As in open_clip, configurations are data: one JSON file per model name in
``emclip/models/configs/``. A base model's file is complete (every key its architecture reads,
see :mod:`emclip.models.schema`); an ablation or variant names its ``base`` and only the keys it
changes. Every config says what the model is for (``role``: proposed, baseline, ablation or
control) and how it trains (``train.augment``).

A config is resolved in three explicit layers, each merged section by section:

1. the JSON (its ``base`` first);
2. the run profile's :attr:`~emclip.runtime.Profile.model_overrides`, only when a ``profile``
   is passed (the factory prints what it changed);
3. the caller's ``overrides``, e.g. ``create_model("emclip", "fundus", em={"bases": 4})``.

The result is validated (:func:`emclip.models.schema.validate_config`) and stored, complete and
JSON-serialisable, as ``model.config``; :func:`create_model_from_config` rebuilds the same model
from it alone (the profile and the overrides are already in it).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from emclip.errors import ConfigError
from emclip.models.base import SegmentationModel
from emclip.models.schema import ROLES, SCHEMAS, check_keys, validate_config
from emclip.runtime import Profile, get_profile
from emclip.tasks import Task, get_task

CONFIG_DIR = Path(__file__).parent / "configs"


@cache
def _files() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(CONFIG_DIR.glob("*.json"))}


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _files():
        raise ConfigError(f"Unknown model {name!r}. Valid models: {', '.join(_files())}.")
    return key


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, section by section (nested dicts merge; a copy)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _from_files(name: str, seen: tuple = ()) -> dict:
    raw = copy.deepcopy(_files()[name])
    base = raw.pop("base", None)
    if base is None:
        return raw
    if base in seen or base not in _files():
        raise ConfigError(f"config {name}.json names base {base!r}, which is missing or circular.")
    return merge(_from_files(base, (*seen, name)), raw)


def list_models(role: str | None = None) -> list[str]:
    """Names of the models :func:`create_model` builds (one JSON config each), optionally of one ``role``.

    Ordered by role (proposed, baseline, ablation, control), then by name.
    """
    if role is not None and role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}. Valid roles: {', '.join(ROLES)}.")
    roles = {name: _from_files(name)["role"] for name in _files()}
    names = [name for name in _files() if role is None or roles[name] == role]
    return sorted(names, key=lambda n: (ROLES.index(roles[n]), n))


def _profile_changes(config: dict, profile: Profile) -> dict:
    """The sections of ``profile.model_overrides`` that ``config``'s architecture has."""
    schema = SCHEMAS[config["arch"]]
    changes = {k: v for k, v in profile.model_overrides.items() if k in schema}
    check_keys(changes, schema)
    return changes


def _leaves(changes: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in changes.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}={value!r}"]
    return out


def get_model_config(name: str, profile: str | Profile | None = None, verbose: bool = False, **overrides) -> dict:
    """The complete, validated config of model ``name`` (a copy); see the module docstring.

    Args:
        name: one of :func:`list_models`.
        profile: a run profile (name or :class:`~emclip.runtime.Profile`) whose
            ``model_overrides`` apply; ``None``: the JSON as written.
        verbose: print the profile's changes.
        **overrides: config sections or keys to change (nested dicts merge).
    """
    name = _check_name(name)
    config = {**_from_files(name), "name": name}
    if profile is not None:
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        changes = _profile_changes(config, prof)
        if changes and verbose:
            print(f"model {name!r}: profile {prof.name!r} sets {', '.join(_leaves(changes))}")
        config = merge(config, changes)
    overrides = dict(overrides)
    for key in ("name", "arch", "base"):
        if key in overrides and overrides.pop(key) != config.get(key):
            raise ConfigError(f"config key {key!r} cannot be overridden; pick another model name "
                              f"({', '.join(_files())}) or rebuild with create_model_from_config(config, task).")
    check_keys(overrides, SCHEMAS[config["arch"]])
    return validate_config(merge(config, overrides))


def _architectures() -> dict:
    from emclip.models.baselines import CLIPLinear
    from emclip.models.emclip_model import EMCLIP
    from emclip.models.unet import UNet

    return {"emclip": EMCLIP, "unet": UNet, "clip-linear": CLIPLinear}


def create_model_from_config(config: dict, task: str | Task) -> SegmentationModel:
    """Rebuild a model from a complete config (``model.config``, or a run record's copy of it).

    The config must be complete and valid (:mod:`emclip.models.schema`); no profile or JSON
    default is applied, so the same config always gives the same architecture.
    """
    config = validate_config(copy.deepcopy(config))
    return _architectures()[config["arch"]](get_task(task), config)


def create_model(name: str, task: str | Task, profile: str | Profile | None = None,
                 **overrides) -> SegmentationModel:
    """Build model ``name`` for ``task``; see the module docstring.

    Args:
        name: one of :func:`list_models` (``emclip``, ``emclip-random``, ``emclip-no-em``,
            ``emclip-no-text``, ``clip-linear``, ``unet``, ``unet-stylerand``, ...).
        task: ``"fundus"``, ``"cardiac"`` or a :class:`~emclip.tasks.Task`.
        profile: run profile whose ``model_overrides`` apply (printed); ``None``: none.
        **overrides: config sections or keys to change (nested dicts merge), e.g.
            ``em={"bases": 4}``, ``clip={"model": "ViT-B-16", "pretrained": "openai"}``.

    Returns:
        a :class:`~emclip.models.base.SegmentationModel` mapping (B, 3, H, W) float32 images in
        [0, 1] to logits (B, task.num_outputs, H, W); ``model.config`` is the complete resolved
        config and ``model.task_name`` the task.

    Raises:
        ConfigError: unknown model name, unknown key, or a value of the wrong type or range.
    """
    task = get_task(task)
    config = get_model_config(name, profile, verbose=True, **overrides)
    return _architectures()[config["arch"]](task, config)
