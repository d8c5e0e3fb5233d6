"""The package keeps the layer order of docs/architecture.md: import-linter's contract holds, every
module has a layer, and the documented rows are the contract's rows."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import tomllib

import emclip

ROOT = Path(__file__).resolve().parents[1]


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[name.strip().strip("()").removeprefix("emclip.") for name in row.split("|")] for row in contract["layers"]]


def _documented_layers() -> list[list[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"## Layers.*?```\n(.*?)```", text, re.S).group(1)
    rows, pending = [], ""
    for line in block.splitlines():
        names = pending + re.split(r"\s{2,}", line.strip())[0]
        if names.endswith(","):  # the row goes on on the next line
            pending = names + " "
            continue
        rows.append([n.strip() for n in names.split(",")])
        pending = ""
    return rows


def test_lint_imports_keeps_the_contract():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_module_has_a_layer():
    placed = {name for row in _contract_layers() for name in row}
    modules = {m.name for m in pkgutil.iter_modules(emclip.__path__)}
    assert modules - placed == set(), "place these modules in a layer of pyproject.toml and docs/architecture.md"


def test_the_documented_layers_are_the_contracts():
    assert _documented_layers() == _contract_layers()
