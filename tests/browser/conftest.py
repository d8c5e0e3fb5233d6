"""Fixtures of the browser suite (``make test-browser``; not part of ``make test``).

The suite runs only with ``EMCLIP_BROWSER=1`` (``make test-browser`` sets it); otherwise every test
here is skipped, so a plain ``pytest tests`` never needs Chromium. What it writes (screenshots, the
built site, JupyterLab's log) goes to ``$EMCLIP_BROWSER_OUT`` (default ``build/browser``):

    lab/NN_name.png, lab/NN_name__explorerK.png   JupyterLab after Run All, each explorer moved
    site/                                          the course site it built and read
    site-shots/PAGE.png                            one screenshot per page of the site
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from browser_env import OUT_ENV, REPO, SITE_NOTEBOOKS_ENV, browser_enabled, kit_env, step_timeout


def pytest_collection_modifyitems(config, items):
    if browser_enabled():
        return
    skip = pytest.mark.skip(reason="browser suite: run it with `make test-browser` (sets EMCLIP_BROWSER=1)")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def out_dir() -> Path:
    out = Path(os.environ.get(OUT_ENV, REPO / "build" / "browser")).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.fixture(scope="session")
def work_dir():
    with tempfile.TemporaryDirectory(prefix="emclip-browser-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def playwright_session():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session, work_dir):
    from chromium import launch

    context = launch(playwright_session, work_dir / "chromium-profile")
    yield context
    context.close()


@pytest.fixture(scope="session")
def lab_root(work_dir) -> Path:
    """A copy of notebooks/ for JupyterLab to run and save (the repository's files stay as they are)."""
    root = work_dir / "lab"
    shutil.copytree(
        REPO / "notebooks",
        root / "notebooks",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )
    return root


@pytest.fixture(scope="session")
def lab(lab_root, work_dir, out_dir):
    from labdriver import LabServer

    server = LabServer(lab_root, work_dir, kit_env(EMCLIP_RESULTS_DIR=str(work_dir / "lab-results")))
    server.start()
    yield server
    server.stop()
    shutil.copy(server.log, out_dir / "jupyterlab.log")


@pytest.fixture()
def lab_page(browser, lab):
    page = browser.new_page()
    yield page
    page.close()
    lab.shutdown_kernels()


def _run(command: list[str], what: str, **kwargs) -> None:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )


@pytest.fixture(scope="session")
def site_notebooks(work_dir) -> Path:
    """Executed notebooks for the site: $EMCLIP_SITE_NOTEBOOKS, else a fresh batch run in the ci profile."""
    if os.environ.get(SITE_NOTEBOOKS_ENV):
        return Path(os.environ[SITE_NOTEBOOKS_ENV]).resolve()
    output = work_dir / "run"
    _run(
        [str(Path(sys.prefix) / "bin" / "emclip"), "run", "--profile", "ci", "--output", str(output)],
        "emclip run --profile ci",
        env=kit_env(MPLBACKEND="Agg"),
        timeout=3 * step_timeout(),
    )
    return output / "notebooks"


@pytest.fixture(scope="session")
def site(site_notebooks, out_dir) -> Path:
    """The course site as `make site` builds it from ``site_notebooks``."""
    venv = Path(sys.prefix)
    target = out_dir / "site"
    _run(
        [
            "make",
            "--no-print-directory",
            "-o",
            str(venv / ".emclip-installed"),
            "-o",
            str(venv / ".emclip-site-installed"),
            f"VENV={venv}",
            "site",
            f"SITE_NOTEBOOKS={site_notebooks}",
            f"SITE_DIR={target}",
        ],
        "make site",
        env=kit_env(),
        timeout=600,
    )
    return target
