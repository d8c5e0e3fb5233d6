"""Runs carry their record: checkpoints rebuild alone, are reused only for the same run, and are
evaluated with their own data settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import emclip
from emclip.engine import load_or_train, load_run, read_record, record_differences, train_from_profile
from emclip.errors import RunMismatchError
from emclip.evaluation import evaluate_checkpoints


def tiny(**changes):
    """A ci profile cut to seconds: 32 px, 2 steps, 4 / 2 / 2 images per domain."""
    sizes = dict(image_size=32, train_steps=2, eval_every=2, train_per_domain=4, val_per_domain=2,
                 test_per_domain=2, batch_size=4)
    return emclip.get_profile("ci", **{**sizes, **changes})


def make_fundus_tree(root, n_train=10, n_test=2):
    """Fundus-DG layout: ROOT/Fundus/DomainK/{train,test}/ROIs/{image,mask}/NAME.png (DoFE grey masks)."""
    yy, xx = np.mgrid[0:30, 0:40]
    for k in range(1, 5):
        for split, count in (("train", n_train), ("test", n_test)):
            base = root / "Fundus" / f"Domain{k}" / split / "ROIs"
            (base / "image").mkdir(parents=True)
            (base / "mask").mkdir(parents=True)
            for i in range(count):
                r = np.hypot(yy - 15, xx - 20 - i % 3)
                grey = np.full((30, 40), 255, np.uint8)
                grey[r < 10], grey[r < 5] = 128, 0
                rgb = np.stack([np.full((30, 40), 200), (r * 4).clip(0, 255), np.full((30, 40), 30)], -1)
                Image.fromarray(rgb.astype(np.uint8)).save(base / "image" / f"g{i:04d}.png")
                Image.fromarray(grey).save(base / "mask" / f"g{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished run of the U-Net on fundus domain1, with its checkpoint."""
    path = tmp_path_factory.mktemp("runs") / "unet.pt"
    torch.manual_seed(0)
    result = train_from_profile("unet", "fundus", ["domain1"], profile=tiny(), seed=3, checkpoint_path=path,
                                progress=False)
    return path, result


def test_checkpoint_carries_the_run_record_and_rebuilds_alone(trained):
    path, result = trained
    record, step = read_record(path)
    assert step == 2 and record == result.record
    assert record["task"] == "fundus" and record["model"]["name"] == "unet"
    assert record["model"]["config"] == result.model.config  # the complete resolved config
    data, train = record["data"], record["train"]
    assert data["source"] == "synthetic" and data["root"] is None and data["train_domains"] == ["domain1"]
    assert (data["image_size"], data["train_per_domain"], data["val_per_domain"], data["test_per_domain"]) == (32, 4, 2, 2)
    assert data["augment"]["geometric"] is True  # the augmentation as it ran
    assert (train["steps"], train["seed"], train["batch_size"], train["lr"]) == (2, 3, 4, tiny().lr)
    assert record["profile"] == "ci" and record["versions"]["torch"] == torch.__version__
    model, loaded_record = load_run(path)  # from the file alone
    assert loaded_record == record and not model.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model.eval()(x))


def test_the_same_run_is_reused_without_training(trained):
    path, result = trained
    before = path.stat().st_mtime_ns
    model, loaded = load_or_train("unet", "fundus", ["domain1"], tiny(), seed=3, checkpoint_path=path)
    assert loaded and path.stat().st_mtime_ns == before
    for key, value in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("change, key", [
    ({"steps": 3}, "train.steps"),
    ({"profile": tiny(image_size=48)}, "data.image_size"),
    ({"seed": 4}, "train.seed"),
    ({"source": "real"}, "data.source"),
])
def test_a_checkpoint_of_another_run_is_not_reused(trained, tmp_path, change, key):
    path, _ = trained
    before = path.stat().st_mtime_ns
    kwargs = {"profile": tiny(), "seed": 3, **change}
    if change.get("source") == "real":
        kwargs["root"] = make_fundus_tree(tmp_path / "data")
    with pytest.raises(RunMismatchError, match=rf"Cannot resume .*{key}: "):
        load_or_train("unet", "fundus", ["domain1"], checkpoint_path=path, **kwargs)
    assert path.stat().st_mtime_ns == before  # refused before any training: the finished run is intact


