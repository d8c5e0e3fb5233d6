"""Sweep points in child processes that never outlive the sweep.

:func:`run_in_processes` starts one child process per point (at most ``jobs`` at a time) and
waits for them. Each child:

- ignores SIGINT: Ctrl-C is the parent's to handle (the notebook kernels that papermill starts
  run in their own session and are not reached by the terminal's Ctrl-C either);
- turns SIGTERM into :class:`StopRun`, raised in the running point, which records itself as
  ``interrupted`` (:func:`emclip.sweep.execute.execute_run`) before the child exits;
- watches its parent: when the parent is gone (killed, closed terminal) it stops itself the same
  way, so no worker goes on running the remaining points as an orphan.

On Ctrl-C (or any exception) in the parent, no new point starts, the running children are
stopped (SIGTERM, then SIGKILL after ``stop_timeout`` seconds), each stopped point is reported
to ``on_stopped`` and the exception is raised again. One process per point rather than a pool:
nothing is queued inside a worker, so a stopped sweep starts nothing more (design choice).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

EXIT_STOPPED = 128 + signal.SIGTERM  # a child that stopped on request (as a shell reports SIGTERM)
PARENT_POLL_SECONDS = 0.5


class StopRun(BaseException):
    """Raised inside a sweep worker when the sweep stops (Ctrl-C in the parent, or the parent died).

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in the notebook
    machinery does not swallow it.
    """


def _raise_stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: let the run record itself
    raise StopRun("the sweep was stopped (Ctrl-C in the sweep, or its main process ended)")


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _kill_own_children() -> None:
    """Kill what the worker started (a kernel papermill had no chance to shut down)."""
    try:
        import psutil
    except ImportError:  # the kernel's own parent poller ends it once this process exits
        return
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


def _redirect_output(log_path: str) -> None:
    """Send this process's stdout and stderr (and so its kernel's) to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
        os.dup2(handle, fd)
    os.close(handle)


def _child_main(target: Callable[[dict], object], task: dict, parent_pid: int, log_path: str | None) -> None:
    """Entry point of a worker process (module level, so that ``spawn`` can import it)."""
    if log_path is not None:
        _redirect_output(log_path)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died while this process started
        os._exit(EXIT_STOPPED)
    try:
        target(task)
    except StopRun:
        _kill_own_children()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_STOPPED)


def run_in_processes(target: Callable[[dict], object], tasks: list[dict], jobs: int, context,
                     on_done: Callable[[dict, int], None], on_stopped: Callable[[dict], None],
                     log_path: Callable[[dict], str] | None = None, stop_timeout: float = 20.0) -> None:
    """Run ``target(task)`` for every task in child processes, at most ``jobs`` at once.

    Args:
        target: a module-level function (picklable for ``spawn``); its return value is ignored:
            results travel through files (each point writes its ``run.json``).
        tasks: the points, started in order.
        jobs: parallel processes (>= 1).
        context: a ``multiprocessing`` context (``fork`` or ``spawn``).
        on_done: called in the parent as ``on_done(task, exit_code)`` when a child ends.
        on_stopped: called in the parent for each running task when the sweep is stopped; then
            the exception that stopped it (``KeyboardInterrupt``, ...) is raised again.
        log_path: ``log_path(task)`` is the file that receives the child's stdout and stderr (and
            so its notebook kernel's warnings and dying words), keeping the terminal for the
            parent's summary; ``None`` leaves them on the parent's streams.
        stop_timeout: seconds a stopped child gets to record itself before SIGKILL.
    """
    pending = list(tasks)
    running: dict[int, tuple[object, dict]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop(0)
                log = str(log_path(task)) if log_path is not None else None
                with _sigint_deferred():  # a Ctrl-C now waits until the child is registered, then stops it
                    process = context.Process(target=_child_main, args=(target, task, os.getpid(), log))
                    process.start()
                    running[process.sentinel] = (process, task)
            for sentinel in wait(list(running)):
                process, task = running.pop(sentinel)
                process.join()
                on_done(task, process.exitcode)
    except BaseException:
        _stop(running, stop_timeout)
        for _, task in running.values():
            on_stopped(task)
        raise


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C back while a child is started and registered, then act on it.

    Without it, a Ctrl-C that lands between the fork and the registration leaves a child that
    nobody stops, and the interpreter's exit then waits for it to finish its whole notebook.
    (A handler, not a blocked signal: the OS may hand SIGINT to any thread, e.g. tqdm's monitor.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt here
    elif caught and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _ignoring_sigint():
    """A second Ctrl-C must not cut the clean-up short (main thread only; elsewhere a no-op)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(running: dict, timeout: float) -> None:
    """SIGTERM every running child, wait up to ``timeout`` seconds, then SIGKILL what is left."""
    processes = [process for process, _ in running.values()]
    with _ignoring_sigint():
        for process in processes:
            with contextlib.suppress(OSError):
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
