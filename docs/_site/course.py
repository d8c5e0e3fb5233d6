"""MkDocs hook that turns the executed notebooks of ``make run`` into the course site.

MkDocs loads this file (``hooks:`` in ``mkdocs.yml``) and calls the ``on_*`` functions below:

- the lessons are the numbered notebooks (``NN_name.ipynb``) of ``$EMCLIP_SITE_NOTEBOOKS``
  (default ``results/notebooks``, where ``make run`` writes them), found with
  :func:`emclip.runner.discover`, so a renumbered or new notebook needs no change here; each is
  copied to ``lessons/`` without what would be fetched from the network when the page is read
  (saved widget state, for which nbconvert loads the widget manager from a CDN; Markdown images
  from the web, such as the Colab badge, which become plain links), and ``mkdocs-jupyter``
  renders it with every output;
- the navigation is the course path: home, the lessons in notebook order, the committed
  benchmark results (``results/benchmark_cpu``) and ``docs/architecture.md``;
- the home page's ``<!-- lessons -->`` marker becomes a table of the lessons;
- MathJax is copied into the site from the ``jupyter-server-mathjax`` package, so equations
  render with no network when the site is built and when it is read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

NOTEBOOKS_ENV = "EMCLIP_SITE_NOTEBOOKS"
LESSONS = "lessons"
BENCHMARK = "results/benchmark_cpu"
LESSONS_MARKER = "<!-- lessons -->"
MATHJAX_DIR = "assets/mathjax"
#: MathJax 2 settings of the site (``config=...,local/emclip`` in mkdocs.yml): the package ships the
#: STIX-Web fonts only, so HTML-CSS must use them and never ask for image fonts.
MATHJAX_LOCAL_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  messageStyle: "none"
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/emclip.js");
"""

#: a Markdown image whose source is on the web: ``![alt](https://...)``
WEB_IMAGE = re.compile(r"!\[([^\]]*)\]\((?:https?:)?//[^)\s]+(?:\s+\"[^\"]*\")?\)")

_state: dict = {}


def _repo_root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def notebooks_dir(config) -> Path:
    """Where the executed notebooks are read from (``$EMCLIP_SITE_NOTEBOOKS``, default
    ``results/notebooks``; a relative path is taken from the folder of mkdocs.yml)."""
    folder = Path(os.environ.get(NOTEBOOKS_ENV, "results/notebooks"))
    return folder if folder.is_absolute() else _repo_root(config) / folder


def lesson_notebooks(folder: Path) -> list[Path]:
    """The numbered notebooks of ``folder`` in course order; a clear error when there are none."""
    from emclip.runner import discover

    try:
        return discover(folder)
    except FileNotFoundError as err:
        raise PluginError(f"The course site is built from executed notebooks, and {err} Run `make run` "
                          f"first (it writes results/notebooks), or point ${NOTEBOOKS_ENV} at a folder "
                          "of executed NN_name.ipynb notebooks.") from err


def notebook_title(notebook: dict, fallback: str) -> str:
    """The first level-1 Markdown heading of a notebook (what mkdocs-jupyter uses as page title)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        for line in (source if isinstance(source, str) else "".join(source)).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return fallback


def offline_markdown(source: str) -> str:
    """Markdown with every image from the web replaced by its alt text (``[![Open In Colab](badge)](url)``
    becomes the link ``[Open In Colab](url)``), so that reading the page fetches nothing."""
    return WEB_IMAGE.sub(lambda match: match.group(1) or "image", source)


def stage_notebook(source: Path, target: Path) -> dict:
    """Copy an executed notebook to ``target`` for the site (no widget state, no web images in its
    Markdown, see :func:`offline_markdown`); returns the staged notebook."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = cell.get("source", "")
            cell["source"] = offline_markdown(text if isinstance(text, str) else "".join(text))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(notebook, ensure_ascii=False, indent=1), encoding="utf-8")
    return notebook


def lessons_table(lessons: list[dict]) -> str:
    """The home page's table of lessons (Markdown), in course order."""
    rows = ["| # | lesson | code cells | figures |", "|---|---|---|---|"]
    for lesson in lessons:
        rows.append(f"| {lesson['number']} | [{lesson['title']}]({lesson['uri']}) | {lesson['code_cells']} "
                    f"| {lesson['figures']} |")
    return "\n".join(rows)


def _describe(notebook: dict, path: Path, uri: str) -> dict:
    code = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    figures = sum("image/png" in out.get("data", {}) for c in code for out in c.get("outputs", []))
    return {"number": path.stem[:2], "title": notebook_title(notebook, path.stem), "uri": uri,
            "code_cells": len(code), "figures": figures}


def on_config(config):
    """Stage the lessons and set the navigation (the course path)."""
    root = _repo_root(config)
    staging = root / "build" / "site-lessons"
    shutil.rmtree(staging, ignore_errors=True)
    lessons = []
    for path in lesson_notebooks(notebooks_dir(config)):
        uri = f"{LESSONS}/{path.name}"
        lessons.append(_describe(stage_notebook(path, staging / uri), path, uri))
    _state.update(root=root, staging=staging, lessons=lessons)
    benchmark = [{"Cross-domain benchmark (CPU)": f"{BENCHMARK}/README.md"}] if (root / BENCHMARK).is_dir() else []
    config.nav = [
        {"Home": "index.md"},
        {"Course": [lesson["uri"] for lesson in lessons]},
        *([{"Results": benchmark}] if benchmark else []),
        {"Architecture": "architecture.md"},
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, so that it renders the lessons
def on_files(files, config):
    """Add the staged lessons and the committed benchmark folder to the site's files."""
    site_dir = config.site_dir
    for lesson in _state["lessons"]:
        files.append(File(lesson["uri"], str(_state["staging"]), site_dir, config.use_directory_urls))
    benchmark = _state["root"] / BENCHMARK
    if benchmark.is_dir():
        for path in sorted(p for p in benchmark.rglob("*") if p.is_file()):
            files.append(File(path.relative_to(_state["root"]).as_posix(), str(_state["root"]), site_dir,
                              config.use_directory_urls))
    return files


def on_page_markdown(markdown, page, config, files):
    """Fill the home page's lesson table."""
    if LESSONS_MARKER in markdown:
        return markdown.replace(LESSONS_MARKER, lessons_table(_state["lessons"]))
    return markdown


def on_post_build(config):
    """Copy MathJax (jupyter-server-mathjax) into the site, with the site's own settings."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise PluginError("The course site serves MathJax itself and takes it from the "
                          "jupyter-server-mathjax package, which is not installed. Run `make site` (it "
                          "installs docs/requirements.txt) or `pip install -r docs/requirements.txt`.") from err
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(config.site_dir) / MATHJAX_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    local = target / "config" / "local" / "emclip.js"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(MATHJAX_LOCAL_CONFIG, encoding="utf-8")
