"""The `emclip` command: one-line user errors (exit 2, 130 for Ctrl-C), --debug, real bugs keep their
traceback, argument checks before any work, output locations checked before any work (issue 16)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from emclip.cli import main
from emclip.errors import RunMismatchError


def check_output_path(*args, **kwargs):
    from emclip.fileio import check_output_path as check  # new in this change: imported where used

    return check(*args, **kwargs)


def _raise_from_info(monkeypatch, exc):
    def boom(args):
        raise exc

    monkeypatch.setattr("emclip.cli.info.run", boom)  # `register` binds the module's `run` when the parser is built


@pytest.fixture
def no_training(monkeypatch):
    """Replace the engine's training by a recorder: the CLI tests check what reaches it, and when."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs)
        raise AssertionError("training started")

    monkeypatch.setattr("emclip.engine.train_from_profile", fake)
    return calls


def _no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".emclip-write-test")]


# ----- one line, --debug, bugs, Ctrl-C -------------------------------------------------------------
def test_user_error_is_one_line_with_the_fix_and_debug_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv("EMCLIP_DATA_DIR", raising=False)
    assert main(["prepare", "--task", "fundus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("emclip prepare: error: Give --root DIR or set EMCLIP_DATA_DIR")
    for argv in (["--debug", "prepare", "--task", "fundus"], ["prepare", "--task", "fundus", "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ConfigError" in err
        assert err.strip().endswith("see data/README.md for the layout.")


def test_a_bug_keeps_its_traceback(monkeypatch):
    _raise_from_info(monkeypatch, TypeError("a bug in the kit"))
    with pytest.raises(TypeError, match="a bug in the kit"):
        main(["info"])


@pytest.mark.parametrize("exc", [FileNotFoundError("No checkpoint at x.pt. Train first."),
                                 PermissionError("Cannot write out: read-only."),
                                 NotADirectoryError("Cannot write a/b: a is a file."),
                                 RunMismatchError("Cannot resume x.pt: steps 30 -> 50, seed 0 -> 1.")])
def test_user_errors_of_every_kind_give_exit_code_2(monkeypatch, capsys, exc):
    _raise_from_info(monkeypatch, exc)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == f"emclip info: error: {exc}\n"


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    _raise_from_info(monkeypatch, KeyboardInterrupt())
    assert main(["info"]) == 130
    assert capsys.readouterr().err == "emclip info: interrupted (Ctrl-C).\n"


def test_error_line_of_operating_system_errors():
    from emclip.cli.common import error_line

    assert error_line(FileNotFoundError(2, "No such file or directory", "x.pt")) == \
        "No such file or directory: x.pt (check the path)."
    assert error_line(ValueError("two\n   lines")) == "two lines"


def test_bad_arguments_name_the_valid_values(capsys, tmp_path, no_training):
    assert main(["train", "--task", "fundus", "--train-domains", "A", "--out", str(tmp_path / "x.pt")]) == 2
    assert "unknown fundus domain(s) 'A'; valid: domain1, domain2, domain3, domain4." in capsys.readouterr().err
    assert main(["train", "--task", "fundus", "--model", "nope", "--train-domains", "domain1"]) == 2
    assert "unknown models ['nope']" in capsys.readouterr().err
    assert main(["info", "--profile", "laptop"]) == 2
    assert "Unknown run profile 'laptop'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "retina", "--train-domains", "domain1"])
    assert exit_info.value.code == 2 and "Unknown task 'retina'" in capsys.readouterr().err
    assert no_training == []


# ----- emclip train ----------------------------------------------------------------------------------
def test_train_steps_zero_is_refused(capsys, tmp_path, no_training):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "fundus", "--train-domains", "domain1", "--steps", "0", "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err
    assert no_training == []  # before: trained the profile's 30 steps


def test_train_overwrite_and_resume_reach_the_engine(monkeypatch, tmp_path, capsys):
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs)
        raise RunMismatchError(f"Cannot resume {kwargs['checkpoint_path']}: it was trained with seed 0, not 1.")

    monkeypatch.setattr("emclip.engine.train_from_profile", fake)
    out = tmp_path / "run.pt"
    base = ["train", "--task", "fundus", "--train-domains", "domain1", "--out", str(out), "--profile", "ci"]
    assert main([*base, "--overwrite"]) == 2
    assert calls[-1]["overwrite"] is True and calls[-1]["resume"] is False
    assert main([*base, "--resume", "--seed", "1"]) == 2
    assert calls[-1]["resume"] is True and not calls[-1].get("overwrite")
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"emclip train: error: Cannot resume {out}: it was trained with seed 0, not 1."
    with pytest.raises(SystemExit):
        main([*base, "--resume", "--overwrite"])  # one or the other


# ----- output locations, checked before any work ---------------------------------------------------------
def test_train_out_under_a_file_or_a_folder_fails_before_training(tmp_path, capsys, no_training):
    (tmp_path / "notes.txt").write_text("a file")
    argv = ["train", "--task", "fundus", "--train-domains", "domain1", "--profile", "ci", "--out"]
    assert main([*argv, str(tmp_path / "notes.txt" / "model.pt")]) == 2
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main([*argv, str(tmp_path / "folder")]) == 2
    assert "it is an existing folder" in capsys.readouterr().err
    assert no_training == [] and _no_temporary_files(tmp_path)


def test_evaluate_sweep_and_run_check_their_output_folder_first(tmp_path, capsys, monkeypatch):
    from emclip.sweep import demo_notebook

    def never(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr("emclip.evaluation.evaluate_checkpoints", never)
    monkeypatch.setattr("emclip.runner.run_notebooks", never)
    blocker = tmp_path / "results.csv"
    blocker.write_text("a file where a folder is expected")
    notebook = demo_notebook(tmp_path / "demo.ipynb")
    commands = {
        "evaluate": ["evaluate", "--task", "cardiac", "--checkpoints", "a.pt", "--out", str(blocker)],
        "sweep": ["sweep", str(notebook), "-g", "em_bases=2", "--output", str(blocker / "sweep")],
        "run": ["run", "--output", str(blocker)],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        assert "results.csv is a file, not a folder" in capsys.readouterr().err, name
    assert _no_temporary_files(tmp_path) and blocker.read_text().startswith("a file")


def test_check_output_path_kinds(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper" / "out.pt") == tmp_path / "new" / "deeper" / "out.pt"
    assert not (tmp_path / "new").exists()  # nothing is created
    assert check_output_path(tmp_path / "f", "file") == tmp_path / "f"  # an existing file is replaced later
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f", "dir")
    with pytest.raises(NotADirectoryError):
        check_output_path(tmp_path / "f" / "x" / "y.pt", "file")
    with pytest.raises(IsADirectoryError):
        check_output_path(tmp_path, "file")
    with pytest.raises(ValueError, match="kind"):
        check_output_path(tmp_path, "folder")
    assert _no_temporary_files(tmp_path)


def _unwritable_system_folder() -> Path | None:
    """A folder that refuses new files even to root (sysfs), found by trying; None if there is none."""
    folder = Path("/sys")
    if not sys.platform.startswith("linux") or not folder.is_dir():
        return None
    try:
        (folder / ".emclip-probe").touch()
    except OSError:
        return folder
    (folder / ".emclip-probe").unlink()
    return None


def test_a_folder_that_refuses_files_is_found_by_writing_even_as_root(capsys, no_training):
    folder = _unwritable_system_folder()
    if folder is None:
        pytest.skip("no folder here refuses new files to this user (needs Linux sysfs)")
    with pytest.raises(PermissionError, match=f"the folder {folder} does not accept new files"):
        check_output_path(folder / "emclip-out" / "model.pt")
    assert main(["train", "--task", "fundus", "--train-domains", "domain1", "--out", str(folder / "m.pt")]) == 2
    assert "does not accept new files" in capsys.readouterr().err and no_training == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores permission bits, so a chmod-read-only folder stays writable; the sysfs "
                           "test above covers the same check as root")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="does not accept new files"):
            check_output_path(folder / "out.pt")
    finally:
        folder.chmod(0o755)


# ----- emclip evaluate with several checkpoints ---------------------------------------------------
def _engine_skips_bad_checkpoints() -> bool:
    import inspect

    from emclip.evaluation import evaluate_checkpoints

    return "say" in inspect.signature(evaluate_checkpoints).parameters


@pytest.mark.skipif(not _engine_skips_bad_checkpoints(),
                    reason="needs the engine-eval stream's evaluate_checkpoints, which skips bad files (branch engine)")
def test_evaluate_keeps_the_good_checkpoints_when_one_is_bad(tmp_path, capsys):
    """Needs the engine's skipping evaluate_checkpoints (engine-eval stream): the CLI writes the good
    checkpoints' tables, names each bad file with its reason, and exits 1."""
    import pandas as pd

    from emclip.engine import train_from_profile

    good = tmp_path / "unet_good.pt"
    train_from_profile("unet", "fundus", ["domain1"], profile="ci", steps=2, checkpoint_path=good, progress=False)
    missing, garbage = tmp_path / "missing.pt", tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    out = tmp_path / "eval"
    argv = ["evaluate", "--task", "fundus", "--checkpoints", str(missing), str(good), str(garbage),
            "--targets", "domain1", "domain2", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and str(garbage) in err
    assert err.strip().endswith("2 of 3 checkpoint(s) skipped (listed above); the tables hold the others.")
    table = pd.read_csv(out / "results.csv")
    assert set(table["split"]) == {"unet_good"} and set(table["target_domain"]) == {"domain1", "domain2"}
    assert (out / "summary.md").is_file()
