"""Read a built static site in headless Chromium from the file system, the way it is read offline.

:func:`crawl` starts at ``index.html``, follows every internal link, and for each page records
what a reader would hit: images that did not load (or have no size), internal links to a missing
page or anchor, links that leave the site folder, anything fetched from the network, script
errors, MathJax errors, and a screenshot of the window (checked by :func:`blank`).
"""

from __future__ import annotations

import io
import re
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
MATH_SELECTOR = "mjx-container, .MathJax"
MATH_ERROR_SELECTOR = "mjx-merror, .MathJax_Error"
#: TeX as Jupyter finds it in Markdown: $$...$$, $...$, \(...\), \[...\], \begin{...}
TEX = re.compile(r"\$\$.+?\$\$|\$[^$\s][^$]*?\$|\\\(|\\\[|\\begin\{", re.S)
#: the page's prose as a reader sees it: no code, no typeset math, nothing hidden
PROSE = """() => {
  const root = (document.querySelector('article') || document.body).cloneNode(true);
  root.querySelectorAll('code, pre, mjx-container, script, style, .clipboard-copy-txt').forEach(e => e.remove());
  return root.textContent;
}"""
#: where a page's own content is (the first of these that exists); the blank check looks there
CONTENT_SELECTORS = ("article", ".md-content", "main", "body")


@dataclass
class PageReport:
    path: str  # relative to the site folder
    title: str = ""
    text_chars: int = 0
    images: int = 0
    broken_images: list[str] = field(default_factory=list)  # src of images not loaded or of size 0
    links: int = 0
    broken_links: list[str] = field(default_factory=list)  # "href: why"
    network: list[str] = field(default_factory=list)  # URLs requested outside the file system
    failed: list[str] = field(default_factory=list)  # requests that failed (a missing file, ...)
    script_errors: list[str] = field(default_factory=list)
    math: int = 0  # MathJax-rendered elements
    math_errors: int = 0
    raw_tex: list[str] = field(default_factory=list)  # TeX left as text (MathJax did not typeset it)
    screenshot: Path | None = None
    blank: bool = False

    def problems(self) -> list[str]:
        found = [f"image not loaded: {src[:80]}" for src in self.broken_images]
        found += [f"broken link: {link}" for link in self.broken_links]
        found += [f"network request: {url}" for url in self.network]
        found += [f"failed to load: {url}" for url in self.failed]
        found += [f"script error: {err}" for err in self.script_errors]
        if self.math_errors:
            found.append(f"{self.math_errors} MathJax error(s)")
        found += [f"TeX not typeset: {tex[:60]}" for tex in self.raw_tex]
        if self.blank:
            found.append(f"blank screenshot {self.screenshot}")
        return found


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


def page_ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        parser = _Ids()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = parser.ids
    return cache[path]


def blank(png: bytes, share: float = 0.985) -> bool:
    """True when one grey level covers more than ``share`` of the screenshot (nothing drawn)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return max(histogram) > share * sum(histogram)


def check_link(href: str, site: Path, ids_cache: dict) -> tuple[Path | None, str | None]:
    """(target page, None) for a good internal link, (None, why) for a broken one, (None, None) for a
    link that is not internal (http, mailto, ...)."""
    url, fragment = urldefrag(href)
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None, None
    target = Path(unquote(parsed.path))
    try:
        target.resolve().relative_to(site.resolve())
    except ValueError:
        return None, "leaves the site folder"
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return None, "no such file"
    if fragment and target.suffix == ".html" and unquote(fragment) not in page_ids(target, ids_cache):
        return None, f"no anchor #{fragment}"
    return target, None


def content_screenshot(page) -> bytes:
    """A screenshot of the part of the window that shows the page's own content (not the navigation)."""
    viewport = page.viewport_size
    for selector in CONTENT_SELECTORS:
        box = page.locator(selector).first.bounding_box() if page.locator(selector).count() else None
        if box and box["width"] > 0 and box["height"] > 0:
            top, left = max(box["y"], 0), max(box["x"], 0)
            clip = {
                "x": left,
                "y": top,
                "width": min(box["x"] + box["width"], viewport["width"]) - left,
                "height": min(box["y"] + box["height"], viewport["height"]) - top,
            }
            if clip["width"] > 0 and clip["height"] > 0:
                return page.screenshot(clip=clip)
    return page.screenshot()


#: resolves once MathJax 3 has typeset the page (at once on a page without MathJax, 20 s at most)
WAIT_FOR_MATH = """() => new Promise(done => {
  if (!document.querySelector('script[src*="mathjax" i]')) return done(false);
  let tries = 0;
  const wait = () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(() => done(true));
    else if (tries++ > 200) done(false);
    else setTimeout(wait, 100);
  };
  wait();
})"""


def _wait_for_math(page) -> None:
    page.evaluate(WAIT_FOR_MATH)


def crawl(context, site: Path, screenshots: Path, start: str = "index.html") -> dict[str, PageReport]:
    """Every page reachable from ``start`` by internal links, read in a new tab of ``context``."""
    site = site.resolve()
    screenshots.mkdir(parents=True, exist_ok=True)
    reports: dict[str, PageReport] = {}
    ids_cache: dict = {}
    queue = deque([site / start])
    seen = {site / start}
    page = context.new_page()
    network: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: network.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        while queue:
            path = queue.popleft()
            rel = path.relative_to(site).as_posix()
            network.clear()
            failed.clear()
            errors.clear()
            report = PageReport(rel)
            page.goto(path.as_uri(), wait_until="load")
            _wait_for_math(page)
            report.title = page.title()
            report.text_chars = len(page.inner_text("body"))
            images = page.eval_on_selector_all(
                "img",
                "imgs => imgs.map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0 "
                "&& i.naturalHeight > 0])",
            )
            report.images = len(images)
            report.broken_images = [src for src, ok in images if not ok]
            hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
            report.links = len(hrefs)
            for href in hrefs:
                target, why = check_link(href, site, ids_cache)
                if why:
                    report.broken_links.append(f"{href}: {why}")
                elif target is not None and target.suffix == ".html" and target not in seen:
                    seen.add(target)
                    queue.append(target)
            report.math = page.locator(MATH_SELECTOR).count()
            report.math_errors = page.locator(MATH_ERROR_SELECTOR).count() + (
                "Math Processing Error" in page.inner_text("body")
            )
            report.raw_tex = TEX.findall(page.evaluate(PROSE))
            report.screenshot = screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(report.screenshot))
            report.blank = blank(content_screenshot(page))
            report.network = list(dict.fromkeys(url for url in network if not url.startswith(LOCAL_SCHEMES)))
            report.failed = list(dict.fromkeys(url for url in failed if url not in report.network))
            report.script_errors = list(errors)
            reports[rel] = report
    finally:
        page.close()
    return reports
