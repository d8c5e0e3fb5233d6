"""Pretraining: exact resume, CPU determinism, held-out retrieval, checkpoints, the CLI."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from emclip.clip.pretrain.corpus import LazyCorpus
from emclip.clip.pretrain.train import PretrainConfig, batch_indices, lr_factor, pretrain
from emclip.errors import CheckpointError, ConfigError

SMALL = PretrainConfig(corpus_size=24, batch_size=8, steps=4, warmup_steps=1, checkpoint_every=2, eval_every=2,
                       eval_pairs=8, dense_weight=0.0)


def _run(tmp_path, name, config=SMALL, **kwargs):
    corpus = LazyCorpus(config.corpus_size, config.image_size, config.corpus_seed)
    return pretrain(config, checkpoint_path=tmp_path / name, progress=False, corpus=corpus, held_out=False, **kwargs)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run stopped after its step-2 checkpoint, as a kill would leave it."""
    folder = tmp_path_factory.mktemp("pretrain")
    return folder, _run(folder, "split.pt", stop_after=2)


def test_killed_and_resumed_run_ends_bit_identical(tmp_path, killed_run):
    folder, first = killed_run
    assert len(first.history) == 2
    full = _run(tmp_path, "full.pt")
    resumed = _run(folder, "split.pt")
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    assert full.history[0]["loss"] != full.history[-1]["loss"]
    other_seed = _run(tmp_path, "c.pt", config=dataclasses.replace(SMALL, seed=1), stop_after=2)
    assert [r["loss"] for r in other_seed.history] != [r["loss"] for r in full.history[:2]]


def test_resume_refuses_another_recipe(killed_run):
    folder, _ = killed_run
    with pytest.raises(CheckpointError, match="another pretraining run.*lr"):
        _run(folder, "split.pt", config=dataclasses.replace(SMALL, lr=1e-3))


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        _run(tmp_path, "bad.pt")


def test_held_out_retrieval_is_recorded(tmp_path):
    config = dataclasses.replace(SMALL, steps=2)
    result = pretrain(config, progress=False, corpus=LazyCorpus(config.corpus_size, 64, 0))
    row = result.history[-1]
    assert 0 <= row["i2t"] <= 1 and 0 <= row["t2i"] <= 1 and 0 < row["chance"] < 1


def test_schedule_and_batches():
    config = PretrainConfig(corpus_size=100, batch_size=30, steps=10, warmup_steps=2)
    assert lr_factor(0, config) == 0.5 and lr_factor(1, config) == 1.0 and lr_factor(10, config) == 0.0
    epoch0 = [batch_indices(s, config) for s in range(3)]
    seen = set().union(*[set(b.tolist()) for b in epoch0])
    assert len(seen) == 90  # 3 full batches, no repeats inside an epoch (drop-last)
    assert not (batch_indices(3, config) == epoch0[0]).all()  # the next epoch is reshuffled


@pytest.mark.parametrize("change", [{"steps": 0}, {"image_size": 60}, {"batch_size": 500}, {"lr": -1.0}])
def test_bad_config_raises(change):
    with pytest.raises(ConfigError):
        dataclasses.replace(SMALL, **change)


def test_wrong_image_size_for_the_model_raises(tmp_path):
    with pytest.raises(ConfigError, match="input size 64"):
        _run(tmp_path, "x.pt", config=dataclasses.replace(SMALL, image_size=96))


def test_cli_flags_match_the_recipe_fields():
    from emclip.cli.pretrain import RECIPE_FLAGS

    fields = {f.name: type(getattr(PretrainConfig(), f.name)) for f in dataclasses.fields(PretrainConfig)}
    assert RECIPE_FLAGS == fields


