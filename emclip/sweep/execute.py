"""Execute a notebook with papermill (one run), and a grid of runs in parallel processes.

Each run's kernel gets ``$EMCLIP_RECORD_FILE`` (where ``emclip.runlog.record`` writes),
``$EMCLIP_RESULTS_DIR`` and ``$EMCLIP_PROFILE`` through the environment it inherits from the
worker process, which sets them just before papermill starts the kernel. The worker processes
never outlive the sweep (:mod:`emclip.sweep.workers`): Ctrl-C or the end of the main process
stops the running points, which record ``status: interrupted``, and starts no new one.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emclip.errors import ConfigError
from emclip.fileio import atomic_write_json, check_output_path
from emclip.runlog import RECORD_ENV, RESULTS_ENV
from emclip.sweep.grid import check_grid_names, grid_points, run_name
from emclip.sweep.table import STATUS_FILE, gather, read_status
from emclip.sweep.workers import StopRun, run_in_processes

METRICS_FILE = "metrics.json"
WORKER_LOG = "worker.log"  # what a sweep worker and its kernel print (kernel warnings, tracebacks)
#: the kernel draws figures inline so that executed notebooks keep them (``MPLBACKEND=Agg``,
#: which the Makefile and CI export, would drop every figure).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def patched_environ(values: dict[str, str | None]):
    """Set (or with ``None`` remove) environment variables, and restore them afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:  # papermill's PapermillExecutionError: the exception raised inside the notebook
        cell = getattr(err, "exec_count", None)
        return f"{ename}: {evalue} (cell [{cell}])" if cell is not None else f"{ename}: {evalue}"
    return f"{type(err).__name__}: {err}"


