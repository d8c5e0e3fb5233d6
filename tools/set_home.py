"""Point every notebook's Colab badge and install cell at the kit's public home: one setting, one command.

The repository's home is one setting in ``pyproject.toml``: ``home`` (and the ``ref`` to open and install)
under ``[tool.emclip]``, empty until the kit is published; with a home, ``Repository`` under
``[project.urls]`` is written too (setuptools rejects an empty URL there, so it is left out until then).
Every lesson's title cell carries an "Open in Colab" badge and its set-up cell installs the kit on
Colab; both are generated here from that setting. An instructor who forks the kit runs, in the clone::

    python tools/set_home.py https://github.com/<you>/emclip --ref v0.1.0   # writes pyproject + notebooks
    git commit -am "Colab home" && git tag v0.1.0 && git push --tags        # the ref must exist on GitHub

``python tools/set_home.py`` (no URL) regenerates the cells from the current setting (after adding a
notebook); ``--check`` exits 1 when a notebook disagrees with it. With no home, the badge line says
so, and the set-up cell stops on Colab with a message that says what to set (a clone runs the
notebooks with a local install: ``pip install -e .``).

``--ref`` defaults to the current setting (``v<emclip version>`` at first): a tag, so that every
student installs the same code as the notebook they opened (the badge opens the notebook at that ref).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_notebooks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOME_KEY = "Repository"  #: written under [project.urls] once there is a home
GITHUB = re.compile(r"https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?")
REF = re.compile(r"[\w][\w./-]*")
BADGE_LINE = re.compile(r"^# (\[!\[Open In Colab\]\(.*\)\]\(.*\)|\*Open in Colab: .*\*)$", re.M)
SETUP_TITLE = "# ## Set-up"

SETUP_TEXT = """# ## Set-up
#
# On Colab the next cell installs the kit from its repository, at the same ref as this notebook; elsewhere
# it does nothing (install the kit in a clone with `make install` or `pip install -e .`). On a Colab GPU
# runtime the `auto` profile picks `colab` (sized for a class on a T4). Checkpoints go to
# `$EMCLIP_RESULTS_DIR`: point it at Google Drive (the commented lines) and a later notebook reuses an
# earlier notebook's trained model from a fresh runtime, when its run record matches; otherwise it trains."""

_DRIVE = """    # import os
    # from google.colab import drive
    # drive.mount("/content/drive")
    # os.environ["EMCLIP_RESULTS_DIR"] = "/content/drive/MyDrive/emclip-results"
"""


