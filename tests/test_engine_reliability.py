"""No lost or mixed runs: finished checkpoints kept, resumes only of the same run, broken files
named, bad checkpoints skipped, tiny data refused before training, clear stops."""

from __future__ import annotations

import pytest
import torch

import emclip
from emclip.data import get_dataset, make_dataloader
from emclip.engine import load_run, read_record, train, train_from_profile
from emclip.errors import CheckpointError, ConfigError, DataError, RunMismatchError
from emclip.evaluation import evaluate_checkpoints
from emclip.models import create_model


def _loader(n=4, size=32, batch=4):
    return make_dataloader(get_dataset("fundus", "domain1", "train", size=size, n=n), batch, shuffle=True)


def _run(path, steps=2, seed=0, **kwargs):
    torch.manual_seed(0)
    model = create_model("unet", "fundus", profile="ci")
    return train(model, "fundus", _loader(), None, steps=steps, lr=1e-3, seed=seed, progress=False,
                 checkpoint_path=path, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = tmp_path_factory.mktemp("finished") / "run.pt"
    _run(path)
    return path


def test_a_finished_run_is_never_overwritten_without_overwrite(finished, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(finished.read_bytes())
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"run\.pt holds a finished run \(2 steps\).*resume=True.*overwrite=True"):
        _run(path, steps=3, resume=False)
    assert path.read_bytes() == before
    again = _run(path, steps=2, resume=True)  # the same run: reused as it is
    assert again.steps_run == 0 and path.read_bytes() == before
    replaced = _run(path, steps=3, resume=False, overwrite=True)
    assert replaced.steps_run == 3 and read_record(path)[1] == 3


@pytest.mark.parametrize("change, key", [({"seed": 1}, "train.seed"), ({"steps": 5}, "train.steps")])
def test_resume_only_the_same_run(finished, tmp_path, change, key):
    path = tmp_path / "run.pt"
    path.write_bytes(finished.read_bytes())
    with pytest.raises(RunMismatchError, match=rf"{key}: "):
        _run(path, **change)  # resume=True is the default


def _broken_files(folder, finished):
    data = finished.read_bytes()
    files = {"empty.pt": b"", "truncated.pt": data[: len(data) // 2], "garbage.pt": b"not a checkpoint at all" * 10}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    torch.save({"format": 1, "model": {}, "config": {}}, folder / "old.pt")  # before run records
    torch.save([1, 2, 3], folder / "list.pt")
    return [folder / n for n in (*files, "old.pt", "list.pt")]


def test_broken_checkpoints_raise_a_checkpoint_error_naming_the_file(finished, tmp_path):
    for path in _broken_files(tmp_path, finished):
        for read in (load_run, read_record):
            with pytest.raises(CheckpointError, match=str(path)):
                read(path)
        with pytest.raises(CheckpointError, match=str(path)):
            _run(path)  # resuming over it: named, not a PytorchStreamReader / EOFError traceback


def test_evaluating_several_checkpoints_keeps_the_good_ones(finished, tmp_path):
    from emclip import reports

    bad = _broken_files(tmp_path, finished)[1]
    ok = tmp_path / "ok.pt"
    train_from_profile("unet", "fundus", ["domain1"], profile=emclip.get_profile(
        "ci", image_size=32, train_steps=1, train_per_domain=4, val_per_domain=2, test_per_domain=2),
        checkpoint_path=ok, progress=False)
    messages = []
    table = evaluate_checkpoints([bad, ok], "fundus", domains=["domain2"], say=messages.append)
    assert set(table.split) == {"ok"} and len(table) == 2  # two regions of the one good checkpoint
    assert [s["path"] for s in table.attrs["skipped"]] == [str(bad)]
    assert len(messages) == 1 and messages[0].startswith(f"skipped {bad}: ")
    assert f"`{bad}`" in reports.markdown_report(table)
    with pytest.raises(CheckpointError, match="No checkpoint could be evaluated"):
        evaluate_checkpoints([bad], "fundus", say=messages.append)


def test_a_tiny_real_data_set_is_refused_before_training(tmp_path, monkeypatch):
    from test_engine_runs import make_fundus_tree

    import emclip.engine.recipe as recipe

    root = make_fundus_tree(tmp_path / "data", n_train=6)
    monkeypatch.setattr(recipe, "train", lambda *a, **k: pytest.fail("trained on a data set with no validation split"))
    with pytest.raises(DataError, match=r"no val images|val split .*is empty") as err:
        train_from_profile("unet", "fundus", ["domain1"], profile="ci", source="real", root=root, progress=False)
    assert "every 10th image" in str(err.value)  # the validation split rule


def test_zero_steps_is_an_error_not_the_profiles_steps():
    with pytest.raises(ConfigError, match="steps must be an int >= 1, got 0"):
        train_from_profile("unet", "fundus", ["domain1"], profile="ci", steps=0, progress=False)


def test_non_finite_loss_names_no_checkpoint_that_does_not_exist(tmp_path):
    def nan_loss(logits, mask):  # a loss that blows up at its first step
        return logits.float().mean() * float("nan")

    model = create_model("unet", "fundus", profile="ci")
    with pytest.raises(RuntimeError, match="Non-finite loss.*step 1.*learning rate") as err:
        train(model, "fundus", _loader(), steps=3, lr=1e-3, progress=False, checkpoint_path=tmp_path / "never.pt",
              loss_fn=nan_loss)
    assert "No checkpoint of this run was written" in str(err.value) and "intact" not in str(err.value)
    assert not (tmp_path / "never.pt").exists()


def test_a_non_finite_step_never_writes_the_em_bases():
    def nan_loss(logits, mask):
        return logits.float().mean() * float("nan")

    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci")
    before = model.em.mu.clone()
    with pytest.raises(RuntimeError, match="Non-finite loss"):
        train(model, "fundus", _loader(), steps=2, lr=1e-3, progress=False, loss_fn=nan_loss)
    assert torch.equal(model.em.mu, before)  # the bad batch's bases were discarded
    train(model, "fundus", _loader(), steps=1, lr=1e-3, progress=False)
    assert not torch.equal(model.em.mu, before)  # a finite step moves them


def test_an_impossible_output_location_fails_before_any_work(tmp_path):
    from emclip.evaluation import run_protocol

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    calls = []

    def counting_loss(logits, mask):
        calls.append(1)
        return logits.float().mean()

    with pytest.raises(NotADirectoryError, match="a-file is a file"):
        train(create_model("unet", "fundus", profile="ci"), "fundus", _loader(), steps=2, lr=1e-3, progress=False,
              checkpoint_path=blocker / "run.pt", loss_fn=counting_loss)
    assert calls == []  # refused before the first step, not at the first save
    with pytest.raises(NotADirectoryError, match="a-file is a file"):
        run_protocol("fundus", "single-source", ["unet"], seeds=[0], profile="ci", out_dir=blocker / "eval",
                     progress=False)
