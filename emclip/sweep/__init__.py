"""Parameter sweeps over a notebook with papermill: a grid of runs, in parallel, resumable.

A sweep executes one notebook once per point of a parameter grid. papermill injects each point's
values after the notebook's ``parameters`` cell, so every kit notebook can be swept over any of
its knobs (K, T, lambda, held-out domain, model, seed, ...)::

    from emclip.sweep import parse_grid, run_sweep
    result = run_sweep("notebooks/04_em_aggregation.ipynb",
                       parse_grid(["em_bases=4,8", "em_iters=1,3"]), output="results/sweeps/em",
                       profile="ci", jobs=2)
    result.table          # pandas DataFrame: one row per run, params + recorded metrics

On disk, each run has its own folder named from its parameters (``em_bases=4__em_iters=1``)::

    <output>/<run>/<notebook>.ipynb   the executed notebook (outputs included)
    <output>/<run>/metrics.json       what the notebook passed to ``emclip.runlog.record``
    <output>/<run>/run.json           status (ok / failed / interrupted), params, error, timing: the done marker
    <output>/<run>/worker.log         what the worker process and its kernel printed
    <output>/<run>/results/           the run's own ``results_dir()`` (checkpoints, tables, ...)
    <output>/sweep.csv                the gathered table

A run whose ``run.json`` says ``ok`` for the same parameters is not executed again (resume after
an interruption, or widen the grid and only the new points run); failed and interrupted runs are
retried. Grid names must be set in the notebook's ``parameters`` cell (checked before running).
Ctrl-C, or the end of the main process, stops the running points (``status: interrupted``) and
starts no new one; no worker process outlives the sweep.
Each run writes its files under its own ``results/`` folder (``$EMCLIP_RESULTS_DIR``) so that
parallel runs never overwrite each other's checkpoints, and runs at once share the CPU cores out
(``$OMP_NUM_THREADS`` of each kernel, :func:`threads_per_run`) (design choices, not from the paper).
"""

from emclip.sweep.demo import demo_notebook, find_notebook, make_notebook
from emclip.sweep.execute import (
    INLINE_BACKEND,
    METRICS_FILE,
    SweepResult,
    execute_run,
    patched_environ,
    run_sweep,
    threads_per_run,
)
from emclip.sweep.grid import (
    check_grid_names,
    grid_points,
    notebook_parameters,
    parse_grid,
    parse_value,
    run_name,
)
from emclip.sweep.table import STATUS_FILE, TABLE_FILE, best_params, gather, read_status
from emclip.sweep.workers import StopRun

__all__ = [
    "INLINE_BACKEND", "METRICS_FILE", "STATUS_FILE", "TABLE_FILE", "StopRun", "SweepResult", "best_params",
    "check_grid_names", "demo_notebook", "execute_run", "find_notebook", "gather", "grid_points",
    "make_notebook", "notebook_parameters", "parse_grid", "parse_value", "patched_environ", "read_status",
    "run_name", "run_sweep", "threads_per_run",
]