def version() -> str:
    text = (ROOT / "emclip" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _section(text: str, name: str) -> str:
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def _value(section: str, key: str) -> str | None:
    match = re.search(rf'^{key}\s*=\s*"([^"]*)"', section, re.M)
    return match.group(1).strip() if match else None


def read_setting(pyproject: Path = ROOT / "pyproject.toml") -> tuple[str, str]:
    """(home, ref) from ``[tool.emclip]``; home "" when there is no public home yet."""
    section = _section(pyproject.read_text(), "tool.emclip")
    return _value(section, "home") or "", _value(section, "ref") or f"v{version()}"


def read_home(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The kit's public home (``[tool.emclip] home``); "" when there is none yet."""
    return read_setting(pyproject)[0]


def check_home(url: str) -> str:
    """``url`` as ``https://github.com/OWNER/REPO``; ValueError naming the fix otherwise."""
    match = GITHUB.fullmatch(url.strip())
    if not match:
        raise ValueError(f"home {url!r} is not a GitHub repository URL: Colab opens notebooks from GitHub, "
                         "so pass https://github.com/<owner>/<repo>")
    return f"https://github.com/{match['owner']}/{match['repo']}"


def check_ref(ref: str) -> str:
    if not REF.fullmatch(ref):
        raise ValueError(f"ref {ref!r} is not a git tag or branch name (e.g. v0.1.0 or main)")
    return ref


def badge(home: str, ref: str, notebook: str) -> str:
    """The markdown line under each title: a Colab badge for ``notebooks/<notebook>`` at ``ref``."""
    if not home:
        return ("*Open in Colab: this copy of the kit has no public home yet, "
                "so there is no badge (see the set-up cell).*")
    path = home.removeprefix("https://github.com/")
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/{ref}/notebooks/{notebook})")


def requirement(home: str, ref: str) -> str:
    return f"emclip @ git+{home}@{ref}"


def setup_code(home: str, ref: str) -> str:
    """The set-up cell: installs the kit on Colab only (from the home at ``ref``), or says what to set."""
    if home:
        return ("import subprocess\nimport sys\n\n"
                f'KIT = "{requirement(home, ref)}"\n'
                'if "google.colab" in sys.modules:  # Colab only; a clone uses `pip install -e .`\n'
                '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", KIT])\n'
                + _DRIVE)
    return ('import importlib.util\nimport sys\n\n'
            'if "google.colab" in sys.modules:  # Colab only; a clone uses `pip install -e .`\n'
            '    if importlib.util.find_spec("emclip") is None:\n'
            "        raise RuntimeError(\n"
            '            "emclip is not installed, and this copy of the kit names no public repository to install "\n'
            '            "it from. Instructor: push the kit to GitHub, run `python tools/set_home.py "\n'
            f'            "https://github.com/<you>/emclip --ref v{version()}` in the clone, commit and push the "\n'
            '            "tag: the badges and this cell then point there. Or build a wheel in the clone "\n'
            '            "(`python -m build`), upload it here and `%pip install` it before this cell."\n'
            "        )\n"
            + _DRIVE)


def _cells(text: str) -> list[str]:
    return re.split(r"(?m)^(?=# %%)", text)


def render(text: str, home: str, ref: str, notebook: str) -> str:
    """A lesson's py:percent ``text`` with its badge line and its two set-up cells generated."""
    cells = _cells(text)
    if not BADGE_LINE.search(cells[1]):
        raise ValueError(f"{notebook}: the title cell has no badge line to replace")
    cells[1] = BADGE_LINE.sub(lambda _: "# " + badge(home, ref, notebook), cells[1], count=1)
    setup_md = [i for i, c in enumerate(cells) if c.startswith("# %% [markdown]\n" + SETUP_TITLE)]
    setup_code_cells = [i for i, c in enumerate(cells) if '"google.colab" in sys.modules' in c]
    if len(setup_md) != 1 or len(setup_code_cells) != 1:
        raise ValueError(f"{notebook}: expected one '## Set-up' markdown cell and one set-up code cell")
    cells[setup_md[0]] = "# %% [markdown]\n" + SETUP_TEXT + "\n\n"
    cells[setup_code_cells[0]] = "# %%\n" + setup_code(home, ref) + "\n"
    return "".join(cells)


def apply(root: Path, home: str | None, ref: str | None) -> list[str]:
    """Write the setting (when given) into ``root/pyproject.toml`` and regenerate every lesson; returns changed stems."""
    pyproject = root / "pyproject.toml"
    if ref is not None:
        check_ref(ref)
    if home is not None:
        home = check_home(home) if home else ""
    current_home, current_ref = read_setting(pyproject)
    _write_setting(pyproject, current_home if home is None else home, ref or current_ref)
    home, ref = read_setting(pyproject)
    changed = []
    for py, ipynb in sync_notebooks.pairs(root / "notebooks"):
        text = py.read_text()
        new = render(text, home, ref, ipynb.name)
        if new != text:
            py.write_text(new)
            changed.append(py.stem)
        sync_notebooks.sync_pair(py, ipynb, "py")
    return changed


def _set_key(text: str, section: str, key: str, value: str | None) -> str:
    """``text`` with ``key = "value"`` in ``[section]`` (added when missing); ``value=None`` removes the key."""
    line = f'{key} = "{value}"'
    header = f"[{section}]\n"
    if header not in text:
        return text if value is None else text.rstrip("\n") + f"\n\n{header}{line}\n"
    start = text.index(header) + len(header)
    body = _section(text, section)
    pattern = re.compile(rf"^{key}\s*=.*\n?", re.M)
    if pattern.search(body):
        new_body = pattern.sub("" if value is None else line + "\n", body, count=1)
    else:
        new_body = body if value is None else line + "\n" + body
    return text[:start] + new_body + text[start + len(body):]


def _write_setting(pyproject: Path, home: str, ref: str) -> None:
    text = _set_key(pyproject.read_text(), "tool.emclip", "ref", ref)
    text = _set_key(text, "tool.emclip", "home", home)
    text = _set_key(text, "project.urls", HOME_KEY, home or None)  # setuptools rejects an empty URL
    pyproject.write_text(text)


def check(root: Path) -> list[str]:
    """Lessons whose badge or set-up cells disagree with the setting in ``root/pyproject.toml``."""
    home, ref = read_setting(root / "pyproject.toml")
    wrong = []
    for py, ipynb in sync_notebooks.pairs(root / "notebooks"):
        text = py.read_text()
        if render(text, home, ref, ipynb.name) != text:
            wrong.append(py.stem)
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("home", nargs="?", help="https://github.com/<owner>/<repo> ('' clears it)")
    parser.add_argument("--ref", help="tag or branch the badges open and Colab installs (default v<version>)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a notebook disagrees with the setting")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        wrong = check(args.root)
        if wrong:
            print("badge/set-up cells differ from pyproject's home; run `python tools/set_home.py`:", *wrong)
        return 1 if wrong else 0
    try:
        changed = apply(args.root, args.home, args.ref)
    except ValueError as err:
        print(f"set_home: {err}", file=sys.stderr)
        return 2
    home = read_home(args.root / "pyproject.toml")
    print(f"home: {home or '(none)'}; regenerated {len(changed)} notebook(s): {', '.join(changed) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
