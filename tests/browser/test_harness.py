"""The suite's own detectors, on inputs whose answer is known: they must see an error, a cell that
never ran, an explorer whose figure does not change, a broken link, a missing image, a network
request and a blank page. (Without these, a green browser suite could mean a blind one.)"""

from __future__ import annotations

import json

import pytest
from labdriver import move_explorer, run_notebook
from sitecrawl import crawl


def _notebook(*cells: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
            for source in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


HARNESS = _notebook(
    "import ipywidgets as widgets\nimport matplotlib.pyplot as plt",
    "def slope(k):\n    plt.plot([0, 1], [0, k])\n    plt.show()\n\n\n"
    "widgets.interact(slope, k=widgets.IntSlider(value=1, min=0, max=3));",
    "def constant(name):\n    plt.plot([0, 1], [0, 1])\n    plt.show()\n\n\n"
    "widgets.interact(constant, name=widgets.Dropdown(options=['a', 'b']));",
    "raise ValueError('the harness fails here on purpose')",
    "print('never reached')",
)


def test_lab_driver_sees_errors_unrun_cells_and_unchanged_figures(lab, lab_root, lab_page):
    path = lab_root / "harness" / "harness.ipynb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(HARNESS))
    run = run_notebook(lab_page, lab, path, timeout=300)
    assert run.errors == ["code cell 3: ValueError: the harness fails here on purpose"]
    assert run.not_run == [4]
    assert run.explorers_expected == run.explorers_rendered == 2
    explorers = lab_page.locator(".widget-interact")
    moved = move_explorer(lab_page, explorers.nth(0), timeout=60)
    assert moved.control == "slider k: 1 -> 2" and moved.changed
    unchanged = move_explorer(lab_page, explorers.nth(1), timeout=60)
    assert unchanged.control == "dropdown name: a -> b" and not unchanged.changed and unchanged.before == 1


@pytest.fixture()
def faulty_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<html><body><h1 id='top'>Home</h1><p>" + "text " * 200 + " and $x^2$ never typeset</p>"
        "<a href='good.html#here'>good</a> <a href='missing.html'>missing</a> "
        "<a href='good.html#nowhere'>bad anchor</a> <a href='../outside.html'>outside</a> "
        "<a href='https://example.org/'>external links are not followed</a>"
        "<img src='missing.png'> <img src='http://127.0.0.1:9/fetched.png'></body></html>"
    )
    (site / "good.html").write_text(
        "<html><body style='background:#fff'><span id='here'></span></body></html>"
    )
    return site


def test_site_crawler_sees_broken_links_missing_images_requests_and_blank_pages(
    faulty_site, browser, tmp_path
):
    pages = crawl(browser, faulty_site, tmp_path / "shots")
    assert set(pages) == {"index.html", "good.html"}
    index = pages["index.html"]
    assert sorted(link.rsplit(": ", 1)[1] for link in index.broken_links) == [
        "leaves the site folder",
        "no anchor #nowhere",
        "no such file",
    ]
    assert len(index.broken_images) == 2
    assert index.network == ["http://127.0.0.1:9/fetched.png"]
    assert [url.rsplit("/", 1)[1] for url in index.failed] == ["missing.png"]
    assert index.raw_tex == ["$x^2$"]
    assert not index.blank and pages["good.html"].blank
    assert index.screenshot.is_file()
