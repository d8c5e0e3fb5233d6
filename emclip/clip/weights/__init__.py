"""The CLIP weights that ship inside the package, and SHA256 checks of weights files.

``registry.json`` in this folder lists each shipped ``(model, tag)``: its safetensors file, the
full SHA256 that :func:`emclip.clip.load_clip` verifies before loading, the model card, the
recipe (``config``) and the first losses of the run (``loss_trace``, re-run by a test). The
files themselves are package data (``pyproject.toml``: ``clip/weights/*``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from emclip.errors import ConfigError, EmclipError

WEIGHTS_DIR = Path(__file__).parent
RANDOM = "random"  # the named random-init control
DEFAULT = "default"  # load_clip's default: the shipped weights of a tiny model, else random init
MIN_SHA256_PREFIX = 16


class WeightsMismatchError(EmclipError, RuntimeError):
    """A weights file's SHA256 differs from the expected one (corrupt, truncated or another file)."""


def _shipped_registry() -> dict:
    path = WEIGHTS_DIR / "registry.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def list_shipped_weights() -> list[tuple[str, str]]:
    """The ``(name, tag)`` pairs whose weights ship inside the package (e.g. ``("emclip-tiny", "synth-v2")``)."""
    return [(entry["model"], entry["tag"]) for entry in _shipped_registry().values()]


def shipped_entry(name: str, tag: str) -> dict | None:
    """The registry entry of shipped weights ``(name, tag)``: file, sha256, model card; else ``None``."""
    return _shipped_registry().get(f"{name}:{tag}")


def shipped_figures(name: str, tag: str) -> dict:
    """The measured figures shipped beside weights ``(name, tag)`` (the registry entry's ``figures``
    JSON: the cross-domain runs quoted in the model card); ``{}`` when there are none."""
    entry = shipped_entry(name, tag) or {}
    path = WEIGHTS_DIR / entry["figures"] if entry.get("figures") else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def resolve_pretrained(name: str, pretrained) -> str | None:
    """What ``pretrained`` means for ``name``: ``"default"`` -> the first shipped tag of ``name``
    (``None`` when there is none), ``"random"`` -> ``None``; anything else unchanged."""
    if pretrained is None:
        return None
    pretrained = str(pretrained)
    if pretrained == RANDOM:
        return None
    if pretrained == DEFAULT:
        tags = [tag for model, tag in list_shipped_weights() if model == name]
        return tags[0] if tags else None
    return pretrained


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256_argument(expected, min_prefix: int = MIN_SHA256_PREFIX) -> str:
    """``expected`` lower-cased, or :class:`~emclip.errors.ConfigError` unless it is hexadecimal and
    either the full 64-character digest or a prefix of at least ``min_prefix`` characters."""
    text = str(expected).strip().lower() if expected is not None else ""
    if not re.fullmatch(r"[0-9a-f]+", text) or len(text) > 64 or len(text) < min(min_prefix, 64):
        raise ConfigError(
            f"sha256={expected!r} cannot check a file: give the full 64-character hexadecimal SHA256 "
            f"or at least its first {min_prefix} characters (e.g. from `sha256sum FILE`), or leave sha256 out "
            "to skip the check."
        )
    return text


def verify_sha256(path, expected: str, min_prefix: int = MIN_SHA256_PREFIX,
                  fix: str = "delete it and download again (`emclip download-weights NAME TAG`)") -> str:
    """Raise :class:`WeightsMismatchError` unless ``path``'s SHA256 starts with ``expected``
    (at least ``min_prefix`` hex characters, see :func:`check_sha256_argument`); return the digest.
    ``fix`` is the remedy the error message gives."""
    expected = check_sha256_argument(expected, min_prefix)
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise WeightsMismatchError(
            f"SHA256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupt or not "
            f"the one you meant; {fix}."
        )
    return actual


