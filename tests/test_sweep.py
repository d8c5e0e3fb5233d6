"""emclip.sweep: grid parsing, run names, the papermill sweep (parallel, resumable, failures), plots."""

from __future__ import annotations

import json
import os

import matplotlib
import pandas as pd
import pytest

from emclip import runlog
from emclip.cli import main
from emclip.sweep import (
    demo_notebook,
    gather,
    grid_points,
    make_notebook,
    parse_grid,
    parse_value,
    read_status,
    run_name,
    threads_per_run,
)
from emclip.viz.sweep import metric_long, plot_metric_heatmap, plot_metric_vs_k_t, plot_metric_vs_param

matplotlib.use("Agg")


def test_parse_grid_parses_literals_and_keeps_strings():
    grid = parse_grid(["em_bases=4,8", "lam=0.5,1e1", "flag=True,False,None", "domain=domain1,'domain 2'",
                       "layers=[3,6],[9]", "name=ViT-B-16"])
    assert grid == {"em_bases": [4, 8], "lam": [0.5, 10.0], "flag": [True, False, None],
                    "domain": ["domain1", "domain 2"], "layers": [[3, 6], [9]], "name": ["ViT-B-16"]}
    assert type(grid["lam"][1]) is float and type(grid["em_bases"][0]) is int
    assert parse_value(" 3 ") == 3 and parse_value("cpu") == "cpu"


@pytest.mark.parametrize("spec", ["em_bases", "=4,8", "em bases=4", "k=", "k=1,,"])
def test_parse_grid_rejects_bad_entries(spec):
    if spec == "k=1,,":  # empty items are ignored, not an error
        assert parse_grid([spec]) == {"k": [1]}
        return
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        parse_grid([spec])


def test_parse_grid_rejects_a_repeated_parameter():
    with pytest.raises(ValueError, match="twice"):
        parse_grid(["k=1", "k=2"])


def test_grid_points_and_run_names_are_deterministic():
    points = grid_points({"em_bases": [4, 8], "em_iters": [1, 3]})
    assert points == [{"em_bases": 4, "em_iters": 1}, {"em_bases": 4, "em_iters": 3},
                      {"em_bases": 8, "em_iters": 1}, {"em_bases": 8, "em_iters": 3}]
    assert [run_name(p) for p in points][:2] == ["em_bases=4__em_iters=1", "em_bases=4__em_iters=3"]
    assert run_name({"layers": [3, 6], "d": "a/b c", "x": None}) == "layers=-3,6-__d=a-b-c__x=None"
    assert run_name({}) == "default"
    with pytest.raises(ValueError, match="non-empty list"):
        grid_points({"k": []})


def test_demo_notebook_runs_em_and_records_fit_per_domain(tmp_path, monkeypatch):
    """Execute the demo's cells in this process (no kernel): more bases and iterations fit better."""
    import nbformat

    monkeypatch.delenv(runlog.RECORD_ENV, raising=False)
    nb = nbformat.read(str(demo_notebook(tmp_path / "demo.ipynb")), as_version=4)
    nbformat.validate(nb)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    fits = {}
    for k, t in [(2, 1), (16, 3)]:
        namespace = {}
        exec(params[0].source, namespace)
        namespace.update(em_bases=k, em_iters=t, profile="ci")
        for cell in nb.cells:
            if cell.cell_type == "code" and cell is not params[0]:
                exec(cell.source, namespace)
        fits[k] = runlog.records()["fit"]
        assert runlog.records()["K"] == k and runlog.records()["T"] == t
    assert set(fits[2]) == {"domain1", "domain2", "domain3", "domain4"}
    assert all(fits[16][d] > fits[2][d] + 0.1 for d in fits[2])
    assert fits[2]["domain1"] > fits[2]["domain4"]  # the noisier toy domain is harder to fit


FIXTURE_CODE = """if a == 0:
    raise ZeroDivisionError("a must not be 0")
import emclip.runlog
import os
emclip.runlog.record(score=10 / a, per={"d1": a, "d2": 2 * a}, tag=tag, threads=int(os.environ["OMP_NUM_THREADS"]))"""


