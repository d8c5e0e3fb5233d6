"""The install files agree with each other, and the CLI entry point works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"requirements.txt must pin exact versions: {line!r}"
            pins[_name(line)] = line.split("==", 1)[1]
    return pins


def _environment_pip_section() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    pins = {}
    in_pip = False
    for line in text.splitlines():
        if re.match(r"\s+- pip:\s*$", line):
            in_pip = True
            continue
        if in_pip:
            match = re.match(r"\s+- (\S+)\s*$", line)
            if not match:
                break
            item = match.group(1)
            if item.startswith("-e"):
                continue
            assert "==" in item, f"environment.yml pip entries must be pinned: {item!r}"
            pins[_name(item)] = item.split("==", 1)[1]
    return pins


def test_environment_yml_and_requirements_name_the_same_packages_and_versions():
    assert _environment_pip_section() == _requirements()


def test_pyproject_dependencies_are_all_pinned_in_requirements():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _requirements()
    declared = {_name(d) for d in project["dependencies"]}
    declared |= {_name(d) for d in project["optional-dependencies"]["test"]}
    declared |= {_name(d) for d in project["optional-dependencies"]["dev"] if not d.startswith("emclip")}
    assert declared - set(pins) == set(), "pin every dependency in requirements.txt"
    assert set(pins) - declared == set(), "requirements.txt pins something pyproject does not declare"


def test_the_tested_torch_pins():
    pins = _requirements()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["open-clip-torch"] == "3.3.0"


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    mismatched = {}
    for name, pinned in _requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            mismatched[name] = (pinned, "missing")
            continue
        if installed.split("+")[0] != pinned:
            mismatched[name] = (pinned, installed)
    assert not mismatched, f"(pinned, installed): {mismatched}; run `make install`"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emclip", *args], capture_output=True, text=True, timeout=120)


def test_cli_help_lists_the_subcommands():
    result = _cli("--help")
    assert result.returncode == 0
    from emclip.cli import COMMANDS

    for command in COMMANDS:
        assert command in result.stdout


def test_cli_info_prints_versions_device_and_profile():
    result = _cli("info", "--profile", "ci")
    assert result.returncode == 0, result.stderr
    for needle in ("emclip version:", "torch version:", "Device:", "Run profile:            ci", "Data dir:", "image_size"):
        assert needle in result.stdout


def test_cli_unknown_profile_is_a_clear_error():
    result = _cli("info", "--profile", "turbo")
    assert result.returncode == 2
    assert "Unknown run profile 'turbo'" in result.stderr and "ci, cpu, colab, gpu, auto" in result.stderr


@pytest.mark.parametrize("target", ["run", "test", "lab", "install", "fixup", "strip"])
def test_makefile_has_the_documented_targets(target):
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)


def test_ci_script_calls_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "HF_HUB_OFFLINE=1" in ci and "MPLBACKEND=Agg" in ci
    assert "make test" in readme and "make run" in readme
