"""emclip.runner (``make run`` / ``emclip run``): executed notebooks, HTML, figures, summary.md."""

from __future__ import annotations

import json
import os

import pytest

from emclip.cli import main
from emclip.runner import discover
from emclip.sweep import make_notebook

OK_CODE = """import matplotlib.pyplot as plt

import emclip
import emclip.runlog

plt.plot([0, 1], [1, 0])
plt.show()
tables = emclip.runlog.results_dir("tables")
(tables / "comparison.md").write_text("| method | dice |\\n|---|---|\\n| emclip | 0.812 |\\n")
(tables / "per_domain.csv").write_text("domain,dice\\ndomain1,0.7\\ndomain2,0.6\\n")
emclip.runlog.record(answer=42, per_domain={"domain1": 0.5}, profile=emclip.get_profile(profile).name)"""


@pytest.fixture()
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    make_notebook(folder / "01_fails.ipynb", "profile = None", ['raise RuntimeError("boom")'])
    make_notebook(folder / "02_works.ipynb", "profile = None", [OK_CODE])
    make_notebook(folder / "helper.ipynb", "x = 1", ["y = x"])  # not numbered: not part of the run
    return folder


def test_discover_orders_and_filters(notebooks):
    assert [p.name for p in discover(notebooks)] == ["01_fails.ipynb", "02_works.ipynb"]
    assert [p.stem for p in discover(notebooks, ["02"])] == ["02_works"]
    assert [p.stem for p in discover(notebooks, ["fails,works"])] == ["01_fails", "02_works"]
    with pytest.raises(ValueError, match="Available: 01_fails, 02_works"):
        discover(notebooks, ["07"])
    with pytest.raises(FileNotFoundError, match="not found"):
        discover(notebooks / "missing")


def test_run_executes_every_notebook_and_writes_the_summary(notebooks, tmp_path, capfd):
    out = tmp_path / "results"
    old = out / "benchmark_cpu" / "table.md"  # written before the run: not part of its summary
    old.parent.mkdir(parents=True)
    old.write_text("| method | dice |\n|---|---|\n| stale | 0.123 |\n")
    os.utime(old, (0, 0))
    code = main(["run", "--notebooks", str(notebooks), "--output", str(out), "--profile", "ci"])
    captured = capfd.readouterr()  # file-descriptor level: what the kernels print too
    printed = captured.out
    assert "without encryption" not in captured.err and "Kernel" not in captured.err  # the kernels' noise ...
    for stem in ("01_fails", "02_works"):
        assert (out / "runs" / stem / "kernel.log").is_file()  # ... is kept in each notebook's log
    assert code == 1  # 01 failed; 02 still ran
    assert "FAILED" in printed and "RuntimeError: boom" in printed and str(out / "notebooks" / "01_fails.ipynb") in printed
    assert f"Summary: {out / 'summary.md'}" in printed

    for stem in ("01_fails", "02_works"):
        assert (out / "notebooks" / f"{stem}.ipynb").exists() and (out / "notebooks" / f"{stem}.html").exists()
    assert "boom" in (out / "notebooks" / "01_fails.html").read_text()
    assert "data:image/png;base64" in (out / "notebooks" / "02_works.html").read_text()
    executed = json.loads((out / "notebooks" / "02_works.ipynb").read_text())
    assert any("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))
    figures = sorted((out / "figures" / "02_works").glob("*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((out / "figures" / "01_fails").glob("*.png"))
    metrics = json.loads((out / "runs" / "02_works" / "metrics.json").read_text())
    assert metrics == {"answer": 42, "per_domain": {"domain1": 0.5}, "profile": "ci"}

    summary = (out / "summary.md").read_text()
    assert "profile `ci`" in summary
    assert "| 01_fails | failed |" in summary and "| 02_works | ok |" in summary
    assert "RuntimeError: boom" in summary
    assert "| answer | 42 |" in summary and "| per_domain.domain1 | 0.500 |" in summary
    assert "| emclip | 0.812 |" in summary  # a Markdown table the notebook saved under results/
    assert "| domain2 | 0.600 |" in summary  # a small CSV table, rendered
    assert "helper" not in summary
    assert "stale" not in summary and "benchmark_cpu" not in summary