def test_sweep_runs_in_parallel_resumes_and_reports_failures(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the sweep shares the cores out itself
    notebook = make_notebook(tmp_path / "nb" / "fixture.ipynb", "a = 1\ntag = 'x'", [FIXTURE_CODE])
    out = tmp_path / "sweep"
    argv = ["sweep", str(notebook), "-g", "a=2,0", "-g", "tag=y", "--jobs", "2", "--output", str(out),
            "--profile", "ci"]

    assert main(argv) == 1  # one run failed: non-zero exit, the others completed
    printed = capsys.readouterr().out
    failed_nb = out / "a=0__tag=y" / "fixture.ipynb"
    assert "ZeroDivisionError: a must not be 0" in printed and str(failed_nb) in printed
    assert failed_nb.exists()  # the executed notebook shows the traceback

    table = pd.read_csv(out / "sweep.csv")
    assert list(table["run"]) == ["a=2__tag=y", "a=0__tag=y"]
    assert list(table["status"]) == ["ok", "failed"]
    ok = table.iloc[0]
    assert ok["score"] == 5.0 and ok["per.d1"] == 2 and ok["per.d2"] == 4
    assert ok["tag"] == "y"  # the grid value reached the notebook, not the default 'x'
    assert ok["threads"] == max(1, (os.cpu_count() or 1) // 2)  # two kernels at once: half the cores each
    status = read_status(out / "a=2__tag=y")
    assert status["params"] == {"a": 2, "tag": "y"} and status["profile"] == "ci"
    assert json.loads((out / "a=2__tag=y" / "metrics.json").read_text())["score"] == 5.0

    started = {"a=2__tag=y": read_status(out / "a=2__tag=y")["started"]}
    assert main(argv) == 1  # second call: the finished runs are not repeated, the failed one is retried
    printed = capsys.readouterr().out
    assert "1 run(s) executed, 1 already done, 1 failed" in printed
    assert {name: read_status(out / name)["started"] for name in started} == started
    assert read_status(out / "a=0__tag=y")["started"] > max(started.values())
    assert len(gather(out)) == 2


def test_parallel_runs_share_the_cores_unless_the_user_set_the_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [threads_per_run(jobs) for jobs in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_run(2) is None  # the kernels inherit the user's setting


def test_sweep_rejects_a_missing_notebook_and_a_bad_profile(tmp_path):
    from emclip.sweep import run_sweep

    with pytest.raises(FileNotFoundError, match="not found"):
        run_sweep(tmp_path / "nope.ipynb", {"a": [1]})
    notebook = make_notebook(tmp_path / "x.ipynb", "a = 1", ["b = a"])
    with pytest.raises(ValueError, match="Valid profiles"):
        run_sweep(notebook, {"a": [1]}, profile="laptop")


def _table():
    rows = []
    for k in (4, 8, 16):
        for t in (1, 3):
            for seed in (0, 1):
                rows.append({"run": f"k{k}t{t}s{seed}", "status": "ok", "em_bases": k, "em_iters": t,
                             "seed": seed, "dice.domain1": k / 20 + t / 10 + seed / 100,
                             "dice.domain2": k / 40, "dice_mean": 0.5})
    rows.append({"run": "bad", "status": "failed", "em_bases": 4, "em_iters": 1, "seed": 0})
    return pd.DataFrame(rows)


def test_metric_long_melts_per_domain_columns_and_drops_failed_runs():
    long = metric_long(_table(), "dice")
    assert set(long["domain"]) == {"domain1", "domain2"}  # dice_mean is not a domain of dice
    assert len(long) == 3 * 2 * 2 * 2 and "bad" not in set(long["run"])
    row = long[(long["domain"] == "domain1") & (long["run"] == "k8t3s1")]
    assert row["dice"].item() == pytest.approx(8 / 20 + 0.3 + 0.01)
    plain = metric_long(_table(), "dice_mean")
    assert set(plain["domain"]) == {"all"} and len(plain) == 12
    with pytest.raises(ValueError, match="Numeric columns"):
        metric_long(_table(), "hd95")


def test_sweep_plots_one_panel_per_domain():
    fig = plot_metric_vs_k_t(_table(), "dice")
    assert [ax.get_title() for ax in fig.axes] == ["domain1", "domain2"]
    assert fig.axes[0].get_xlabel() == "em_bases"
    assert len(plot_metric_vs_param(_table(), "dice", "em_bases", by_domain=False).axes) == 1
    heat = plot_metric_heatmap(_table(), "dice", "em_bases", "em_iters")
    assert heat.axes[0].get_title() == "mean dice"
    with pytest.raises(ValueError, match="not a column"):
        plot_metric_vs_param(_table(), "dice", "lam")


def test_best_params_averages_over_domains_and_seeds_and_ignores_failures():
    from emclip.exercises.sweep import check_best_params, example_table
    from emclip.sweep import best_params

    table = example_table(1, failed_best=True)
    assert best_params(table, "dice", ["em_bases", "em_iters"]) == {"em_bases": 8, "em_iters": 1}  # the lucky seed
    assert best_params(example_table(0), "dice", ["em_bases", "em_iters"]) == {"em_bases": 16, "em_iters": 3}
    assert best_params(example_table(0), "dice", ["em_bases"], maximize=False) == {"em_bases": 4}
    with pytest.raises(ValueError, match="not in the table"):
        best_params(table, "hd95", ["em_bases"])
    assert check_best_params(lambda t, m, p: best_params(t, m, p), verbose=False)

    def single_best_run(t, m, p):
        row = t.loc[t[[c for c in t if c.startswith(m + ".")]].mean(axis=1).idxmax()]
        return {k: row[k] for k in p}

    with pytest.raises(AssertionError, match="average over seeds"):
        check_best_params(single_best_run)


# ----- reliability (issue 16): grid names, parameter checks, interruption ------------------------
def test_misspelled_grid_name_is_refused_before_anything_runs(tmp_path, capsys):
    notebook = demo_notebook(tmp_path / "demo.ipynb")
    out = tmp_path / "sweep"
    assert main(["sweep", str(notebook), "-g", "em_base=4,8", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Unknown grid parameter(s) em_base" in err
    assert "did you mean em_base -> em_bases?" in err and "sets: profile, em_bases, em_iters, em_lam, seed" in err
    assert not out.exists()  # nothing ran, nothing was written


def test_grid_names_come_from_the_parameters_cell(tmp_path):
    from emclip.errors import ConfigError
    from emclip.sweep import check_grid_names, notebook_parameters

    notebook = make_notebook(tmp_path / "p.ipynb", "a = 1\nb: float = 2.0  # (a comment)\nc, d = 3, 4\n%matplotlib inline",
                             ["e = a + b"])
    assert notebook_parameters(notebook) == ["a", "b", "c", "d"]
    check_grid_names(notebook, {"a": [1], "d": [2]})
    with pytest.raises(ConfigError, match="Unknown grid parameter.s. e "):
        check_grid_names(notebook, {"e": [1]})
    import nbformat

    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1")])
    nbformat.write(plain, str(tmp_path / "plain.ipynb"))
    with pytest.raises(ConfigError, match="no cell tagged 'parameters'"):
        check_grid_names(tmp_path / "plain.ipynb", {"a": [1]})


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {"minimum": 1}, "em_bases=0 is below the minimum 1; valid: int >= 1"),
    (-4, {"minimum": 1}, "em_bases=-4 is below the minimum 1"),
    ("eight", {}, "em_bases='eight' has type str; expected int"),
    (True, {}, "em_bases=True has type bool; expected int"),
    (64, {"maximum": 32}, "em_bases=64 is above the maximum 32"),
    (3, {"choices": (4, 8)}, "em_bases=3 is not one of 4, 8"),
    ([4, 9], {"choices": (4, 8)}, "em_bases=.4, 9. holds 9, which is not valid"),
])
def test_check_parameter_names_parameter_value_and_range(value, kwargs, message):
    from emclip.errors import ConfigError
    from emclip.params import check_parameter

    kind = list if isinstance(value, list) else int
    with pytest.raises(ConfigError, match=message):
        check_parameter("em_bases", value, kind, **kwargs)


def test_check_parameter_passes_valid_values():
    from emclip.params import check_parameter

    assert check_parameter("em_bases", 8, int, minimum=1) == 8
    assert check_parameter("em_bases", None, int, minimum=1, optional=True) is None
    lam = check_parameter("em_lam", 3, float, minimum=0)
    assert lam == 3.0 and type(lam) is float
    assert check_parameter("domains", ["A", "B"], list, choices="ABCD") == ["A", "B"]


def test_demo_notebook_stops_at_its_parameters_for_em_bases_zero(tmp_path):
    """em_bases=0 fails where the notebook reads it, naming the parameter, not deep inside EM or a plot."""
    import nbformat

    from emclip.errors import ConfigError

    nb = nbformat.read(str(demo_notebook(tmp_path / "demo.ipynb")), as_version=4)
    namespace = {}
    exec(nb.cells[1].source, namespace)  # the parameters cell
    namespace.update(em_bases=0, profile="ci")
    with pytest.raises(ConfigError, match="em_bases=0 is below the minimum 1"):
        exec(nb.cells[2].source, namespace)


SLOW_CODE = """import json, os, pathlib, time
pathlib.Path(marker_dir, f"started-{a}.json").write_text(json.dumps({"kernel": os.getpid(), "worker": os.getppid()}))
time.sleep(120)"""


def _alive(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(predicate, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _ctrl_c_works():
    """Ctrl-C as in a terminal: a shell starts background jobs with SIGINT ignored, and a process
    started from one (this test run, say) would pass that on to the sweep it starts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_slow_sweep(tmp_path, argv_or_script):
    """A subprocess sweeping a two-point grid of a notebook that records its pids and sleeps."""
    import os
    import subprocess
    from pathlib import Path

    markers = tmp_path / "markers"
    markers.mkdir()
    notebook = make_notebook(tmp_path / "slow.ipynb", f"a = 1\nmarker_dir = {str(markers)!r}", [SLOW_CODE])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "EMCLIP_PROFILE": "ci"}
    command = argv_or_script(notebook, tmp_path / "sweep")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True,  # its own process group, as a terminal's job
                               preexec_fn=_ctrl_c_works)
    first = markers / "started-1.json"
    if not _wait_for(first.exists, 180):
        process.kill()
        pytest.fail(f"the first point never started: {process.communicate()}")
    return process, json.loads(first.read_text()), markers


def _kill_leftovers(process, pids):
    """After a failed check: end the sweep's processes, so that no test leaves them running."""
    import os
    import signal

    if process.poll() is None:
        process.kill()
        process.communicate()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_killing_the_sweep_leaves_no_orphan_worker_and_starts_nothing_more(tmp_path):
    import os
    import signal
    import sys

    def script(notebook, out):
        code = ("from emclip.sweep import run_sweep\n"
                f"run_sweep({str(notebook)!r}, {{'a': [1, 2]}}, output={str(out)!r}, jobs=1, progress=False)")
        return [sys.executable, "-c", code]

    process, pids, markers = _start_slow_sweep(tmp_path, script)
    try:
        os.kill(process.pid, signal.SIGKILL)  # the main process dies without any chance to clean up
        process.communicate()
        assert _wait_for(lambda: not _alive(pids["worker"]) and not _alive(pids["kernel"]), 30), \
            "the worker (or its kernel) outlived the sweep"
        assert not _wait_for((markers / "started-2.json").exists, 5), "a queued point started after the kill"
        status = read_status(tmp_path / "sweep" / "a=1")
        assert status["status"] == "interrupted" and status["params"] == {"a": 1}
    finally:
        _kill_leftovers(process, [pids["worker"], pids["kernel"]])


def test_ctrl_c_marks_the_running_point_starts_nothing_and_exits_cleanly(tmp_path):
    import os
    import signal
    import sys

    def argv(notebook, out):
        return [sys.executable, "-m", "emclip", "sweep", str(notebook), "-g", "a=1,2", "-j", "1", "-o", str(out)]

    process, pids, markers = _start_slow_sweep(tmp_path, argv)
    try:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: SIGINT to the whole job
        out, err = process.communicate(timeout=90)
        assert process.returncode == 130, (out, err)
        assert "Traceback" not in out + err and err.strip().endswith("emclip sweep: interrupted (Ctrl-C).")
        assert "INTERRUPTED a=1: marked 'interrupted'" in out and "1 queued run(s) not started" in out
        status = read_status(tmp_path / "sweep" / "a=1")
        assert status["status"] == "interrupted" and "StopRun" in status["error"]
        assert not (markers / "started-2.json").exists() and read_status(tmp_path / "sweep" / "a=2") is None
        assert _wait_for(lambda: not _alive(pids["worker"]) and not _alive(pids["kernel"]), 30)
    finally:
        _kill_leftovers(process, [pids["worker"], pids["kernel"]])


def _sleep_forever(task):  # a sweep point that never finishes by itself (module level: picklable)
    import time

    time.sleep(600)


def test_a_ctrl_c_during_a_child_start_stops_that_child_too(monkeypatch):
    """A Ctrl-C landing between the fork and the child's registration must not leave it running
    (the interpreter's exit would then wait for its whole notebook)."""
    import multiprocessing
    import os
    import signal

    from emclip.sweep.workers import run_in_processes

    class CtrlCAfterFork(multiprocessing.get_context("fork").Process):
        def start(self):
            super().start()
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, right after the fork

    context = multiprocessing.get_context("fork")
    monkeypatch.setattr(context, "Process", CtrlCAfterFork)  # the shared fork context: restored after the test
    stopped = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even where SIGINT came in ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            run_in_processes(_sleep_forever, [{"name": "slow"}], 1, context, on_done=lambda task, code: None,
                             on_stopped=stopped.append, stop_timeout=5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped == [{"name": "slow"}]  # the child was known, stopped and reported
    assert not multiprocessing.active_children()
