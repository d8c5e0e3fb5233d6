"""What can be checked here of running the notebooks on Colab.

On Colab only the one notebook file exists (opened from its badge): the kit must come from a
pinned, non-editable install of a release, every file must come from the package or be made at
run time (never a path into a local checkout), and the device from ``emclip.get_device``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

import emclip

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: top folders of the checkout that a pip-installed kit does not have
CHECKOUT_ONLY = {"data", "tools", "tests", "notebooks", "benchmarks", "emclip", ".ci", "shared"}
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


def test_setup_cell_installs_the_pinned_release_only_on_colab(notebook):
    path, nb = notebook
    cells = [s for s in _sources(nb) if "google.colab" in s]
    assert len(cells) == 1, f"{path.name}: exactly one Colab set-up cell, found {len(cells)}"
    tree = _python(cells[0])
    guard = next((n for n in tree.body if isinstance(n, ast.If)), None)
    assert guard is not None and ast.unparse(guard.test) == "'google.colab' in sys.modules", (
        f"{path.name}: the install must run only under `if \"google.colab\" in sys.modules:`")
    installs = [args for kind, args in _magic_calls(guard) if kind == "run_line_magic" and args[0] == "pip"]
    assert len(installs) == 1, f"{path.name}: one `%pip install` inside the guard"
    words = shlex.split(installs[0][1])
    assert words[0] == "install" and not {"-e", "--editable"} & set(words), "a non-editable install"
    requirement = Requirement(next(w for w in words[1:] if not w.startswith("-")))
    match = re.fullmatch(r"git\+https://github\.com/(?P<repo>[\w.-]+/[\w.-]+)@(?P<ref>\S+)", requirement.url or "")
    assert requirement.name == "emclip" and match, f"{path.name}: install emclip from its git URL"
    assert match["ref"] == f"v{emclip.__version__}", (
        f"{path.name}: pins {match['ref']}, but the package is {emclip.__version__}: regenerate the notebook")
    badge = BADGE.search("".join(nb["cells"][0]["source"]))
    assert badge and badge["repo"] == match["repo"], "the install and the Colab badge name the same repository"
    pos = _sources(nb).index(cells[0])
    first_import = next(i for i, s in enumerate(_sources(nb)) if re.search(r"^import emclip", s, re.M))
    assert pos < first_import, "the set-up cell comes before `import emclip`"


def test_nothing_else_is_installed_or_shelled_out(notebook):
    path, nb = notebook
    for source in _sources(nb):
        if "google.colab" in source:
            continue
        for kind, args in _magic_calls(_python(source)):
            assert not (kind == "system" or args[:1] == ["pip"]), (
                f"{path.name}: shell/pip calls outside the set-up cell do not run the same on Colab: {args}")


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