def execute_run(notebook: str | os.PathLike, run_dir: str | os.PathLike, params: dict | None = None,
                profile: str | None = None, output_notebook: str | os.PathLike | None = None,
                results: str | os.PathLike | None = None, timeout: float | None = None,
                kernel_name: str = "python3", threads: int | None = None) -> dict:
    """Execute ``notebook`` once with papermill and write its ``run.json``; returns that record.

    The kernel runs in the notebook's folder with ``$EMCLIP_RECORD_FILE`` = ``run_dir/metrics.json``
    (so ``emclip.runlog.record`` lands there), ``$EMCLIP_PROFILE`` = ``profile`` when given, and
    ``$EMCLIP_RESULTS_DIR`` = ``results`` (default ``run_dir/results``), and with ``threads``
    ``$OMP_NUM_THREADS`` = ``$MKL_NUM_THREADS`` = ``threads`` (torch's CPU threads in the kernel). The executed notebook goes
    to ``output_notebook`` (default ``run_dir/<notebook name>``). Never raises for an error
    inside the notebook: the record says ``status: failed`` with the error and the executed
    notebook's path (its outputs show the traceback). When the sweep is stopped
    (:class:`emclip.sweep.workers.StopRun`, or a ``KeyboardInterrupt``) the record says
    ``status: interrupted`` and the exception is raised again once the record is written.
    """
    import papermill

    from emclip.viz.widgets import NO_WIDGETS_ENV

    notebook, run_dir = Path(notebook).resolve(), Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    out_nb = Path(output_notebook).resolve() if output_notebook else run_dir / notebook.name
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / METRICS_FILE
    metrics_path.unlink(missing_ok=True)  # never mix in a previous attempt's numbers
    (run_dir / STATUS_FILE).unlink(missing_ok=True)
    env = {RECORD_ENV: str(metrics_path), RESULTS_ENV: str(results or run_dir / "results"),
           "MPLBACKEND": INLINE_BACKEND, NO_WIDGETS_ENV: "1"}
    if profile is not None:
        env["EMCLIP_PROFILE"] = profile
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(int(threads))
    status = {"notebook": str(notebook), "output": str(out_nb), "params": dict(params or {}),
              "profile": profile or os.environ.get("EMCLIP_PROFILE", "auto"), "started": time.time()}
    stopped = None
    with patched_environ(env):
        try:
            papermill.execute_notebook(str(notebook), str(out_nb), parameters=dict(params or {}),
                                       kernel_name=kernel_name, cwd=str(notebook.parent),
                                       progress_bar=False, execution_timeout=timeout)
            status.update(status="ok", error=None)
        except (StopRun, KeyboardInterrupt) as err:
            stopped = err
            status.update(status="interrupted", error=f"{type(err).__name__}: {err}")
        except Exception as err:  # a failed run is reported, never fatal for the sweep
            interrupted = getattr(err, "ename", None) == "KeyboardInterrupt"  # interrupted inside the kernel
            status.update(status="interrupted" if interrupted else "failed", error=_error_text(err))
    status["seconds"] = round(time.time() - status["started"], 2)
    try:
        status["metrics"] = json.loads(metrics_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        status["metrics"] = {}
    atomic_write_json(run_dir / STATUS_FILE, status)
    if stopped is not None:
        raise stopped
    return status


def execute_task(task: dict) -> dict:
    """Worker entry point (module level so that a spawned process can import it)."""
    return execute_run(**task)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did. ``table``: one row per run of the grid (params, status, metrics)."""

    output: Path
    table: object  # pandas.DataFrame
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _mp_context():
    """``fork`` on Linux outside Jupyter (workers reuse the imported modules: seconds saved per
    worker; they only start kernels, never run torch ops), else ``spawn`` (safe in a kernel, any OS)."""
    kernel_app = sys.modules.get("ipykernel.kernelapp")
    in_kernel = kernel_app is not None and kernel_app.IPKernelApp.initialized()
    if sys.platform.startswith("linux") and not in_kernel:
        import papermill  # noqa: F401  (imported once here, inherited by the forked workers)

        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def threads_per_run(jobs: int) -> int | None:
    """CPU threads of each run's kernel when ``jobs`` run at once: the cores shared out
    (``cpu_count // jobs``, at least 1), so that parallel kernels do not oversubscribe the CPU
    (on 2 cores, 2 runs of notebook 04 at once took 48 s with torch's default threads and 37 s
    with one each); ``None`` (the kernels' own default) when ``$OMP_NUM_THREADS`` is already set."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, int(jobs)))


def _record_without_run(task: dict, status: str, error: str) -> dict:
    """Write the ``run.json`` of a point whose worker could not write one (killed, crashed)."""
    record = {"notebook": task["notebook"], "output": str(Path(task["run_dir"]) / Path(task["notebook"]).name),
              "params": task["params"], "profile": task["profile"] or os.environ.get("EMCLIP_PROFILE", "auto"),
              "status": status, "error": error, "seconds": None, "metrics": {}}
    atomic_write_json(Path(task["run_dir"]) / STATUS_FILE, record)
    return record


def _plan(notebook: Path, grid: dict, output: Path, profile, timeout, force: bool, result: SweepResult):
    """(run names of the whole grid, tasks still to execute); fills ``result.skipped``."""
    points = grid_points(grid) if grid else [{}]
    names = [run_name(p) for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"Two grid points map to the same run name ({names}); use distinct values.")
    todo = []
    for name, params in zip(names, points):
        done = read_status(output / name)
        if not force and done and done.get("status") == "ok" and done.get("params") == params:
            result.skipped.append(name)
        else:
            todo.append({"notebook": str(notebook), "run_dir": str(output / name), "params": params,
                         "profile": profile, "timeout": timeout})
    return names, todo


def run_sweep(notebook: str | os.PathLike, grid: dict[str, list], output: str | os.PathLike | None = None,
              profile: str | None = None, jobs: int | None = None, force: bool = False,
              timeout: float | None = None, progress: bool = True) -> SweepResult:
    """Execute ``notebook`` for every point of ``grid`` into ``output`` and gather the table.

    Args:
        notebook: path of the notebook to sweep (its ``parameters`` cell names the knobs).
        grid: name -> list of values (see :func:`parse_grid`); ``{}`` runs the defaults once.
            Every name must be set in the notebook's ``parameters`` cell (checked before running).
        output: sweep folder, default ``results/sweeps/<notebook stem>``.
        profile: run profile for every run (``ci``, ``cpu``, ``gpu``, ``auto``); default: inherit
            ``$EMCLIP_PROFILE``.
        jobs: parallel runs (separate processes, each with its own kernel); default min(2, CPUs).
            Each kernel gets :func:`threads_per_run` CPU threads (the cores shared out), unless
            ``$OMP_NUM_THREADS`` is set.
        force: execute again even the runs that finished.
        timeout: per-cell timeout in seconds (``None``: no limit).
    Returns:
        :class:`SweepResult`; ``result.table`` is also saved as ``<output>/sweep.csv``.
    Raises:
        ConfigError for a grid name that the notebook's parameters cell does not set, and
        NotADirectoryError / PermissionError for an output folder that cannot be written, before
        anything runs. KeyboardInterrupt after Ctrl-C, once the running points are marked
        ``interrupted`` in their ``run.json``; no queued point is started (the next call resumes).
    """
    from tqdm.auto import tqdm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"Notebook to sweep not found: {notebook}. Pass the path of an .ipynb "
                                "file, e.g. notebooks/04_em_aggregation.ipynb.")
    check_grid_names(notebook, grid)
    if profile is not None:
        from emclip.runtime import get_profile

        try:
            get_profile(profile)  # unknown names fail here, listing the valid ones
        except ValueError as err:
            raise ConfigError(str(err)) from err
    jobs = _default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    output = check_output_path(Path(output) if output is not None else Path("results") / "sweeps" / notebook.stem,
                               "dir")
    result = SweepResult(output=output.resolve(), table=None)
    names, todo = _plan(notebook, grid, output, profile, timeout, force, result)
    workers = min(jobs, len(todo))
    threads = threads_per_run(workers)
    for task in todo:
        task["threads"] = threads
    if todo:
        bar = tqdm(total=len(todo), desc=f"sweep {notebook.stem}", disable=not progress)
        stopped: list[str] = []

        def on_done(task: dict, exit_code: int) -> None:
            name = Path(task["run_dir"]).name
            status = read_status(task["run_dir"])
            if status is None or status.get("params") != task["params"]:
                status = _record_without_run(task, "failed", f"the worker process ended (exit code {exit_code}) "
                                                             "before recording the run")
            result.executed.append(name)
            if status["status"] != "ok":
                result.failed.append(status)
                bar.write(f"{status['status'].upper()} {name}: {status['error']}\n"
                          f"  executed notebook: {status['output']}")
            bar.update(1)

        def on_stopped(task: dict) -> None:
            status = read_status(task["run_dir"])
            if status is None or status.get("status") != "interrupted":
                _record_without_run(task, "interrupted", "the sweep was stopped while this run was executing")
            stopped.append(Path(task["run_dir"]).name)
            bar.write(f"INTERRUPTED {Path(task['run_dir']).name}: marked 'interrupted' in its {STATUS_FILE}")

        try:
            run_in_processes(execute_task, todo, workers, _mp_context(), on_done, on_stopped,
                             log_path=lambda task: Path(task["run_dir"]) / WORKER_LOG)
        except KeyboardInterrupt:
            not_started = len(todo) - len(result.executed) - len(stopped)
            bar.write(f"sweep stopped: {not_started} queued run(s) not started; run the same command again "
                      "to resume (finished runs are skipped).")
            raise
        finally:
            bar.close()
    result.table = gather(output, names=names)
    return result
