"""The course site (`make site`) read offline in headless Chromium: every page, figure and internal
link, nothing fetched from the network, equations rendered, one checked screenshot per page."""

from __future__ import annotations

import json
import re

import pytest
from browser_env import lesson_notebooks
from sitecrawl import TEX, crawl

NOTEBOOKS = lesson_notebooks()


@pytest.fixture(scope="session")
def pages(site, browser, out_dir):
    return crawl(browser, site, out_dir / "site-shots")


def _png_outputs(notebook: dict) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    )


#: code in Markdown (fenced blocks, inline spans), where a $ is not math
MARKDOWN_CODE = re.compile(r"```.*?```|`[^`]*`", re.S)


def _has_math(notebook: dict) -> bool:
    text = "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in notebook["cells"]
        if c["cell_type"] == "markdown"
    )
    return bool(TEX.search(MARKDOWN_CODE.sub("", text)))


def test_every_page_reads_offline_without_problems(pages):
    assert pages, "the crawl found no page"
    problems = {path: report.problems() for path, report in pages.items() if report.problems()}
    assert not problems, "pages with problems:\n" + json.dumps(problems, indent=1)


def test_every_built_page_is_reachable_from_the_home_page(pages, site):
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")} - {"404.html"}
    missing = sorted(built - set(pages))
    assert not missing, f"pages no link reaches: {missing}"


def test_the_course_path_lists_every_lesson_in_notebook_order(pages, site, browser):
    page = browser.new_page()
    try:
        page.goto((site / "index.html").as_uri())
        nav = page.eval_on_selector_all(
            "nav.md-nav--primary a[href*='lessons/']", "links => links.map(a => a.getAttribute('href'))"
        )
    finally:
        page.close()
    order = list(dict.fromkeys(href.split("/")[-1].removesuffix(".html") for href in nav))
    assert order == [nb.stem for nb in NOTEBOOKS]


@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_lesson_page_shows_every_figure_and_equation(name, pages, site_notebooks):
    notebook = json.loads((site_notebooks / name).read_text(encoding="utf-8"))
    report = pages.get(f"lessons/{name.removesuffix('.ipynb')}.html")
    assert report is not None, f"no page for {name}"
    assert report.text_chars > 500, f"{report.path} shows almost no text"
    assert report.images >= _png_outputs(notebook), (
        f"{report.path}: {report.images} images for {_png_outputs(notebook)} figures in the notebook"
    )
    assert not report.broken_images
    if _has_math(notebook):
        assert report.math > 0, f"{report.path}: the notebook has equations but none was rendered"
    assert report.screenshot.is_file() and not report.blank


@pytest.mark.parametrize("page", ["index.html", "architecture.html", "results/benchmark_cpu/index.html"])
def test_fixed_pages(page, pages):
    assert page in pages, f"{page} is not reachable from the home page"
    assert pages[page].text_chars > 500 and not pages[page].blank
