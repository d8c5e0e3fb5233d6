"""Every notebook follows the kit's conventions (docs/architecture.md, notebook conventions)."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import set_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HARD_CODED_GPU = re.compile(r"\.cuda\(\)|\.to\(\s*['\"]cuda|device\s*=\s*['\"]cuda|torch\.device\(\s*['\"]cuda")


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert all(n.isdigit() for n in numbers), numbers
    assert numbers == sorted(set(numbers)), "notebook numbers must be unique"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, _load(request.param)


def test_exactly_one_parameters_cell_with_literals_only(notebook):
    path, nb = notebook
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    assert cells[0]["cell_type"] == "code"
    tree = ast.parse(_source(cells[0]))
    assert tree.body, "the parameters cell is empty"
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"{path.name}: parameters cell may only hold `name = literal` lines: {ast.unparse(node)}"
        )
        ast.literal_eval(node.value)  # raises if not a literal


def test_parameters_cell_reads_the_profile(notebook):
    path, nb = notebook
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assert re.search(r"^profile = None", _source(cell), re.M), f"{path.name}: `profile = None` (reads $EMCLIP_PROFILE)"


def test_kernelspec_and_no_outputs_and_size(notebook):
    path, nb = notebook
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: stored outputs (run `make strip`)"
            assert cell.get("execution_count") is None, f"{path.name}: stored execution counts"
    assert path.stat().st_size < 1_000_000


def test_title_then_the_colab_line_from_the_home_setting(notebook):
    path, nb = notebook
    first = _source(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith("# ")
    home = set_home.read_home(ROOT / "pyproject.toml")
    if home:
        url = f"https://colab.research.google.com/github/{home.removeprefix('https://github.com/')}/blob/"
        assert url in first and f"/notebooks/{path.name})" in first, f"{path.name}: the badge must open {url}.../{path.name}"
    else:
        assert first.splitlines()[2] == set_home.badge("", "", path.name), f"{path.name}: say that there is no home yet"


def test_header_conventions(notebook):
    path, nb = notebook
    text = "\n".join(_source(c) for c in nb["cells"][:8])
    assert "You will learn" in text and "Expected runtime" in text
    assert "google.colab" in text and "pip install" in text, "a set-up cell that installs emclip on Colab"
    assert "emclip.print_config(" in text


def test_no_hard_coded_gpu(notebook):
    path, nb = notebook
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = _source(cell)
            assert not HARD_CODED_GPU.search(src), (
                f"{path.name}: use emclip.get_device(), never a hard-coded cuda device"
            )


def test_notebooks_check_results_with_asserts(notebook):
    path, nb = notebook
    assert any(re.search(r"^\s*assert ", _source(c), re.M) for c in nb["cells"] if c["cell_type"] == "code")


def test_the_class_plan_fills_90_minutes_without_gaps():
    welcome = _load(ROOT / "notebooks" / "00_welcome.ipynb")
    text = next(_source(c) for c in welcome["cells"] if "## A class that fits" in _source(c))
    spans = [(int(a), int(b)) for a, b in re.findall(r"^\| (\d+)-(\d+) \|", text, re.M)]
    assert spans and spans[0][0] == 0 and spans[-1][1] == 90, spans
    assert all(end == nxt for (_, end), (nxt, _) in zip(spans, spans[1:])), f"gaps or overlaps: {spans}"
    homework = re.search(r"\*\*Homework\*\* \(about ([\d.]+) hours\)(.*?)\n\n", text, re.S)
    minutes = sum(int(m) for m in re.findall(r"\((\d+) min\)", homework.group(2)))
    assert abs(minutes / 60 - float(homework.group(1))) <= 0.25, f"homework adds up to {minutes} min"