def test_cli_pretrain_writes_weights_record_and_card(tmp_path, monkeypatch, capsys):
    import json

    from emclip.cli import main
    from emclip.clip import load_clip
    from emclip.clip.loading import file_sha256

    out = tmp_path / "w.safetensors"
    code = main(["pretrain", "--corpus-size", "16", "--batch-size", "8", "--steps", "2", "--warmup-steps", "1",
                 "--eval-pairs", "8", "--out", str(out), "--card", str(tmp_path / "card.md"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "w.safetensors.json").read_text())
    assert record["sha256"] == file_sha256(out) and len(record["loss_trace"]) == 2
    assert "--steps 2" in record["command"] and record["versions"]["open_clip_torch"]
    card = (tmp_path / "card.md").read_text()
    assert record["sha256"] in card and "never saw" in card
    loaded = load_clip("emclip-tiny", str(out), sha256=record["sha256"])
    assert not loaded.is_random
    assert "retrieval top-1" in capsys.readouterr().out


def test_joint_forward_matches_encode_image_and_the_value_path():
    from emclip.clip import CLIPDenseEncoder, load_clip
    from emclip.clip.pretrain.dense_loss import joint_forward

    bundle = load_clip("emclip-tiny", "random", seed=4)
    encoder = CLIPDenseEncoder(bundle.model, frozen=False)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    glob, dense = joint_forward(encoder, images)
    with torch.no_grad():
        torch.testing.assert_close(glob, bundle.model.encode_image((images - encoder.mean) / encoder.std))
        torch.testing.assert_close(dense, encoder.dense_embeddings(images).flatten(2).transpose(1, 2))


@pytest.mark.parametrize("name", ["pacl", "mean"])
def test_dense_terms_prefer_matching_pairs(name):
    from emclip.clip.pretrain.dense_loss import mean_pool_loss, pacl_loss

    loss = {"pacl": pacl_loss, "mean": mean_pool_loss}[name]
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    noise = torch.randn(4, 6, 8, generator=g)
    matching = text[:, None, :] * 3 + 0.1 * noise  # the patches of image i resemble caption i
    shuffled = matching[[1, 2, 3, 0]]
    scale = torch.tensor(10.0)
    assert loss(matching, text, scale) < 0.1 < loss(shuffled, text, scale)


def test_dense_weight_adds_the_dense_term(tmp_path):
    plain = _run(tmp_path, "plain.pt", stop_after=1)
    dense = _run(tmp_path, "dense.pt", config=dataclasses.replace(SMALL, dense_weight=1.0, dense_loss="mean"),
                 stop_after=1)
    assert dense.history[0]["loss"] > plain.history[0]["loss"] + 1.0  # ClipLoss + about ln(batch) more


@pytest.mark.slow
def test_cli_run_killed_mid_run_resumes_to_identical_weights(tmp_path):
    """A real kill (SIGKILL of `emclip pretrain` after its first checkpoint), then the same command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    args = ["--corpus-size", "48", "--batch-size", "8", "--steps", "12", "--warmup-steps", "2",
            "--checkpoint-every", "2", "--eval-pairs", "8", "--eval-every", "100", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(name, checkpoint):
        return [sys.executable, "-m", "emclip", "pretrain", *args, "--out", str(tmp_path / f"{name}.safetensors"),
                "--checkpoint", str(tmp_path / checkpoint)]

    subprocess.run(command("full", "full.pt"), check=True, env=env)
    proc = subprocess.Popen(command("killed", "killed.pt"), env=env)
    deadline = time.time() + 600
    while not (tmp_path / "killed.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.safetensors").exists()  # it did not finish
    subprocess.run(command("killed", "killed.pt"), check=True, env=env)
    full, resumed = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "killed.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_where_term_rewards_the_place_the_caption_names():
    """Patches that resemble the caption only where its words say the thing is: lower loss than
    the same patches in the opposite corner; a caption without a place falls back to mean pooling."""
    from emclip.clip.pretrain.dense_loss import caption_regions, mean_pool_loss, where_loss

    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    captions = ["a disc in the upper left.", "a heart on the right.", "a ring in the centre.", "a square at the bottom."]
    regions = caption_regions(captions, 6, 6)
    noise = 0.1 * torch.randn(4, 36, 8, generator=g)
    named = noise + 3 * regions[:, :, None] * text[:, None, :]  # image i shows caption i where caption i says
    elsewhere = noise + 3 * regions.flip(1)[:, :, None] * text[:, None, :]  # ... in the point-mirrored place
    scale = torch.tensor(10.0)
    assert where_loss(named, text, scale, regions) + 1.0 < where_loss(elsewhere, text, scale, regions)
    unplaced = caption_regions(["a fundus photograph."] * 4, 6, 6)
    assert unplaced.sum() == 0
    torch.testing.assert_close(where_loss(named, text, scale, unplaced), mean_pool_loss(named, text, scale))
    with pytest.raises(ValueError, match="regions"):
        where_loss(named, text, scale, regions[:, :30])
