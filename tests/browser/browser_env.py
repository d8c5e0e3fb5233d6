"""What the browser suite's fixtures and tests share: where things are and which switches it reads."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: the suite runs only when this is set (``make test-browser`` sets it)
BROWSER_ENV = "EMCLIP_BROWSER"
#: where screenshots, the built site and JupyterLab's log go (default build/browser)
OUT_ENV = "EMCLIP_BROWSER_OUT"
#: executed notebooks to build the site from (default: a fresh `emclip run --profile ci`)
SITE_NOTEBOOKS_ENV = "EMCLIP_SITE_NOTEBOOKS"
#: seconds one notebook may take in JupyterLab (ci profile on a busy 2-core machine: a few minutes)
TIMEOUT_ENV = "EMCLIP_BROWSER_TIMEOUT"


def browser_enabled() -> bool:
    return os.environ.get(BROWSER_ENV, "0").strip().lower() in {"1", "true", "yes"}


def lesson_notebooks() -> list[Path]:
    """The kit's numbered notebooks in course order (the glob ``emclip run`` uses)."""
    from emclip.runner import NOTEBOOK_GLOB

    return sorted((REPO / "notebooks").glob(NOTEBOOK_GLOB))


def step_timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "900"))


def kit_env(**extra: str) -> dict[str, str]:
    """The environment for the kit's processes: offline, ci profile, explorers on."""
    env = {k: v for k, v in os.environ.items() if k not in {"EMCLIP_NO_WIDGETS", "MPLBACKEND"}}
    env.update(HF_HUB_OFFLINE="1", EMCLIP_PROFILE="ci", PYTHONHASHSEED="0", **extra)
    return env
