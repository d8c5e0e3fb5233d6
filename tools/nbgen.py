"""Build a kit notebook from Python: the standard header cells plus the lesson's cells.

Every notebook of the kit starts the same way (docs/architecture.md, notebook conventions):
title + Colab badge, learning goals, runtime, the ``parameters`` cell (literals only), a set-up
cell that installs emclip only on Colab, and the imports with ``emclip.print_config()``.

Usage in a generator script (``tools/notebooks/NN_name.py``)::

    from nbgen import md, code, write_notebook
    write_notebook("notebooks/01_x.ipynb", title=..., goals=[...], runtime={...},
                   parameters="profile = None\nseed = 0", imports="import emclip", cells=[md(...), code(...)])

Outputs are never stored; ids are deterministic so that regenerating gives the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

REPO = "emclip-kit/emclip"
VERSION_TAG = "v0.1.0"
COLAB_INSTALL = f'%pip install -q "emclip @ git+https://github.com/{REPO}@{VERSION_TAG}"'


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def badge(path: str) -> str:
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/{path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def header_cells(path: str, title: str, goals: list[str], runtime: dict[str, str], parameters: str,
                 imports: str) -> list:
    goal_lines = "\n".join(f"- {g}" for g in goals)
    runtime_lines = " · ".join(f"**{k}**: {v}" for k, v in runtime.items())
    return [
        md(f"# {title}\n\n{badge(path)}\n\n**You will learn to**\n\n{goal_lines}\n\n"
           f"**Expected runtime** — {runtime_lines}"),
        md("## Parameters\n\nThe next cell is tagged `parameters`: papermill (`-p name value`) and the "
           "`emclip sweep` command override it. `profile = None` reads `$EMCLIP_PROFILE` "
           "(`ci`, `cpu`, `gpu` or `auto`, the default, which picks `gpu` when CUDA is present)."),
        code(parameters, tags=("parameters",)),
        md("## Set-up\n\nOn Colab this installs a pinned release of the kit; elsewhere it does nothing "
           "(install the kit with `make install` or `pip install -e .`)."),
        code("import sys\n\nif \"google.colab\" in sys.modules:\n    " + COLAB_INSTALL),
        code(imports.strip() + "\n\nemclip.print_config(profile)"),
    ]


def write_notebook(path: str, title: str, goals: list[str], runtime: dict[str, str], parameters: str,
                   imports: str, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = header_cells(path, title, goals, runtime, parameters, imports) + list(cells)
    stem = Path(path).stem
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{stem[:2]}-{index:03d}"
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
        "accelerator": "GPU",
    }
    out = Path(path)
    nbformat.validate(nb)
    out.write_text(nbformat.writes(nb) + "\n")
    return out


if __name__ == "__main__":  # regenerate every notebook
    here = Path(__file__).parent / "notebooks"
    for script in sorted(here.glob("[0-9][0-9]_*.py")):
        print("generating", script.name)
        sys.path.insert(0, str(Path(__file__).parent))
        exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__"})
