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
