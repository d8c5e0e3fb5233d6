"""The run profile, device selection, seeding and print_config."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import emclip
from emclip.runtime import PROFILES, get_device, get_profile, seed_everything


def test_version_is_a_release_string():
    major, minor, patch = emclip.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


@pytest.mark.parametrize("name", ["ci", "cpu", "colab", "gpu"])
def test_named_profiles(name):
    profile = get_profile(name)
    assert profile.name == name
    assert profile.image_size % 16 == 0, "the input must tile into 16-pixel CLIP patches"
    assert profile.train_steps > 0 and profile.batch_size > 0


def test_profiles_grow_from_ci_to_gpu():
    ci, cpu, gpu = (PROFILES[n] for n in ("ci", "cpu", "gpu"))
    assert ci.image_size < cpu.image_size < gpu.image_size
    assert ci.train_steps < cpu.train_steps < gpu.train_steps


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("EMCLIP_PROFILE", "ci")
    assert get_profile().name == "ci"
    monkeypatch.setenv("EMCLIP_PROFILE", "auto")
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert get_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("cuda,colab,expected", [(True, True, "colab"), (True, False, "gpu"),
                                                 (False, True, "cpu"), (False, False, "cpu")])
def test_auto_picks_the_colab_profile_on_a_colab_gpu(monkeypatch, cuda, colab, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    if colab:
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20250101-060000_RC00")
    assert get_profile("auto").name == expected


def test_profiles_hold_data_sizes_and_one_visible_model_override():
    for field in ("clip_model", "clip_pretrained", "em_bases", "em_iters", "em_lam"):
        assert not hasattr(PROFILES["cpu"], field), f"{field} is a model setting: it lives in the model config"
    assert PROFILES["cpu"].model_overrides == {} and PROFILES["colab"].model_overrides == {}
    gpu = PROFILES["gpu"].model_overrides
    assert gpu["clip"] == {"model": "ViT-B-16", "pretrained": "random"}  # explicit: never "auto"
    colab = PROFILES["colab"]
    assert PROFILES["cpu"].image_size < colab.image_size < PROFILES["gpu"].image_size
    assert colab.train_steps < PROFILES["gpu"].train_steps // 4 and colab.num_workers <= 2


def test_unknown_profile_lists_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown run profile .laptop..*ci, cpu, colab, gpu, auto"):
        get_profile("laptop")
    monkeypatch.setenv("EMCLIP_PROFILE", "fast")
    with pytest.raises(ValueError, match="EMCLIP_PROFILE"):
        get_profile()


def test_profile_overrides_are_checked():
    assert get_profile("ci", train_steps=3).train_steps == 3
    assert get_profile("ci").train_steps != 3, "overrides must not leak into the shared profile"
    with pytest.raises(TypeError):
        get_profile("ci", no_such_field=1)


def test_get_device():
    assert get_device("cpu").type == "cpu"
    assert get_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert get_device("auto").type in {"cpu", "mps"}
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_print_config_names_versions_profile_and_device(capsys, monkeypatch):
    monkeypatch.setenv("EMCLIP_DATA_DIR", "/tmp/somewhere")
    emclip.print_config("ci")
    out = capsys.readouterr().out
    assert f"emclip version:         {emclip.__version__}" in out
    assert "Run profile:            ci" in out and "model overrides: em=" in out
    assert "torch version:" in out and torch.__version__ in out
    assert "/tmp/somewhere" in out
