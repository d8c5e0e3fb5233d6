"""The schema of every model config: key names, types and ranges, checked at the factory.

A model config is a nested dict (one JSON file per model in ``configs/``). Each architecture
(``arch``) has one schema: the sections it reads and, in each, the keys with their type and
range. :func:`validate_config` walks a complete config against it and raises
:class:`~emclip.errors.ConfigError` naming the key, the value and the valid range for an unknown,
missing or wrongly typed key. It returns a normalised copy (floats as ``float``, lists as lists),
which is what ``model.config`` holds.

The table is small and declarative on purpose (no schema library): one :class:`Spec` per key.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from emclip.errors import ConfigError

ROLES = ("proposed", "baseline", "ablation", "control")

#: old flat keys (before the nested configs) -> where the setting lives now
RENAMED = {
    "em_bases": "em={'bases': K}", "em_iters": "em={'iters': T}", "em_lam": "em={'lam': lam}",
    "clip_model": "clip={'model': NAME}", "clip_pretrained": "clip={'pretrained': TAG}",
    "clip_seed": "clip={'seed': SEED}", "features": "unet={'features': [...]}",
    "dropout": "unet={'dropout': p}",
    "image_size": "the run profile (image_size is a data size, e.g. get_profile('ci', image_size=32))",
    "profile": "create_model(..., profile=NAME)", "clip_note": "model.clip_note (not a config key)",
}


class Spec:
    """One key's type and range: ``check(value, path)`` returns the normalised value or raises."""

    text = "a value"

    def check(self, value, path: str):  # pragma: no cover - every spec overrides it
        raise NotImplementedError

    def fail(self, value, path: str, extra: str = ""):
        raise ConfigError(f"model config key {path} = {value!r} is invalid{extra}: expected {self.text}.")


@dataclass(frozen=True)
class Int(Spec):
    lo: int | None = None
    hi: int | None = None

    @property
    def text(self) -> str:
        rng = f" >= {self.lo}" if self.hi is None else f" in {self.lo}..{self.hi}"
        return "an int" + (rng if self.lo is not None else "")

    def check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, path)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            self.fail(value, path)
        return int(value)


@dataclass(frozen=True)
class Float(Spec):
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None

    @property
    def text(self) -> str:
        bounds = [f"> {self.gt}" if self.gt is not None else "", f">= {self.ge}" if self.ge is not None else "",
                  f"<= {self.le}" if self.le is not None else "", f"< {self.lt}" if self.lt is not None else ""]
        return "a finite number " + " and ".join(b for b in bounds if b)

    def check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(value, path)
        bad = ((self.gt is not None and value <= self.gt) or (self.ge is not None and value < self.ge)
               or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))
        if bad:
            self.fail(value, path)
        return float(value)


class Bool(Spec):
    text = "true or false (a JSON boolean, not a string)"

    def check(self, value, path):
        if not isinstance(value, bool):
            self.fail(value, path)
        return value


@dataclass(frozen=True)
class Choice(Spec):
    values: tuple

    @property
    def text(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, value, path):
        if isinstance(value, bool) or value not in self.values:
            self.fail(value, path)
        return value


@dataclass(frozen=True)
class Str(Spec):
    forbidden: tuple = ()
    why: str = ""

    @property
    def text(self) -> str:
        return "a non-empty string" + (f" other than {', '.join(map(repr, self.forbidden))}" if self.forbidden else "")

    def check(self, value, path):
        if not isinstance(value, str) or not value.strip():
            self.fail(value, path)
        if value in self.forbidden:
            self.fail(value, path, f" ({self.why})" if self.why else "")
        return value


@dataclass(frozen=True)
class IntList(Spec):
    min_len: int = 1
    length: int | None = None
    lo: int = 1

    @property
    def text(self) -> str:
        size = f"exactly {self.length}" if self.length is not None else f"at least {self.min_len}"
        return f"a list of {size} ints >= {self.lo}"

    def check(self, value, path):
        if not isinstance(value, (list, tuple)):
            self.fail(value, path)
        if len(value) < self.min_len or (self.length is not None and len(value) != self.length):
            self.fail(value, path)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < self.lo for v in value):
            self.fail(value, path)
        return [int(v) for v in value]


@dataclass(frozen=True)
class Nullable(Spec):
    inner: Spec
    meaning: str = "default"

    @property
    def text(self) -> str:
        return f"null ({self.meaning}) or {self.inner.text}"

    def check(self, value, path):
        if value is None:
            return None
        try:
            return self.inner.check(value, path)
        except ConfigError as err:  # the inner message, with null named as valid too
            raise ConfigError(str(err).replace(f"expected {self.inner.text}", f"expected {self.text}")) from None


class AugmentSpec(Spec):
    """``train.augment``: true/false, a mode name or a dict spec, as :meth:`emclip.data.Augment.from_spec` reads it.

    (``emclip.data`` is imported when a config is checked, so that ``import emclip.models`` stays light.)
    """

    @property
    def text(self) -> str:
        from emclip.data.augment import AUGMENT_MODES

        return (f"true, false, one of {', '.join(map(repr, AUGMENT_MODES))} or a dict spec such as "
                "{'mode': 'both', 'gamma': [0.9, 1.1], 'contrast': [0.9, 1.1]}")

    def check(self, value, path):
        from emclip.data.augment import Augment

        if not isinstance(value, (bool, str, dict)):
            self.fail(value, path)
        try:
            Augment.from_spec(value)
        except ConfigError as err:
            raise ConfigError(f"model config key {path} = {value!r} is invalid: {err}") from None
        return value


