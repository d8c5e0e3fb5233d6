"""Checking a notebook's parameters where the notebook reads them.

Every kit notebook starts with a ``parameters`` cell that papermill sweeps and ``emclip sweep -g``
overwrite. A wrong value there (``em_bases=0``, ``em_bases="eight"``, an unknown domain) should
stop the notebook at once with a message that names the parameter, its value and the valid
range, not fail cells later inside a plotting call. The cell after the parameters calls::

    from emclip.params import check_parameter
    em_bases = check_parameter("em_bases", em_bases, int, minimum=1, optional=True)
    source_domain = check_parameter("source_domain", source_domain, str, choices=("domain1", "domain2"))

Bottom layer of the package: imports nothing from emclip but its error classes.
"""

from __future__ import annotations

from collections.abc import Collection
from numbers import Real

from emclip.errors import ConfigError

__all__ = ["check_parameter"]


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _is_instance(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # True is an int to Python, not to a notebook reader
        return False
    if float in kinds and isinstance(value, int):  # 4 is a fine value for a float parameter
        return True
    return isinstance(value, kinds)


def check_parameter(name: str, value, kind, *, minimum: Real | None = None, maximum: Real | None = None,
                    choices: Collection | None = None, optional: bool = False):
    """Return ``value`` if it is a valid value of the notebook parameter ``name``; else ConfigError.

    Args:
        name: the parameter's name (as in the ``parameters`` cell), used in the message.
        value: its current value.
        kind: the expected type or tuple of types (``int``, ``float``, ``str``, ``list``, ...).
            ``bool`` is not accepted as ``int``; an ``int`` is accepted as ``float`` and
            returned as ``float``.
        minimum, maximum: inclusive bounds for a number.
        choices: the allowed values; for a ``list`` / ``tuple`` value, every item must be one.
        optional: ``None`` is allowed (it usually means "the profile's value").

    Raises:
        ConfigError naming the parameter, the value and the valid type, range or choices.
    """
    if value is None and optional:
        return None
    where = f"Notebook parameter {name}={value!r}"
    fix = f"Set {name} in the parameters cell (or with `emclip sweep -g {name}=...` / papermill -p)."
    allowed = _type_name(kind) + (" or None" if optional else "")
    if not _is_instance(value, kind):
        raise ConfigError(f"{where} has type {type(value).__name__}; expected {allowed}. {fix}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where} is below the minimum {minimum}; valid: {allowed} >= {minimum}"
                          f"{f' and <= {maximum}' if maximum is not None else ''}. {fix}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where} is above the maximum {maximum}; valid: {allowed} <= {maximum}"
                          f"{f' and >= {minimum}' if minimum is not None else ''}. {fix}")
    if choices is not None:
        options = ", ".join(map(repr, choices))
        if isinstance(value, (list, tuple)):
            bad = [item for item in value if item not in choices]
            if not value or bad:
                problem = "is empty" if not value else f"holds {bad[0]!r}, which is not valid"
                raise ConfigError(f"{where} {problem}; give one or more of {options}. {fix}")
        elif value not in choices:
            raise ConfigError(f"{where} is not one of {options}. {fix}")
    if isinstance(value, int) and not isinstance(value, bool) and kind is float:
        return float(value)
    return value
