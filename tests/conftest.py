"""Shared pytest set-up: offline by default, marker-based skips, small fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the unit tests on one pytest-xdist worker per core: one thread per worker (and per
    # process a test starts) keeps the cores from being oversubscribed, which would make every worker slower
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_slow = pytest.mark.skip(reason="slow: set EMCLIP_RUN_SLOW=1 to run")
    skip_download = pytest.mark.skip(reason="needs network/weights: set EMCLIP_RUN_DOWNLOAD=1 to run")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker("slow") and not _flag("EMCLIP_RUN_SLOW"):
            item.add_marker(skip_slow)
        if item.get_closest_marker("download") and not _flag("EMCLIP_RUN_DOWNLOAD"):
            item.add_marker(skip_download)
