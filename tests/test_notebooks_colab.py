"""What can be checked here of running the notebooks on Colab.

On Colab only the one notebook file exists (opened from its badge): the kit must come from a
pinned, non-editable install of a release, every file must come from the package or be made at
run time (never a path into a local checkout), and the device from ``emclip.get_device``. The
badge and the install come from the one home setting (tools/set_home.py; tests/test_notebooks_home.py).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

import emclip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import set_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: top folders of the checkout that a pip-installed kit does not have
CHECKOUT_ONLY = {"data", "tools", "tests", "notebooks", "benchmarks", "emclip", ".ci", "shared"}
_FIND_SPEC = importlib.util.find_spec
BADGE = re.compile(r"colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/")


def _sources(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def _python(source: str) -> ast.Module:
    """A code cell as Python (IPython magics become get_ipython() calls)."""
    return ast.parse(TransformerManager().transform_cell(source))


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, json.loads(request.param.read_text())


def _magic_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"run_line_magic", "system"}):
            yield node.func.attr, [a.value for a in node.args if isinstance(a, ast.Constant)]


def _setup_cell(nb: dict) -> str:
    cells = [s for s in _sources(nb) if "google.colab" in s]
    assert len(cells) == 1, f"exactly one Colab set-up cell, found {len(cells)}"
    return cells[0]


def test_setup_cell_acts_only_on_colab_and_before_the_import(notebook):
    path, nb = notebook
    cell = _setup_cell(nb)
    guard = next((n for n in _python(cell).body if isinstance(n, ast.If)), None)
    assert guard is not None and ast.unparse(guard.test) == "'google.colab' in sys.modules", (
        f"{path.name}: the install must run only under `if \"google.colab\" in sys.modules:`")
    pos = _sources(nb).index(cell)
    first_import = next(i for i, s in enumerate(_sources(nb)) if re.search(r"^import emclip", s, re.M))
    assert pos < first_import, "the set-up cell comes before `import emclip`"


def run_setup_cell(source: str, monkeypatch, colab: bool = True, installed: bool = False) -> list[list[str]]:
    """Execute a set-up cell as Colab would (no emclip installed unless ``installed``); returns pip calls."""
    calls = []
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (_FIND_SPEC(name, *a) if installed or name != "emclip" else None))
    monkeypatch.setattr(subprocess, "check_call", lambda args, **kw: calls.append(list(args)))
    exec(compile(source, "setup-cell", "exec"), {})
    return calls


def test_setup_cell_installs_from_the_home_or_says_what_to_set(notebook, monkeypatch):
    path, nb = notebook
    home = set_home.read_home(ROOT / "pyproject.toml")
    cell = _setup_cell(nb)
    assert run_setup_cell(cell, monkeypatch, colab=False) == [], "outside Colab the cell does nothing"
    if not home:
        with pytest.raises(RuntimeError, match=r"tools/set_home\.py https://github\.com/<you>/emclip"):
            run_setup_cell(cell, monkeypatch)
        assert run_setup_cell(cell, monkeypatch, installed=True) == [], "an installed kit (a wheel) is used"
        assert "no public home yet" in "".join(nb["cells"][0]["source"])
        return
    (call,) = run_setup_cell(cell, monkeypatch)
    assert call[:4] == [sys.executable, "-m", "pip", "install"] and not {"-e", "--editable"} & set(call)
    requirement = Requirement(call[-1])
    match = re.fullmatch(r"git\+(?P<home>https://github\.com/[\w.-]+/[\w.-]+)@(?P<ref>\S+)", requirement.url or "")
    assert requirement.name == "emclip" and match and match["home"] == home, f"{path.name}: install from {home}"
    if re.fullmatch(r"v\d.*", match["ref"]):
        assert match["ref"] == f"v{emclip.__version__}", (
            f"{path.name}: pins {match['ref']}, but the package is {emclip.__version__}: run tools/set_home.py")
    badge = BADGE.search("".join(nb["cells"][0]["source"]))
    assert badge and f"https://github.com/{badge['repo']}" == home, "the badge and the install name the home"


@pytest.fixture
def published(tmp_path):
    """A copy of the kit's notebooks and pyproject after `tools/set_home.py URL --ref TAG`."""
    (tmp_path / "notebooks").mkdir()
    for f in (ROOT / "notebooks").glob("[0-9][0-9]_*.*"):
        (tmp_path / "notebooks" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    ref = f"v{emclip.__version__}"
    assert set_home.main(["https://github.com/teacher/emclip-fork.git", "--ref", ref, "--root", str(tmp_path)]) == 0
    return tmp_path


def _valid_for_setuptools(pyproject: Path) -> dict:
    from setuptools.config.pyprojecttoml import read_configuration

    return read_configuration(pyproject, expand=False)  # raises on e.g. an empty [project.urls] entry


def test_set_home_points_every_badge_and_install_at_the_home(published, monkeypatch):
    home = "https://github.com/teacher/emclip-fork"
    assert set_home.read_setting(published / "pyproject.toml") == (home, f"v{emclip.__version__}")
    assert _valid_for_setuptools(published / "pyproject.toml")["project"]["urls"]["Repository"] == home
    assert set_home.check(published) == []
    for ipynb in sorted((published / "notebooks").glob("*.ipynb")):
        nb = json.loads(ipynb.read_text())
        badge = (f"https://colab.research.google.com/github/teacher/emclip-fork/blob/v{emclip.__version__}"
                 f"/notebooks/{ipynb.name}")
        assert badge in "".join(nb["cells"][0]["source"]), f"{ipynb.name}: badge opens its own path at the ref"
        (call,) = run_setup_cell(_setup_cell(nb), monkeypatch)
        assert call[-1] == f"emclip @ git+{home}@v{emclip.__version__}" and "-e" not in call
        assert set_home.sync_notebooks.out_of_sync(ipynb.with_suffix(".py"), ipynb) is None


def test_set_home_keeps_the_ref_and_can_clear_the_home(published):
    assert set_home.main(["--root", str(published)]) == 0  # regenerate: same home, same ref
    assert set_home.check(published) == []
    assert f"@v{emclip.__version__}" in (published / "notebooks" / "00_welcome.py").read_text()
    assert set_home.main(["", "--root", str(published)]) == 0
    assert set_home.read_setting(published / "pyproject.toml") == ("", f"v{emclip.__version__}")
    assert "Repository" not in _valid_for_setuptools(published / "pyproject.toml")["project"]["urls"]
    assert "no public home yet" in (published / "notebooks" / "00_welcome.py").read_text()
    assert set_home.check(published) == []


def test_the_kits_own_setting_keeps_pyproject_valid():
    home = set_home.read_home(ROOT / "pyproject.toml")
    urls = _valid_for_setuptools(ROOT / "pyproject.toml")["project"]["urls"]
    assert urls.get("Repository") == (home or None), "[project.urls] Repository follows [tool.emclip] home"


def test_set_home_refuses_what_colab_cannot_open(published, capsys):
    assert set_home.main(["https://gitlab.com/a/b", "--root", str(published)]) == 2
    assert "not a GitHub repository URL" in capsys.readouterr().err
    assert set_home.main(["https://github.com/a/b", "--ref", "bad ref", "--root", str(published)]) == 2
    assert "not a git tag or branch name" in capsys.readouterr().err
    assert set_home.read_home(published / "pyproject.toml") == "https://github.com/teacher/emclip-fork"


def test_the_notebooks_agree_with_the_home_setting():
    assert set_home.check(ROOT) == [], "run `python tools/set_home.py` to regenerate the badges and set-up cells"


def test_nothing_else_is_installed_or_shelled_out(notebook):
    path, nb = notebook
    for source in _sources(nb):
        if "google.colab" in source:
            continue
        for kind, args in _magic_calls(_python(source)):
            assert not (kind == "system" or args[:1] == ["pip"]), (
                f"{path.name}: shell/pip calls outside the set-up cell do not run the same on Colab: {args}")
        assert not re.search(r"\bsubprocess\b|\bos\.system\b", source), (
            f"{path.name}: shell calls outside the set-up cell do not run the same on Colab")


def _local_paths(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if not text or any(ch.isspace() for ch in text) or "://" in text:
                continue  # messages and URLs, not paths
            parts = Path(text).parts
            if text.startswith(("../", "./", "..\\")) or (len(parts) > 1 and parts[0] in CHECKOUT_ONLY):
                found.append(text)
    return found


def test_no_file_that_only_exists_in_a_checkout(notebook):
    path, nb = notebook
    for source in _sources(nb):
        tree = _python(source)
        assert not _local_paths(tree), (
            f"{path.name}: {_local_paths(tree)} exists only in a local checkout; on Colab use the package "
            "(importlib.resources), emclip.runlog.results_dir() or files the notebook makes itself")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in {"sys.path.insert", "sys.path.append"}:
                pytest.fail(f"{path.name}: sys.path edits point at helper files that Colab does not have")


def test_imports_come_from_installed_packages(notebook):
    path, nb = notebook
    for source in _sources(nb):
        for node in ast.walk(_python(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top == "google":  # google.colab exists only on Colab
                    continue
                spec = importlib.util.find_spec(top)
                assert spec is not None, f"{path.name}: imports {top!r}, which is not an installed package (helper files beside a notebook do not exist on Colab)"
                origin = Path(spec.origin or next(iter(spec.submodule_search_locations or []), "built-in"))
                in_checkout = (origin.is_absolute() and ROOT in origin.resolve().parents
                               and "site-packages" not in origin.parts)
                assert top == "emclip" or not in_checkout, (
                    f"{path.name}: {top!r} is a file of the checkout ({origin}); move the code into emclip")


def _hard_coded_cuda(tree: ast.AST) -> list[str]:
    """``x.cuda()``, and ``"cuda..."`` passed to a call (``.to("cuda")``, ``device="cuda:0"``,
    ``torch.device("cuda")``); comparisons such as ``device.type == "cuda"`` are fine."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
            found.append(ast.unparse(node))
        values = list(node.args) + [k.value for k in node.keywords]
        if any(isinstance(v, ast.Constant) and str(v.value).startswith("cuda") for v in values):
            found.append(ast.unparse(node))
    return found


def test_device_comes_from_get_device(notebook):
    path, nb = notebook
    for source in _sources(nb):
        bad = _hard_coded_cuda(_python(source))
        assert not bad, f"{path.name}: hard-coded CUDA {bad}; use emclip.get_device() (CPU when no GPU)"
    code = "\n".join(_sources(nb))
    if re.search(r"\bdevice\b", code):
        assert "get_device(" in code or 'device="auto"' in code, (
            f"{path.name}: names a device but never asks emclip.get_device() for it")
    assert nb["metadata"].get("accelerator") == "GPU", "Colab metadata asks for a GPU runtime"
