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


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu"])
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
    assert get_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_lists_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown run profile 'laptop'.*ci, cpu, gpu, auto"):
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
    assert "Run profile:            ci" in out
    assert "torch version:" in out and torch.__version__ in out
    assert "/tmp/somewhere" in out
