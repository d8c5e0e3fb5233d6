"""Keep every lesson's jupytext pair in sync: ``notebooks/NN_name.py`` (py:percent) <-> ``NN_name.ipynb``.

The ``.py`` file is the notebook as real code (ruff lints it, diffs read like code); the ``.ipynb``
is what Jupyter, Colab, nbval and papermill open. Both hold the same cells. Run after editing
either one (``make notebooks`` runs it)::

    python tools/sync_notebooks.py            # bring every pair in sync; the newer file of a pair wins
    python tools/sync_notebooks.py --check    # exit 1 and name every pair that is out of sync
    python tools/sync_notebooks.py --from py  # force a direction (py or ipynb) for every pair

"The newer file wins" is the rule of ``jupytext --sync``. The ``.ipynb`` is written in one canonical
form: no outputs, no execution counts, cell ids ``NN-000``, ``NN-001``, ... and the kit's notebook
metadata (python3 kernel, Colab asks for a GPU runtime, the jupytext pairing), so that a notebook
opened in JupyterLab with jupytext installed saves both files itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
PY_FORMAT = "py:percent"
#: the notebook metadata every lesson carries; jupytext's filters keep the .py free of a YAML header
#: and of cell metadata other than tags (the ``parameters`` tag is the one that matters)
KIT_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
    "accelerator": "GPU",
    "jupytext": {
        "formats": "ipynb,py:percent",
        "notebook_metadata_filter": "-all",
        "cell_metadata_filter": "tags,-all",
    },
}


def _cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a pair must agree on: per cell its type, source and tags."""
    return [
        (c.cell_type, c.source.strip("\n"), tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells
    ]


def canonical(nb, stem: str):
    """``nb`` in the kit's stored form: only sources and tags, no outputs, ids ``NN-iii``, kit metadata."""
    out = nbformat.v4.new_notebook()
    for index, (kind, source, tags) in enumerate(_cells(nb)):
        cell = (
            nbformat.v4.new_markdown_cell(source)
            if kind == "markdown"
            else (nbformat.v4.new_raw_cell(source) if kind == "raw" else nbformat.v4.new_code_cell(source))
        )
        if tags:
            cell.metadata["tags"] = list(tags)
        cell["id"] = f"{stem[:2]}-{index:03d}"
        out.cells.append(cell)
    out.metadata = nbformat.from_dict(KIT_METADATA)
    nbformat.validate(out)
    return out


def ipynb_text(nb, stem: str) -> str:
    """The stored ``.ipynb`` text of ``nb``."""
    return nbformat.writes(canonical(nb, stem)) + "\n"


def py_text(nb, stem: str) -> str:
    """The stored py:percent text of ``nb`` (no header; magics are commented by jupytext)."""
    return jupytext.writes(canonical(nb, stem), fmt=PY_FORMAT)


def read_py(path: Path):
    return jupytext.read(path, fmt=PY_FORMAT)


def read_ipynb(path: Path):
    return nbformat.read(path, as_version=4)


def pairs(folder: Path = NOTEBOOK_DIR) -> list[tuple[Path, Path]]:
    """(py, ipynb) for every lesson stem ``NN_name`` that has either file."""
    stems = sorted(
        {p.stem for p in folder.glob("[0-9][0-9]_*.py")} | {p.stem for p in folder.glob("[0-9][0-9]_*.ipynb")}
    )
    return [(folder / f"{s}.py", folder / f"{s}.ipynb") for s in stems]


def out_of_sync(py: Path, ipynb: Path) -> str | None:
    """Why the pair is out of sync (a sentence), or None when both hold the same cells and the .ipynb is stored form.

    The .py's layout is free (e.g. ``ruff format`` puts two blank lines after a function that ends a
    cell): only its cells count."""
    if not py.is_file() or not ipynb.is_file():
        return f"{(ipynb if py.is_file() else py).name} is missing"
    from_py = read_py(py)
    if _cells(from_py) != _cells(read_ipynb(ipynb)):
        return "the cells differ"
    if ipynb.read_text() != ipynb_text(from_py, py.stem):
        return f"{ipynb.name} is not in stored form (outputs, ids or metadata)"
    return None


def sync_pair(py: Path, ipynb: Path, source: str | None = None) -> str | None:
    """Bring the pair in sync from ``source`` ("py" or "ipynb"; None: the newer file). Returns what was done."""
    reason = out_of_sync(py, ipynb)
    if reason is None:
        return None
    if source is None:
        if not ipynb.is_file():
            source = "py"
        elif not py.is_file():
            source = "ipynb"
        else:
            source = "ipynb" if ipynb.stat().st_mtime > py.stat().st_mtime else "py"
    # The .py ends up the newer file either way: JupyterLab's jupytext then reads the cells from it.
    # (Were the .ipynb newer, jupytext would compare the texts and refuse to open a .py whose layout,
    # e.g. ruff format's blank lines, differs from its own rendering.)
    if source == "py":  # the .py keeps its own layout (ruff format's blank lines are not cells)
        ipynb.write_text(ipynb_text(read_py(py), py.stem))
        os.utime(py)
        return f"{py.stem}: {reason}; wrote {ipynb.name} from {py.name}"
    nb = read_ipynb(ipynb)
    ipynb.write_text(ipynb_text(nb, py.stem))
    py.write_text(py_text(nb, py.stem))
    return f"{py.stem}: {reason}; wrote {py.name} from {ipynb.name} (and stripped the .ipynb)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only report pairs that are out of sync (exit 1)"
    )
    parser.add_argument("--from", dest="source", choices=("py", "ipynb"), help="force the direction")
    parser.add_argument("--dir", type=Path, default=NOTEBOOK_DIR, help="the notebooks folder")
    args = parser.parse_args(argv)
    problems = []
    for py, ipynb in pairs(args.dir):
        if args.check:
            reason = out_of_sync(py, ipynb)
            if reason:
                problems.append(f"{py.stem}: {reason}")
        else:
            done = sync_pair(py, ipynb, args.source)
            if done:
                print(done)
    if problems:
        print(
            "out of sync (run `make notebooks` or `python tools/sync_notebooks.py`):\n  "
            + "\n  ".join(problems)
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
