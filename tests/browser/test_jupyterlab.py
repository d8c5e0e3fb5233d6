"""Every notebook as a student runs it: JupyterLab (started by `make lab`), Run All Cells, the
explorers moved by hand. Notebooks run in course order, so a later lesson finds what an earlier
one saved (the training lesson's checkpoint before the evaluation lesson)."""

from __future__ import annotations

import pytest
from browser_env import lesson_notebooks, step_timeout
from labdriver import move_explorer, run_notebook

NOTEBOOKS = lesson_notebooks()


def test_the_kit_has_notebooks():
    assert len(NOTEBOOKS) >= 2, "no numbered notebooks found in notebooks/"


@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab_and_its_explorers_respond(name, lab, lab_root, lab_page, out_dir):
    shots = out_dir / "lab"
    shots.mkdir(exist_ok=True)
    stem = name.removesuffix(".ipynb")
    try:
        run = run_notebook(lab_page, lab, lab_root / "notebooks" / name, timeout=step_timeout())
    finally:
        lab_page.screenshot(path=str(shots / f"{stem}.png"))
    print(f"{name}: Run All took {run.seconds:.0f} s; {run.explorers_rendered} explorer(s)")
    assert not run.errors, f"{name} raised in JupyterLab: {run.errors}"
    assert not run.not_run, f"{name}: code cells {run.not_run} never ran"
    assert not run.widget_failures, f"{name} shows {run.widget_failures} instead of its widgets"
    assert run.explorers_rendered == run.explorers_expected, (
        f"{name} builds {run.explorers_expected} explorer(s) but {run.explorers_rendered} rendered with controls"
    )

    explorers = lab_page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-interact")
    for index in range(run.explorers_rendered):
        explorer = explorers.nth(index)
        move = move_explorer(lab_page, explorer, timeout=step_timeout() / 3)
        explorer.screenshot(path=str(shots / f"{stem}__explorer{index}.png"))
        print(f"  explorer {index}: {move.control}: figure changed {move.changed} in {move.seconds:.1f} s")
        assert move.before > 0, f"{name} explorer {index} shows no figure before the move"
        assert "Traceback" not in move.output_text, (
            f"{name} explorer {index} failed: {move.output_text[-800:]}"
        )
        assert move.changed, f"{name} explorer {index}: the figure did not change after {move.control}"
