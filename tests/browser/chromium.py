"""Headless Chromium for the browser suite: the Debian ``chromium`` driven by playwright.

Playwright never downloads a browser here: it launches the system Chromium
(``apt-get install chromium``; another binary with ``$EMCLIP_CHROMIUM``) with a fresh profile
and the switches that keep a headless run quiet and offline-friendly.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM_ENV = "EMCLIP_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> Path:
    """The Chromium binary; a clear error naming the fix when it is missing."""
    path = Path(os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM))
    if not path.is_file():
        raise FileNotFoundError(
            f"Chromium not found at {path}. Install Debian's build with "
            f"`apt-get install -y chromium` (the browser suite never downloads one), "
            f"or set ${CHROMIUM_ENV} to a Chromium binary."
        )
    return path


def launch(playwright, user_data_dir: str | os.PathLike):
    """A persistent browser context on a fresh ``user_data_dir`` (one tab per test opens from it)."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=str(chromium_path()),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=VIEWPORT,
        accept_downloads=False,
    )