# ----- the sections ----------------------------------------------------------------------------
COMMON = {
    "name": Str(),
    "arch": Choice(("emclip", "clip-linear", "unet")),
    "role": Choice(ROLES),
    "description": Str(),
    "train": {"augment": AugmentSpec()},
}
CLIP = {
    "model": Str(),
    "pretrained": Nullable(Str(forbidden=("auto",), why="'auto' may silently switch the architecture; name "
                                                     "the weights, or null / 'random' for random init"),
                           "random init"),
    "seed": Int(0),
}
ENCODER = {"layers": Nullable(IntList(), "three blocks evenly spaced"), "trainable_last_blocks": Int(0)}
EM = {
    "enabled": Bool(),
    "bases": Int(1),
    "iters": Int(1),
    "eval_iters": Nullable(Int(1), "same as iters"),
    "lam": Float(gt=0.0),
    "momentum": Float(ge=0.0, le=1.0),
    "norm": Choice(("batch", "group", "none")),
    "input_norm": Choice(("l2", "none")),
    "backprop": Choice(("last", "none")),
}
TEXT = {
    "source": Choice(("clip", "learned")),
    "projection": Choice(("mlp", "linear", "fixed")),
    "background": Bool(),
    "tie_centres": Bool(),
}
DECODER = {
    "channels": IntList(),
    "stem_channels": IntList(min_len=0),
    "stem_input": Choice(("centre", "standardise", "local")),
    "embed_dim": Int(1),
    "text_guidance": Bool(),
}
SCHEMAS = {
    "emclip": {**COMMON, "clip": CLIP, "encoder": ENCODER, "em": EM, "text": TEXT, "decoder": DECODER},
    "clip-linear": {**COMMON, "clip": CLIP, "encoder": ENCODER, "head": {"feature_norm": Choice(("ln_post", "none"))}},
    "unet": {**COMMON, "unet": {"features": IntList(length=6), "dropout": Float(ge=0.0, lt=1.0)}},
}


def _unknown(key: str, path: str, valid) -> ConfigError:
    hint = f" ({key} moved: use {RENAMED[key]})" if key in RENAMED else ""
    return ConfigError(f"unknown model config key {path!r}{hint}. Valid keys here: {', '.join(sorted(valid))}.")


def check_keys(changes: dict, schema: dict, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for a key of ``changes`` (possibly partial) that ``schema`` lacks."""
    if not isinstance(changes, dict):
        raise ConfigError(f"model config section {prefix.rstrip('.') or '(top level)'} must be a dict, "
                          f"got {changes!r}.")
    for key, value in changes.items():
        if key not in schema:
            raise _unknown(key, prefix + key, schema)
        if isinstance(schema[key], dict):
            check_keys(value, schema[key], f"{prefix}{key}.")


def _walk(config: dict, schema: dict, prefix: str) -> dict:
    check_keys(config, schema, prefix)
    missing = [prefix + k for k in schema if k not in config]
    if missing:
        raise ConfigError(f"model config lacks key(s) {', '.join(missing)}; a complete config names every key "
                          "(see emclip/models/configs/ for the defaults).")
    return {key: _walk(config[key], spec, f"{prefix}{key}.") if isinstance(spec, dict) else spec.check(config[key], prefix + key)
            for key, spec in schema.items()}


def _cross_checks(config: dict) -> None:
    if config["arch"] != "emclip":
        return
    if config["text"]["tie_centres"] and not config["em"]["enabled"]:
        raise ConfigError("model config text.tie_centres = true needs em.enabled = true (the centres come from EM); "
                          "set one of them to false.")


#: keys added to a schema after checkpoints without them were written, with the value that gives
#: the behaviour of those checkpoints (not the current default): ``upgrade_config`` fills them in.
ADDED_KEYS = {  # arch -> {(section, key): value}
    "emclip": {("decoder", "stem_input"): "centre"},  # before the option, the stem read image - 0.5
}


def upgrade_config(config: dict) -> dict:
    """A copy of an older complete ``config`` with every key added since set as the older code behaved.

    A checkpoint's run record keeps the model config it was trained with; keys that did not exist
    then are filled from :data:`ADDED_KEYS`, so old checkpoints still load (and a resume of one
    with today's defaults is still refused: the filled value is the old behaviour).
    """
    out = copy.deepcopy(config)
    for (section, key), value in ADDED_KEYS.get(config.get("arch"), {}).items():
        out.setdefault(section, {}).setdefault(key, value)
    return out


def validate_config(config: dict) -> dict:
    """Check a complete config against its arch's schema; return the normalised copy."""
    if not isinstance(config, dict):
        raise ConfigError(f"a model config must be a dict, got {type(config).__name__}.")
    arch = config.get("arch")
    if arch not in SCHEMAS:
        raise ConfigError(f"model config key arch = {arch!r} is invalid: expected one of {', '.join(SCHEMAS)}.")
    out = _walk(config, SCHEMAS[arch], "")
    _cross_checks(out)
    return out
