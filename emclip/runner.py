"""The main job (``make run`` / ``emclip run``): execute every notebook in order, collect results.

Each ``notebooks/NN_*.ipynb`` runs with papermill on the embedded default (its own parameter
values; the profile from ``--profile``, else ``$EMCLIP_PROFILE``, else ``auto``), with
``$EMCLIP_RESULTS_DIR`` pointing at the output folder so that what the notebooks save (checkpoints
from 04, tables from 05) lands there and later notebooks find it. The output folder gets::

    notebooks/NN_name.ipynb    the executed notebook      notebooks/NN_name.html   an HTML copy
    figures/NN_name/*.png      every PNG the notebook drew
    runs/NN_name/metrics.json  what it passed to emclip.runlog.record (run.json: status, timing)
    runs/NN_name/kernel.log    what the notebook's kernel and papermill wrote to stderr
    summary.md                 status and timing per notebook, the recorded metrics, and the
                               tables the notebooks wrote (``*.md``, small ``*.csv``)

A failing notebook is reported with its path and error; the others still run; the exit code is 1.
The job's own output is one line per notebook: the kernels' stderr (for example ipykernel's
"Kernel is running over TCP without encryption" warning, once per notebook) goes to each
notebook's ``kernel.log`` instead of the terminal.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emclip.fileio import atomic_write_text
from emclip.sweep import execute_run

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
#: folders of the output that hold run artefacts, not tables for the summary
_NOT_TABLES = {"notebooks", "runs", "sweeps", "figures", "checkpoints", "html"}
_MAX_CSV_ROWS = 40


@contextlib.contextmanager
def stderr_to(path: str | os.PathLike):
    """Send this process's stderr (file descriptor 2, which the kernels it starts inherit) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            yield path
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def discover(notebooks_dir: str | os.PathLike = "notebooks", only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks of ``notebooks_dir`` in order; ``only`` keeps those whose name starts
    with or contains one of the given strings (``["03"]``, ``["03", "05"]``, ``["em_agg"]``)."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Notebook folder not found: {folder}. Run from the kit's root or pass "
                                "--notebooks PATH.")
    found = sorted(folder.glob(NOTEBOOK_GLOB))
    if only:
        keys = [k.strip() for item in only for k in str(item).split(",") if k.strip()]
        chosen = [nb for nb in found if any(nb.stem.startswith(k) or k in nb.stem for k in keys)]
        if not chosen:
            names = ", ".join(nb.stem for nb in found) or "none"
            raise ValueError(f"--only {' '.join(keys)} matches no notebook. Available: {names}.")
        found = chosen
    if not found:
        raise FileNotFoundError(f"No notebooks named {NOTEBOOK_GLOB} in {folder}.")
    return found


