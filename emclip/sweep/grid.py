"""The grid of a sweep: parse ``NAME=V1,V2`` entries, expand the combinations, name the runs."""

from __future__ import annotations

import ast
import difflib
import itertools
import os
import re
from pathlib import Path

from emclip.errors import ConfigError, DataError

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
            raise ConfigError(f"Bad grid entry {spec!r}: write NAME=V1,V2,... with NAME a notebook "
                             "parameter, e.g. em_bases=4,8 or domain=domain1,domain2.")
        if name in grid:
            raise ConfigError(f"Grid parameter {name!r} is given twice; list all its values in one entry.")
        grid[name] = [parse_value(v) for v in _split_values(values) if v.strip()]
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first parameter varying slowest."""
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict name -> list of values, got {type(grid).__name__}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"Grid parameter {name!r} needs a non-empty list of values, got {values!r}.")
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


def _assigned_names(source: str) -> list[str]:
    """Names a code cell assigns at top level (``a = 1``, ``b: int = 2``, ``c, d = 3, 4``), in order."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:  # not Python we can parse: read ``name =`` at the start of each line
        return list(dict.fromkeys(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", code, flags=re.M)))
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))


def notebook_parameters(notebook: str | os.PathLike) -> list[str] | None:
    """The names set in ``notebook``'s cell tagged ``parameters`` (``None`` if it has no such cell)."""
    import nbformat

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as err:  # nbformat raises JSON, validation and OS errors
        raise DataError(f"Cannot read the notebook {notebook}: {err}. Check that it is a saved .ipynb file.") from err
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return _assigned_names(cell.source)
    return None


def check_grid_names(notebook: str | os.PathLike, grid: dict) -> None:
    """ConfigError unless every grid name is set in the notebook's ``parameters`` cell.

    papermill only warns about a name the notebook does not have and runs on: a misspelled name
    (``em_base``) would give identical runs. This check runs before any run starts.
    """
    if not grid:
        return
    names = notebook_parameters(notebook)
    if names is None:
        raise ConfigError(f"{Path(notebook).name} has no cell tagged 'parameters', so the grid values of "
                          f"{', '.join(grid)} would replace nothing. Tag the cell that sets the defaults "
                          "'parameters' (Jupyter: the cell's property inspector, Tags).")
    unknown = [name for name in grid if name not in names]
    if unknown:
        hints = [f"{name} -> {close[0]}?" for name in unknown
                 for close in [difflib.get_close_matches(name, names, n=1)] if close]
        raise ConfigError(f"Unknown grid parameter(s) {', '.join(unknown)} for {Path(notebook).name}"
                          f"{' (did you mean ' + ', '.join(hints) + ')' if hints else ''}. Its parameters cell "
                          f"sets: {', '.join(names)}.")
