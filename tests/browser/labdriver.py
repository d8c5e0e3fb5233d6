"""JupyterLab as a student uses it, driven from headless Chromium.

:class:`LabServer` starts ``make lab`` (so the target itself is what is tested, ``--allow-root``
included) on 127.0.0.1, a free port and a random token, with its own settings folder: every cell
rendered (no windowing), no news or update checks. :func:`run_notebook` opens a notebook, runs
Run > Run All Cells, waits for the kernel to finish, saves it and reads the saved file back for
errors. :func:`move_explorer` moves one control of an ipywidgets explorer and reports whether the
explorer's figure changed (the bytes of its ``<img>`` before and after).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]
LAB_SETTINGS = {
    # every cell in the DOM, so that prompts, outputs and widgets can be read at once; the notebook's
    # own kernel starts without a "Select Kernel" dialog
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    # nothing fetched from the web, no pop-up asking for it
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}
#: a call that builds an explorer in a notebook's code (the kit's ``explore`` or ipywidgets' ``interact``)
EXPLORER_CALL = re.compile(r"(?<![\w.])(?:explore|interact)\(|\.interact\(")
WIDGET_FAILURES = ("Loading widget", "Error displaying widget")
#: one control of an explorer: a slider handle or a dropdown
CONTROL = ".noUi-handle, .widget-dropdown select"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """``make lab`` on ``root`` (a folder of notebooks), stopped with its process group."""

    def __init__(self, root: Path, workdir: Path, env: dict[str, str]):
        self.root, self.workdir = Path(root), Path(workdir)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "jupyterlab.log"
        self.env = dict(env)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        venv = Path(sys.prefix)
        lab_args = (
            f"--no-browser --ip=127.0.0.1 --port={self.port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={self.token}"
        )
        # the venv that runs the tests is the one to use; never reinstall it from here
        return [
            "make",
            "--no-print-directory",
            "-o",
            str(venv / ".emclip-installed"),
            f"VENV={venv}",
            "lab",
            f"LAB_DIR={self.root}",
            f"LAB_ARGS={lab_args}",
        ]

    def start(self, timeout: float = 180.0) -> LabServer:
        settings = self.workdir / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values))
        env = {
            **self.env,
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.workdir / "lab-workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "jupyter-runtime"),
        }
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"`make lab` exited with {self.proc.returncode} before serving:\n{self.log_tail()}"
                )
            try:
                self.api("GET", "status")
                return self
            except OSError:
                time.sleep(1.0)
        self.stop()
        raise TimeoutError(
            f"JupyterLab did not answer on {self.base} within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )

    def api(self, method: str, path: str):
        request = urllib.request.Request(
            f"{self.base}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        """The notebook in a workspace of its own: JupyterLab restores nothing from an earlier page
        (else every notebook opened before reopens with it and starts its kernel again)."""
        workspace = f"{Path(notebook).stem}-{secrets.token_hex(4)}"
        return f"{self.base}/lab/workspaces/{quote(workspace)}/tree/{quote(notebook)}?token={self.token}"

    def kernel_of(self, notebook: str) -> dict | None:
        """The server's record of the kernel of ``notebook`` (a path under the root), if it has one."""
        for session in self.api("GET", "sessions") or []:
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"]
        return None

    def shutdown_kernels(self) -> None:
        """Shut every session's kernel down (one notebook's kernel at a time keeps memory low)."""
        for session in self.api("GET", "sessions") or []:
            self.api("DELETE", f"sessions/{session['id']}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.shutdown_kernels()
        except OSError:
            pass
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class NotebookRun:
    """What a Run All in JupyterLab left in the saved notebook and on the page."""

    name: str
    seconds: float
    errors: list[str] = field(default_factory=list)  # "cell N: Ename: value"
    not_run: list[int] = field(default_factory=list)  # code cells without an execution count
    widget_failures: list[str] = field(default_factory=list)
    explorers_expected: int = 0
    explorers_rendered: int = 0


def _kernel_status(page) -> str | None:
    return page.evaluate(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
        ".jp-Notebook-ExecutionIndicator')?.dataset.status ?? null"
    )


def _prompts(page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
        ".jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"
    )


def accept_kernel_dialog(page) -> bool:
    """Accept a "Select Kernel" dialog (the notebook's own kernel is preselected) if one is open."""
    dialog = page.locator(".jp-Dialog:has-text('Select Kernel')")
    if dialog.count():
        dialog.get_by_role("button", name="Select", exact=True).click()
        return True
    return False


def wait_for_kernel(page, lab: LabServer, notebook: str, timeout: float) -> None:
    """Until the notebook's kernel is idle and connected: the page says idle, and the server has a
    kernel for the notebook in state idle with the page's connection open (an earlier "idle" on the
    page can come before the kernel's channels are up, and a Run All then does nothing)."""
    deadline, settled = time.monotonic() + timeout, 0
    while settled < 3:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the kernel of {notebook} was not ready within {timeout:.0f} s (page: "
                f"{_kernel_status(page)!r}, server: {lab.kernel_of(notebook)})"
            )
        accept_kernel_dialog(page)
        kernel = lab.kernel_of(notebook) or {}
        ready = (
            _kernel_status(page) == "idle"
            and kernel.get("execution_state") == "idle"
            and kernel.get("connections", 0) > 0
        )
        settled = settled + 1 if ready else 0
        time.sleep(0.5)


def wait_for_run_all(page, timeout: float) -> None:
    """Until no cell is queued or running, at least one has run and the kernel is idle (twice in a
    row: Run All marks every queued cell ``[*]`` at once, so an idle moment between cells shows one)."""
    deadline, settled = time.monotonic() + timeout, 0
    while settled < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run All did not finish within {timeout:.0f} s; prompts: {_prompts(page)}")
        accept_kernel_dialog(page)
        prompts = _prompts(page)
        done = (
            _kernel_status(page) == "idle"
            and prompts
            and not any("*" in p for p in prompts)
            and any(re.search(r"\d", p) for p in prompts)
        )
        settled = settled + 1 if done else 0
        time.sleep(1.0)


def menu(page, top: str, item: str) -> None:
    """Click ``top`` in the menu bar, then the item labelled exactly ``item`` (shortcut aside)."""
    page.get_by_role("menuitem", name=top, exact=True).click()
    page.locator(f".lm-Menu-content .lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{item}'))").first.click()


def start_run_all(page, lab: LabServer, notebook: str, attempts: int = 3, wait: float = 30.0) -> None:
    """Run > Run All Cells, until a prompt shows cells queued or run. A click that lands while the
    page is still wiring up the notebook does nothing; it is repeated only while the server says the
    kernel is idle and no prompt moved (so a cell never runs twice)."""
    for _ in range(attempts):
        menu(page, "Run", "Run All Cells")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if any(re.search(r"[*\d]", p) for p in _prompts(page)):
                return
            time.sleep(0.5)
        if (lab.kernel_of(notebook) or {}).get("execution_state") != "idle":
            deadline = time.monotonic() + wait
            while not any(re.search(r"[*\d]", p) for p in _prompts(page)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the kernel of {notebook} is busy but no cell shows it")
                time.sleep(0.5)
            return
    raise TimeoutError(f"Run All Cells started nothing after {attempts} tries; prompts: {_prompts(page)}")


def save(page, path: Path, timeout: float = 60.0) -> dict:
    """File > Save Notebook; the saved notebook once the file on disk has changed."""
    before = path.stat().st_mtime_ns
    menu(page, "File", "Save Notebook")
    deadline = time.monotonic() + timeout
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} was not saved within {timeout:.0f} s")
        time.sleep(0.5)
    time.sleep(1.0)  # let the writer finish
    return json.loads(path.read_text(encoding="utf-8"))


def saved_problems(notebook: dict) -> tuple[list[str], list[int]]:
    """Error outputs (``cell N: Ename: value``) and code cells that never ran, in a saved notebook."""
    errors, not_run = [], []
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    for index, cell in enumerate(code):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"code cell {index}: {out.get('ename')}: {out.get('evalue')}")
        if cell.get("execution_count") is None and source.strip():
            not_run.append(index)
    return errors, not_run


