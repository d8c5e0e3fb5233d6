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
- each lesson's table of contents points at the ids its headings really have (mkdocs-jupyter
  derives the two differently, and a heading with inline code got a dead link);
- MathJax 3 is copied into the site from a Python package (``django-static-mathjax``, which holds
  MathJax's own files and needs no Django), with the site's settings (``docs/_site/mathjax.js``),
  so equations render with no network when the site is built and when it is read.
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
#: what the site needs of MathJax's ``es5`` build: the TeX + MathML -> CommonHTML bundle and what it
#: loads on demand (TeX extensions, fonts, the menu, the accessibility tools)
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "adaptors", "sre")

#: an HTML heading with its id: (level, id)
HEADING = re.compile(r"<h([1-6])\b[^>]*?\bid=\"([^\"]+)\"")
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
        raise PluginError(
            f"The course site is built from executed notebooks, and {err} Run `make run` "
            f"first (it writes results/notebooks), or point ${NOTEBOOKS_ENV} at a folder "
            "of executed NN_name.ipynb notebooks."
        ) from err


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


def run_record(notebooks: Path, stem: str) -> dict:
    """What ``make run`` recorded about a notebook (``runs/NN_name/run.json`` beside the notebooks
    folder: status, seconds, profile), or ``{}``."""
    path = notebooks.parent / "runs" / stem / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def lessons_table(lessons: list[dict]) -> str:
    """The home page's table of lessons (Markdown), in course order, with what the run measured."""
    profiles = {lesson["profile"] for lesson in lessons if lesson["profile"]}
    intro = (
        f"Executed by `emclip run` (what `make run` calls) in the `{profiles.pop()}` profile; the time is "
        "what each notebook took in that run.\n\n"
        if len(profiles) == 1
        else ""
    )
    rows = ["| lesson | figures | run time |", "|---|---|---|"]
    for lesson in lessons:
        seconds = f"{lesson['seconds']:.0f} s" if lesson["seconds"] is not None else "-"
        rows.append(f"| [{lesson['title']}]({lesson['uri']}) | {lesson['figures']} | {seconds} |")
    return intro + "\n".join(rows)


def _describe(notebook: dict, path: Path, uri: str) -> dict:
    code = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    figures = sum("image/png" in out.get("data", {}) for c in code for out in c.get("outputs", []))
    record = run_record(path.parent, path.stem)
    return {
        "title": notebook_title(notebook, path.stem),
        "uri": uri,
        "figures": figures,
        "seconds": record.get("seconds"),
        "profile": record.get("profile"),
    }


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
    benchmark = [{"Benchmark results": f"{BENCHMARK}/README.md"}] if (root / BENCHMARK).is_dir() else []
    config.nav = [
        {"Home": "index.md"},
        {"Course": [lesson["uri"] for lesson in lessons]},
        *benchmark,
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
            files.append(
                File(
                    path.relative_to(_state["root"]).as_posix(),
                    str(_state["root"]),
                    site_dir,
                    config.use_directory_urls,
                )
            )
    return files


def on_page_markdown(markdown, page, config, files):
    """Fill the home page's lesson table."""
    if LESSONS_MARKER in markdown:
        return markdown.replace(LESSONS_MARKER, lessons_table(_state["lessons"]))
    return markdown


def _toc_items(toc):
    for item in toc:
        yield item
        yield from _toc_items(item.children)


def on_page_content(html, page, config, files):
    """Point a lesson's table-of-contents entries at the ids of its headings, in document order
    (the two lists describe the same headings; nothing changes when their lengths differ)."""
    if page.file.src_uri.startswith(f"{LESSONS}/"):
        headings = [(int(level), anchor) for level, anchor in HEADING.findall(html)]
        items = list(_toc_items(page.toc))
        if [item.level for item in items] == [level for level, _ in headings]:
            for item, (_, anchor) in zip(items, headings):
                item.id = anchor
    return html


def mathjax_source() -> Path:
    """MathJax 3's ``es5`` folder as installed by the ``django-static-mathjax`` package."""
    from importlib.util import find_spec

    spec = find_spec("mathjax")
    folder = Path(spec.origin).parent / "static" / "mathjax" if spec and spec.origin else None
    if folder is None or not (folder / "es5" / MATHJAX_PARTS[0]).is_file():
        raise PluginError(
            "The course site serves MathJax itself and takes it from the django-static-mathjax "
            "package (MathJax 3's files; Django is not needed), which is not installed. Run "
            "`make site` (it installs docs/requirements.txt) or "
            "`pip install -r docs/requirements.txt`."
        )
    version = json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"]
    if not version.startswith("3."):
        raise PluginError(
            f"The course site needs MathJax 3; django-static-mathjax holds MathJax {version}. "
            "Install the version pinned in docs/requirements.txt."
        )
    return folder / "es5"


def on_post_build(config):
    """Copy MathJax into the site, with the site's settings as the script the lessons load."""
    source = mathjax_source()
    target = Path(config.site_dir) / MATHJAX_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part)
        else:
            shutil.copy2(source / part, target / part)
    shutil.copy2(Path(__file__).with_name("mathjax.js"), target / "emclip-mathjax.js")