def test_record_differences_name_every_setting():
    a = {"task": "fundus", "model": {"name": "unet", "config": {"k": [1, 2]}}, "data": {"source": "synthetic"},
         "train": {"steps": 30}, "profile": "ci", "versions": {"torch": "1"}}
    b = {**a, "train": {"steps": 10}, "model": {"name": "unet", "config": {"k": [1, 3]}}, "versions": {"torch": "2"}}
    assert record_differences(a, b) == ["model.config.k: [1, 2] in the checkpoint, [1, 3] requested",
                                        "train.steps: 30 in the checkpoint, 10 requested"]
    assert record_differences(a, {**a, "versions": {}}) == []  # versions do not make another run


def test_a_ci_checkpoint_is_evaluated_at_its_own_image_size(trained, monkeypatch):
    import emclip.data

    path, _ = trained
    sizes = []
    real_get_dataset = emclip.data.get_dataset

    def spy(task, domain, split="train", source="synthetic", size=128, seed=0, root=None, n=None):
        sizes.append((split, size, n))
        return real_get_dataset(task, domain, split, source, size, seed, root, n)

    monkeypatch.setattr(emclip.data, "get_dataset", spy)
    monkeypatch.setenv("EMCLIP_PROFILE", "cpu")  # the current profile says 96 px and 32 test images
    table = evaluate_checkpoints([path], "fundus", domains=["domain1", "domain2"])
    assert set(sizes) == {("test", 32, 2)}
    assert (table.n == 2).all() and set(table.method) == {"unet"} and set(table.seed) == {3}
    assert set(table[table.in_domain].target_domain) == {"domain1"}  # from the record, not the file name


def test_run_protocol_adopts_only_a_checkpoint_of_the_same_run(trained, tmp_path, capsys):
    import shutil

    from emclip.engine import checkpoint_name
    from emclip.evaluation import run_protocol

    path, _ = trained
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(path, shared / checkpoint_name("fundus", "unet", ["domain1"], "ci", seed=3))
    kwargs = dict(seeds=[3], splits=["1->234"], reuse_from=[shared], progress=False)
    run_protocol("fundus", "single-source", ["unet"], profile=tiny(), out_dir=tmp_path / "same", **kwargs)
    own = tmp_path / "same" / "checkpoints" / checkpoint_name("fundus", "unet", ["domain1"], "ci", seed=3)
    assert own.read_bytes() == path.read_bytes()  # adopted, not trained again
    run_protocol("fundus", "single-source", ["unet"], profile=tiny(train_steps=3), out_dir=tmp_path / "other",
                 **{**kwargs, "progress": True})
    other = tmp_path / "other" / "checkpoints" / own.name
    assert read_record(other)[0]["train"]["steps"] == 3  # trained: the shared one is another run
    captured = capsys.readouterr()
    assert "not reusing" in captured.out + captured.err


def test_config_tag_names_each_change_and_tells_dict_specs_apart():
    """Non-default runs get their own checkpoint file: a tag per change, a digest per dict spec."""
    from emclip.engine import checkpoint_name, config_tag

    assert config_tag({}) is None
    assert config_tag({"em": {"bases": 4, "iters": 1}}) == "em_bases4-em_iters1"
    narrow = config_tag({"train": {"augment": {"mode": "both", "gamma": [0.9, 1.1]}}})
    wide = config_tag({"train": {"augment": {"mode": "both", "gamma": [0.7, 1.4]}}})
    assert narrow != wide and narrow.startswith("train_augment") and len(narrow) == len("train_augment") + 8
    assert narrow == config_tag({"train": {"augment": {"gamma": [0.9, 1.1], "mode": "both"}}})  # key order
    name = checkpoint_name("fundus", "emclip", ["domain1"], "cpu", seed=0, tag=config_tag({"train": {"augment": "style"}}))
    assert name == "fundus_emclip_domain1_cpu_seed0_train_augmentstyle.pt"