def expected_explorers(notebook: dict) -> int:
    """How many explorers a notebook's code builds (calls to ``explore(`` / ``interact(``)."""
    return sum(
        len(EXPLORER_CALL.findall("".join(c["source"]) if isinstance(c["source"], list) else c["source"]))
        for c in notebook["cells"]
        if c["cell_type"] == "code"
    )


def run_notebook(page, lab: LabServer, path: Path, timeout: float) -> NotebookRun:
    """Open ``path`` (under the lab's root) in JupyterLab, Run All Cells, save, and report."""
    start = time.monotonic()
    notebook = path.relative_to(lab.root).as_posix()
    page.goto(lab.url(notebook))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
    wait_for_kernel(page, lab, notebook, timeout=300)
    start_run_all(page, lab, notebook)
    wait_for_run_all(page, timeout)
    run = NotebookRun(path.stem, time.monotonic() - start)
    saved = save(page, path)
    run.errors, run.not_run = saved_problems(saved)
    run.explorers_expected = expected_explorers(saved)
    deadline = time.monotonic() + 60
    while explorer_count(page) < run.explorers_expected and time.monotonic() < deadline:
        time.sleep(0.5)  # widget views render after the kernel is idle
    run.explorers_rendered = explorer_count(page)
    text = page.inner_text(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    run.widget_failures = [phrase for phrase in WIDGET_FAILURES if phrase in text]
    return run


def explorer_count(page) -> int:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-interact").count()


def _figure(explorer) -> list[str]:
    """The ``src`` of every image in an explorer's output (PNG bytes as data URLs)."""
    return explorer.locator(".widget-output img").evaluate_all("imgs => imgs.map(i => i.src)")


@dataclass
class ExplorerMove:
    control: str  # "slider a: 1 -> 2" or "dropdown b: x -> y"
    changed: bool
    before: int  # images before / after
    after: int
    seconds: float
    output_text: str  # text the explorer's output shows after the move (tracebacks land here)


def move_explorer(page, explorer, timeout: float, settle: float = 5.0) -> ExplorerMove:
    """Move the first slider or dropdown of ``explorer`` and wait until its figure differs, or until
    the kernel has been idle for ``settle`` seconds after the move (then the figure did not change)."""
    explorer.scroll_into_view_if_needed()
    before = _figure(explorer)
    control = explorer.locator(CONTROL).first
    label = control.evaluate(
        "e => e.closest('.widget-inline-hbox')?.querySelector('.widget-label')?.textContent"
    )
    if control.evaluate("e => e.tagName") == "SELECT":
        old = control.input_value()
        options = control.locator("option").evaluate_all("os => os.map(o => o.value)")
        new = next(value for value in options if value != old)
        control.select_option(new)
        moved = f"dropdown {label}: {old} -> {new}"
    else:
        old = control.get_attribute("aria-valuetext")
        control.focus()
        page.keyboard.press("ArrowRight")
        if control.get_attribute("aria-valuetext") == old:  # at its maximum
            page.keyboard.press("ArrowLeft")
        moved = f"slider {label}: {old} -> {control.get_attribute('aria-valuetext')}"
    start = time.monotonic()
    idle_since = None
    while True:
        after = _figure(explorer)
        elapsed = time.monotonic() - start
        if after and after != before:
            break
        idle = _kernel_status(page) == "idle"
        idle_since = (idle_since or time.monotonic()) if idle else None
        if (idle_since and time.monotonic() - idle_since > settle) or elapsed > timeout:
            break
        time.sleep(0.2)
    text = explorer.locator(".widget-output").first.inner_text()
    return ExplorerMove(moved, bool(after) and after != before, len(before), len(after), elapsed, text)
