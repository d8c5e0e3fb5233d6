"""The grid of a sweep: parse ``NAME=V1,V2`` entries, expand the combinations, name the runs."""

from __future__ import annotations

import ast
import itertools
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]+")


def parse_value(text: str):
    """A grid value from the command line: a Python literal (``4``, ``0.5``, ``True``, ``None``,
    ``'a'``, ``[1, 2]``), else the text itself as a string (``domain1``)."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _split_values(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes (``[1,2],[3]`` -> 2 values)."""
    parts, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return parts


def parse_grid(specs: list[str] | tuple[str, ...]) -> dict[str, list]:
    """``["em_bases=4,8", "em_iters=1,3"]`` -> ``{"em_bases": [4, 8], "em_iters": [1, 3]}``.

    Values are parsed with :func:`parse_value` (literals, else strings).
    """
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = str(spec).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values.strip():
            raise ValueError(f"Bad grid entry {spec!r}: write NAME=V1,V2,... with NAME a notebook "
                             "parameter, e.g. em_bases=4,8 or domain=domain1,domain2.")
        if name in grid:
            raise ValueError(f"Grid parameter {name!r} is given twice; list all its values in one entry.")
        grid[name] = [parse_value(v) for v in _split_values(values) if v.strip()]
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first parameter varying slowest."""
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict name -> list of values, got {type(grid).__name__}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"Grid parameter {name!r} needs a non-empty list of values, got {values!r}.")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _value_text(value) -> str:
    return value if isinstance(value, str) else repr(value).replace(" ", "")


def run_name(params: dict) -> str:
    """A deterministic folder name for a run: ``em_bases=4__em_iters=1`` (``default`` if empty)."""
    if not params:
        return "default"
    name = "__".join(f"{k}={_value_text(v)}" for k, v in params.items())
    return _UNSAFE.sub("-", name)