def test_other_run_keep_sets_the_other_checkpoint_aside_and_trains(trained, tmp_path, capsys):
    """After a change of defaults a notebook's rerun neither fails nor loses the earlier run's file."""
    import shutil

    from emclip.engine import prepare_run

    path = tmp_path / "unet.pt"
    shutil.copy(trained[0], path)
    other = prepare_run("unet", "fundus", ["domain1"], tiny(), seed=4)  # another seed: another run
    with pytest.raises(RunMismatchError, match="train.seed"):
        other.train(path, progress=False)  # the default still refuses
    result = other.train(path, progress=False, other_run="keep")
    kept = tmp_path / "unet.other-run-1.pt"
    assert kept.is_file() and read_record(kept)[0]["train"]["seed"] == 3  # the earlier run, intact
    assert read_record(path)[0]["train"]["seed"] == 4 and result.steps_run == 2
    assert "kept it as unet.other-run-1.pt" in capsys.readouterr().out
    with pytest.raises(ValueError, match="other_run='drop'"):
        other.train(path, progress=False, other_run="drop")


def test_a_checkpoint_from_before_a_config_key_existed_still_loads(trained, tmp_path):
    """Keys added to the schema later are filled with the value that reproduces the older run."""
    from emclip.models.schema import upgrade_config

    old = {"arch": "emclip", "decoder": {"channels": [8]}}
    assert upgrade_config(old)["decoder"] == {"channels": [8], "stem_input": "centre"} and "stem_input" not in old["decoder"]
    assert upgrade_config({"arch": "emclip", "decoder": {"stem_input": "local"}})["decoder"]["stem_input"] == "local"
    ckpt = torch.load(trained[0], weights_only=True)
    assert ckpt["record"]["model"]["name"] == "unet"
    emclip_run = train_from_profile("emclip", "fundus", ["domain1"], profile=tiny(), seed=0,
                                    checkpoint_path=tmp_path / "em.pt", progress=False)
    ckpt = torch.load(tmp_path / "em.pt", weights_only=True)
    del ckpt["record"]["model"]["config"]["decoder"]["stem_input"]  # as written before the option existed
    torch.save(ckpt, tmp_path / "old.pt")
    model, record = load_run(tmp_path / "old.pt")
    assert model.decoder.stem.input_norm == "centre" and emclip_run.model.decoder.stem.input_norm == "local"


def test_run_protocol_with_other_run_keep_sets_a_stale_checkpoint_aside_then_adopts(trained, tmp_path, capsys):
    """A protocol's own stale checkpoint is renamed, then notebook 05's checkpoint of the same run is adopted."""
    import shutil

    from emclip.engine import checkpoint_name
    from emclip.evaluation import run_protocol

    shared = tmp_path / "shared"
    shared.mkdir()
    name = checkpoint_name("fundus", "unet", ["domain1"], "ci", seed=3)
    shutil.copy(trained[0], shared / name)  # the requested run, as another notebook saved it
    own = tmp_path / "own"
    own.mkdir()
    stale = own / name
    shutil.copy(trained[0], stale)
    ckpt = torch.load(stale, weights_only=True)
    ckpt["record"]["train"]["lr"] = 123.0  # another run at the same path
    torch.save(ckpt, stale)
    df = run_protocol("fundus", "single-source", ["unet"], seeds=[3], profile=tiny(), splits=["1->234"],
                      out_dir=tmp_path / "out", checkpoint_dir=own, reuse_from=[shared], progress=False,
                      other_run="keep")
    assert (own / name.replace(".pt", ".other-run-1.pt")).is_file()
    assert stale.read_bytes() == (shared / name).read_bytes() and len(df)  # adopted, not retrained
    assert "held another run; kept it as" in capsys.readouterr().out
