"""Where runs put their outputs, and how a notebook records its headline numbers.

``record(**metrics)`` is how every notebook reports what it measured: the values are kept in
memory (``records()``) and, when ``$EMCLIP_RECORD_FILE`` is set (``emclip sweep`` and
``emclip run`` set it for each executed notebook), merged into that JSON file, which the sweep
gathers into one table. Values must be JSON numbers, strings, booleans or lists/dicts of them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from emclip.fileio import atomic_write_json

RECORD_ENV = "EMCLIP_RECORD_FILE"
RESULTS_ENV = "EMCLIP_RESULTS_DIR"

_RECORDS: dict = {}


def results_dir(subdir: str | None = None, create: bool = True) -> Path:
    """``$EMCLIP_RESULTS_DIR``, else ``results/`` at the kit's root when run from ``notebooks/``,
    else ``./results``; with ``subdir``, that folder inside it."""
    if os.environ.get(RESULTS_ENV):
        base = Path(os.environ[RESULTS_ENV]).expanduser()
    elif Path.cwd().name == "notebooks":
        base = Path.cwd().parent / "results"
    else:
        base = Path.cwd() / "results"
    path = base / subdir if subdir else base
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(value):
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"record(): value {value!r} of type {type(value).__name__} is not JSON-serialisable; "
                    "pass numbers, strings, booleans or lists/dicts of them.")


def record(**metrics) -> dict:
    """Record headline metrics of this run; returns everything recorded so far."""
    _RECORDS.update({k: _clean(v) for k, v in metrics.items()})
    target = os.environ.get(RECORD_ENV)
    if target:
        path = Path(target)
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(_RECORDS)
        atomic_write_json(path, current)
    return dict(_RECORDS)


def records() -> dict:
    """What this process recorded so far."""
    return dict(_RECORDS)
