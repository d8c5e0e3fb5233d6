"""Every lesson is a jupytext pair (notebooks/NN_name.py in py:percent + NN_name.ipynb) and the two agree.

The sync tool is tools/sync_notebooks.py (``make notebooks``); these tests run it on the real
notebooks (check only) and on copies in a temporary folder (both directions).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)
PAIRS = sync.pairs(ROOT / "notebooks")


def test_every_lesson_has_both_files():
    assert len(PAIRS) >= 7
    for py, ipynb in PAIRS:
        assert py.is_file() and ipynb.is_file(), f"{py.stem}: both {py.name} and {ipynb.name} must exist"


@pytest.mark.parametrize("pair", PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_pair_is_in_sync(pair):
    reason = sync.out_of_sync(*pair)
    assert reason is None, f"{pair[0].stem}: {reason}. Run `make notebooks` (python tools/sync_notebooks.py)."


@pytest.mark.parametrize("pair", PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_py_source_is_percent_format_with_a_tagged_parameters_cell(pair):
    text = pair[0].read_text()
    assert text.startswith("# %% [markdown]\n"), f"{pair[0].name}: py:percent, starting with the title cell"
    assert text.count('# %% tags=["parameters"]\n') == 1, f"{pair[0].name}: one `# %% tags=[\"parameters\"]` cell"
    compile(text, str(pair[0]), "exec")  # the source is real Python (magics are commented out)


@pytest.fixture
def copy_of(tmp_path):
    py, ipynb = PAIRS[0]
    for f in (py, ipynb):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / py.name, tmp_path / ipynb.name


def _bump(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + seconds))


def test_an_edit_of_the_py_is_detected_and_synced_into_the_ipynb(copy_of):
    py, ipynb = copy_of
    py.write_text(py.read_text() + "\n# %%\nassert 1 + 1 == 2\n")
    _bump(py, 10)
    assert sync.out_of_sync(py, ipynb) == "the cells differ"
    assert sync.main(["--check", "--dir", str(py.parent)]) == 1
    assert sync.main(["--dir", str(py.parent)]) == 0
    assert sync.out_of_sync(py, ipynb) is None
    assert "".join(json.loads(ipynb.read_text())["cells"][-1]["source"]) == "assert 1 + 1 == 2"
    # the .py stays the newer file, so JupyterLab's jupytext reads the cells from it (an older .py whose
    # layout differs from jupytext's rendering makes JupyterLab refuse to open the notebook)
    assert py.stat().st_mtime >= ipynb.stat().st_mtime


def test_an_edit_of_the_ipynb_wins_when_it_is_newer(copy_of):
    py, ipynb = copy_of
    nb = json.loads(ipynb.read_text())
    nb["cells"][-1]["source"] = "x = 'edited in Jupyter'"
    nb["cells"][-1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    nb["cells"][-1]["cell_type"], nb["cells"][-1]["execution_count"] = "code", 3
    ipynb.write_text(json.dumps(nb))
    _bump(ipynb, 10)
    assert sync.out_of_sync(py, ipynb) == "the cells differ"
    sync.sync_pair(py, ipynb)
    assert sync.out_of_sync(py, ipynb) is None
    assert py.read_text().rstrip().endswith("x = 'edited in Jupyter'")
    assert py.stat().st_mtime >= ipynb.stat().st_mtime
    stored = json.loads(ipynb.read_text())["cells"][-1]
    assert stored["outputs"] == [] and stored["execution_count"] is None  # stored form: no outputs


def test_outputs_in_the_ipynb_alone_are_reported(copy_of):
    py, ipynb = copy_of
    nb = json.loads(ipynb.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    ipynb.write_text(json.dumps(nb, indent=1))
    assert "not in stored form" in sync.out_of_sync(py, ipynb)


def test_a_missing_half_is_created(copy_of):
    py, ipynb = copy_of
    ipynb.unlink()
    assert sync.out_of_sync(py, ipynb) == f"{ipynb.name} is missing"
    sync.sync_pair(py, ipynb)
    assert sync.out_of_sync(py, ipynb) is None
    assert ipynb.read_text() == (ROOT / "notebooks" / ipynb.name).read_text()