def export_html(executed: str | os.PathLike, target: str | os.PathLike) -> Path:
    """An HTML copy of an executed notebook (nbconvert's HTMLExporter, images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    return atomic_write_text(target, body)


def extract_figures(executed: str | os.PathLike, folder: str | os.PathLike) -> list[Path]:
    """Write every ``image/png`` output of an executed notebook to ``folder`` as
    ``cell<NNN>_<k>.png`` (NNN: the cell's position); old PNGs there are removed first."""
    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    written = []
    nb = nbformat.read(str(executed), as_version=4)
    for index, cell in enumerate(nb.cells):
        pngs = [out["data"]["image/png"] for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
        for k, data in enumerate(pngs):
            path = folder / f"cell{index:03d}_{k}.png"
            path.write_bytes(base64.b64decode(data))
            written.append(path)
    return written


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table from a header and rows (:func:`emclip.reports.to_markdown`)."""
    import pandas as pd

    from emclip.reports import to_markdown

    return to_markdown(pd.DataFrame(rows, columns=header), index=False)


@dataclass
class NotebookRun:
    """One executed notebook: its status record (see :func:`emclip.sweep.execute_run`) and files."""

    name: str
    status: dict
    html: Path | None = None
    figures: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status.get("status") == "ok"


def _table_files(output: Path, since: float | None = None) -> list[Path]:
    """The .md/.csv tables under ``output`` (written at or after ``since``, a POSIX time)."""
    files = []
    for path in sorted(output.rglob("*")):
        rel = path.relative_to(output)
        if (path.suffix in {".md", ".csv"} and path.is_file() and rel.parts[0] not in _NOT_TABLES
                and rel != Path("summary.md") and (since is None or path.stat().st_mtime >= since)):
            if path.suffix == ".csv" and path.with_suffix(".md").exists():
                continue  # the Markdown version of the same table is shown instead
            files.append(path)
    return files


def _csv_section(path: Path) -> str:
    import pandas as pd

    table = pd.read_csv(path)
    if len(table) > _MAX_CSV_ROWS:
        return f"{len(table)} rows x {len(table.columns)} columns (too long to show; open the file)."
    return markdown_table(list(table.columns), table.values.tolist())


def write_summary(output: str | os.PathLike, runs: list[NotebookRun], profile: str, seconds: float,
                  since: float | None = None) -> Path:
    """``<output>/summary.md``: a status/timing table, each notebook's recorded metrics and the
    tables the notebooks saved under ``output`` (only those written since ``since``, when given, so
    that older files under ``output`` — a committed benchmark, a previous run — are not mixed in)."""
    from emclip import __version__
    from emclip.runtime import get_device

    output = Path(output)
    rel = lambda p: os.path.relpath(p, output) if p else "-"  # noqa: E731
    lines = [
        "# emclip run: summary", "",
        f"emclip {__version__} · profile `{profile}` · device `{get_device('auto')}` · "
        f"{time.strftime('%Y-%m-%d %H:%M')} · total {seconds:.0f} s", "",
        "## Notebooks", "",
        markdown_table(["notebook", "status", "time (s)", "executed", "html", "figures"],
                       [[r.name, r.status.get("status"), f"{r.status.get('seconds', 0.0):.1f}",
                         rel(r.status.get("output")), rel(r.html), len(r.figures)] for r in runs]),
        "",
    ]
    failed = [r for r in runs if not r.ok]
    if failed:
        lines += ["## Failures", ""]
        lines += [f"- `{r.name}`: {r.status.get('error')} (see `{rel(r.status.get('output'))}`)" for r in failed]
        lines.append("")
    lines += ["## Recorded metrics", ""]
    for r in runs:
        metrics = _flatten(r.status.get("metrics") or {})
        lines += [f"### {r.name}", "",
                  markdown_table(["metric", "value"], list(metrics.items())) if metrics else "(nothing recorded)", ""]
    tables = _table_files(output, since)
    if tables:
        lines += ["## Tables written by the notebooks", ""]
        for path in tables:
            body = _demote(path.read_text().strip()) if path.suffix == ".md" else _csv_section(path)
            lines += [f"### `{rel(path)}`", "", body, ""]
    return atomic_write_text(output / "summary.md", "\n".join(lines) + "\n")


def _demote(markdown: str) -> str:
    """Headings of an included Markdown file three levels down (``# T`` -> ``#### T``)."""
    return re.sub(r"^(#+) ", r"###\1 ", markdown, flags=re.M)


def _flatten(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_notebooks(notebooks_dir: str | os.PathLike = "notebooks", output: str | os.PathLike = "results",
                  only: list[str] | None = None, profile: str | None = None, timeout: float | None = None,
                  verbose: bool = True) -> list[NotebookRun]:
    """Execute the notebooks in order into ``output`` and write ``summary.md`` (see module doc)."""
    from emclip.runtime import get_profile

    notebooks = discover(notebooks_dir, only)
    profile = get_profile(profile).name  # resolves auto / $EMCLIP_PROFILE; unknown names list the valid ones
    output = Path(output).resolve()
    say = print if verbose else (lambda *a, **k: None)
    say(f"emclip run: {len(notebooks)} notebook(s), profile {profile}, output {output}")
    start, runs = time.time(), []
    for index, notebook in enumerate(notebooks, 1):
        say(f"[{index}/{len(notebooks)}] {notebook.name} ...", flush=True)
        executed = output / "notebooks" / notebook.name
        log = output / "runs" / notebook.stem / "kernel.log"
        log.unlink(missing_ok=True)
        with stderr_to(log):
            status = execute_run(notebook, output / "runs" / notebook.stem, profile=profile,
                                 output_notebook=executed, results=output, timeout=timeout)
        run = NotebookRun(notebook.stem, status)
        if executed.exists():  # papermill writes it even when a cell fails: the traceback is in it
            run.html = export_html(executed, executed.with_suffix(".html"))
            run.figures = extract_figures(executed, output / "figures" / notebook.stem)
        runs.append(run)
        if run.ok:
            say(f"    ok in {status['seconds']:.0f} s, {len(run.figures)} figure(s)")
        else:
            say(f"    FAILED after {status['seconds']:.0f} s: {status['error']}\n    see {executed} (kernel messages: {log})")
    summary = write_summary(output, runs, profile, time.time() - start, since=start)
    say(f"\nExecuted notebooks and HTML: {output / 'notebooks'}\nFigures: {output / 'figures'}\n"
        f"Metrics records: {output / 'runs'}\nSummary: {summary}\n"
        f"{sum(r.ok for r in runs)}/{len(runs)} notebooks ok in {time.time() - start:.0f} s")
    return runs
