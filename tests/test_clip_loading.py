"""load_clip: the tiny default, local weights files, offline fail-fast, the "auto" fall-back, the CLI."""

from __future__ import annotations

import time

import pytest
import torch

from emclip.clip import BIOMEDCLIP, TINY_MODEL, WeightsUnavailableError, load_clip
from emclip.clip import loading as clip_loading
from emclip.errors import ConfigError


def test_tiny_model_loads_and_encodes():
    bundle = load_clip(TINY_MODEL, "random")
    model, preprocess, tokenizer = bundle  # unpacks like open_clip
    assert bundle.name == TINY_MODEL and bundle.pretrained is None and bundle.is_random
    assert "RANDOM" in bundle.note
    image = model.encode_image(torch.rand(2, 3, 64, 64))
    text = model.encode_text(tokenizer(["a fundus photograph of the optic disc.", "the optic cup"]))
    assert image.shape == (2, bundle.embed_dim) and text.shape == (2, bundle.embed_dim)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()
    assert callable(preprocess)


def test_random_init_is_reproducible_per_seed():
    a, b, c = (load_clip(TINY_MODEL, "random", seed=s).model for s in (0, 0, 1))
    w = "visual.conv1.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_local_weights_file_round_trips(tmp_path):
    source = load_clip(TINY_MODEL, "random", seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = load_clip(TINY_MODEL, pretrained=str(path))  # default seed 0: the file must win
    assert not loaded.is_random and loaded.pretrained == str(path)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = source.tokenizer(["a cardiac MRI showing the left ventricle."])
    with torch.no_grad():
        assert torch.equal(loaded.model.encode_image(images), source.model.encode_image(images))
        assert torch.equal(loaded.model.encode_text(tokens), source.model.encode_text(tokens))
        assert not torch.equal(load_clip(TINY_MODEL, "random").model.encode_image(images),
                               source.model.encode_image(images))


def test_local_weights_sha256_is_verified(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(load_clip(TINY_MODEL, "random").model.state_dict(), path)
    digest = clip_loading.file_sha256(path)
    assert not load_clip(TINY_MODEL, pretrained=str(path), sha256=digest[:16]).is_random
    assert not load_clip(TINY_MODEL, pretrained=str(path), sha256=digest.upper()).is_random
    with pytest.raises(RuntimeError, match="SHA256 mismatch"):
        load_clip(TINY_MODEL, pretrained=str(path), sha256="0" * 64)


@pytest.mark.parametrize("bad", ["", "a", "0123456789abcde", "g" * 16, "0" * 65, "  "])
def test_sha256_must_be_a_real_digest_or_a_16_character_prefix(tmp_path, bad):
    """A one-character prefix used to pass any file, and '' skipped the check (issue 16)."""
    path = tmp_path / "tiny.pt"
    torch.save(load_clip(seed=1).model.state_dict(), path)
    with pytest.raises(ConfigError, match="at least its first 16"):
        load_clip(TINY_MODEL, pretrained=str(path), sha256=bad)
    with pytest.raises(ConfigError, match="at least its first 16"):
        clip_loading.verify_sha256(path, bad)


def test_cli_download_weights_checks_a_local_file(tmp_path, capsys):
    from emclip.cli import main

    path = tmp_path / "tiny.pt"
    torch.save(load_clip(seed=2).model.state_dict(), path)
    digest = clip_loading.file_sha256(path)
    assert main(["download-weights", TINY_MODEL, str(path), "--sha256", digest[:20]]) == 0
    assert digest in capsys.readouterr().out
    assert main(["download-weights", TINY_MODEL, str(path), "--sha256", "f" * 64]) == 2
    assert "SHA256 mismatch" in capsys.readouterr().err
    assert main(["download-weights", TINY_MODEL, str(path), "--sha256", digest[:4]]) == 2
    assert "at least its first 16" in capsys.readouterr().err
    assert main(["download-weights", TINY_MODEL, str(path)]) == 2
    assert "--sha256" in capsys.readouterr().err


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip(TINY_MODEL, pretrained=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize(("name", "tag"), [("ViT-B-16", "openai"), (BIOMEDCLIP, None)])
def test_offline_request_fails_fast_with_remedy(name, tag, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip(name, tag, cache_dir=tmp_path)  # empty cache: nothing to find
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"offline failure took {elapsed:.1f} s"
    message = str(info.value)
    assert "emclip download-weights" in message and TINY_MODEL in message
    assert "local weights file" in message and "connect" in message


def test_unreachable_host_fails_with_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(clip_loading, "_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        load_clip("ViT-B-16", "laion2b_s34b_b88k", cache_dir=tmp_path)


def test_auto_falls_back_to_tiny_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="CLIP FALL-BACK"):
        bundle = load_clip("ViT-B-16", "auto", cache_dir=tmp_path)
    # the fall-back is the tiny model with the kit's own shipped weights, not random init
    assert bundle.name == TINY_MODEL and bundle.pretrained == "synth-v2" and not bundle.is_random
    assert bundle.note.startswith("FALL-BACK") and "synth-v2" in bundle.note


def test_auto_uses_real_weights_when_available(tmp_path, monkeypatch):
    """The "auto" policy takes the real path, silently, when the weights load (here: a local file)."""
    import warnings

    path = tmp_path / "tiny.pt"
    torch.save(load_clip(TINY_MODEL, "random", seed=5).model.state_dict(), path)
    monkeypatch.setattr(clip_loading, "TINY_MODELS", ())  # treat the tiny config as a "real" model
    monkeypatch.setattr(clip_loading, "default_tag", lambda name: str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = load_clip(TINY_MODEL, "auto")
    assert not bundle.is_random and bundle.pretrained == str(path)


@pytest.mark.parametrize(("name", "tag", "match"), [
    ("ViT-Q-99", None, "Valid names"),
    ("ViT-B-16", "no-such-tag", "Valid tags"),
])
def test_bad_names_list_the_valid_ones(name, tag, match, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=match):
        load_clip(name, tag)


def test_cli_download_weights_fails_fast_offline(tmp_path, monkeypatch, capsys):
    from emclip.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    code = main(["download-weights", "ViT-B-16", "openai", "--cache-dir", str(tmp_path)])
    assert code == 2 and time.perf_counter() - start < 5.0
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
