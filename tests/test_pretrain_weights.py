"""The shipped weights: registered, checked, the offline default, reproducible from their recipe."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from emclip.clip import load_clip
from emclip.clip import weights as shipped
from emclip.clip.loading import WeightsMismatchError
from emclip.clip.pretrain.corpus import LazyCorpus
from emclip.clip.pretrain.train import PretrainConfig, pretrain
from emclip.models import create_model

NAME, TAG = "emclip-tiny", "synth-v2"
ENTRY = shipped.shipped_entry(NAME, TAG)


def test_registered_file_card_digest_and_size():
    assert ENTRY is not None and (NAME, TAG) in shipped.list_shipped_weights()
    path = shipped.WEIGHTS_DIR / ENTRY["file"]
    assert path.suffix == ".safetensors" and path.stat().st_size <= 20e6
    assert shipped.file_sha256(path) == ENTRY["sha256"] and len(ENTRY["sha256"]) == 64
    card = (shipped.WEIGHTS_DIR / ENTRY["card"]).read_text()
    for needle in (ENTRY["sha256"], "never saw", "Command", "emclip pretrain", "Time"):
        assert needle in card, needle


def test_offline_default_is_the_pretrained_model_and_random_is_the_control():
    default, named, random_init, none = load_clip(), load_clip(NAME, TAG), load_clip(NAME, "random"), load_clip(NAME, None)
    assert default.pretrained == TAG and not default.is_random and "synth-v2" in default.note
    assert random_init.is_random and random_init.pretrained is None and none.is_random
    key = "visual.conv1.weight"
    assert torch.equal(default.model.state_dict()[key], named.model.state_dict()[key])
    assert torch.equal(random_init.model.state_dict()[key], none.model.state_dict()[key])
    assert not torch.equal(default.model.state_dict()[key], random_init.model.state_dict()[key])
    assert default.model_id == "emclip-tiny:synth-v2" and random_init.model_id == "emclip-tiny:random"


def test_a_corrupted_or_missing_file_is_refused(tmp_path, monkeypatch):
    for name in (ENTRY["file"], "registry.json"):
        shutil.copy(shipped.WEIGHTS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / ENTRY["file"]).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensor data
    (tmp_path / ENTRY["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr("emclip.clip.loading.WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsMismatchError, match="SHA256 mismatch.*reinstall emclip"):
        load_clip(NAME, TAG)
    with pytest.raises(WeightsMismatchError, match="SHA256 mismatch"):  # also through a model config
        create_model("emclip", "fundus", profile="ci")
    (tmp_path / ENTRY["file"]).unlink()
    with pytest.raises(FileNotFoundError, match="Reinstall emclip"):
        load_clip(NAME, TAG)


def test_unknown_tag_of_a_tiny_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="synth-v2, random"):
        load_clip(NAME, "synth-v0")


def test_first_steps_of_the_recipe_reproduce_the_recorded_loss_trace():
    """Re-run the shipped recipe's first steps (only the scenes those batches use are rendered)."""
    config = PretrainConfig(**ENTRY["config"])
    steps = 2
    corpus = LazyCorpus(config.corpus_size, config.image_size, config.corpus_seed)
    result = pretrain(config, corpus=corpus, stop_after=steps, held_out=False, progress=False)
    losses = [row["loss"] for row in result.history]
    np.testing.assert_allclose(losses, ENTRY["loss_trace"][:steps], rtol=2e-4)


@pytest.mark.parametrize(("model", "expected"), [("emclip", TAG), ("clip-linear", TAG), ("emclip-no-em", TAG),
                                                 ("emclip-no-text", TAG), ("emclip-random", "random")])
def test_model_configs_default_to_the_shipped_weights_and_keep_a_random_control(model, expected):
    built = create_model(model, "fundus", profile="ci")
    assert built.config["clip"]["pretrained"] == expected
    reference = load_clip(NAME, TAG if expected == TAG else "random")
    key = "conv1.weight"
    assert torch.equal(built.encoder.visual.state_dict()[key], reference.model.visual.state_dict()[key])
    assert ("synth-v2" in built.clip_note) == (expected == TAG)


def test_pretrain_defaults_are_the_shipped_recipe():
    assert PretrainConfig().as_dict() == ENTRY["config"]


def test_zero_shot_margin_over_the_background_prompt_is_positive_on_held_out_styles():
    """The shipped weights' disc and LV prompts beat the background prompt inside their regions on
    the benchmark's held-out styles (4 test images per domain, 64 px); the random control does not."""
    from emclip.clip.pretrain.evaluate import benchmark_images, zero_shot_contrast

    pretrained, random_init = load_clip(NAME, TAG), load_clip(NAME, "random")
    for task, region in (("fundus", "disc"), ("cardiac", "LV")):
        images, masks, _ = benchmark_images(task, 64, 4)
        margin = {name: zero_shot_contrast(b.model, b.tokenizer, task, images, masks, against_background=True)
                  for name, b in (("pretrained", pretrained), ("random", random_init))}
        assert set(margin["pretrained"]) == ({"disc", "cup"} if task == "fundus" else {"LV", "MYO", "RV"})
        assert margin["pretrained"][region] > 0.05 > abs(margin["random"][region]), (task, margin)
