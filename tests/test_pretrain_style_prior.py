"""The style prior: broad, reproducible, and never within the hold-out distance of a benchmark style."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emclip.data import style_prior as sp
from emclip.data.styles import STYLES
from emclip.errors import ConfigError, InputError


def test_many_samples_keep_the_stated_distance_from_all_eight_benchmark_styles():
    rng = np.random.default_rng(0)
    styles = [sp.sample_style(rng, grey=bool(i % 2)) for i in range(3000)]
    held = np.stack([sp.style_vector(s) for s in sp.benchmark_styles().values()])
    assert held.shape == (8, len(sp.STYLE_AXES))
    vectors = np.stack([sp.style_vector(s) for s in styles])
    distances = np.sqrt(((vectors[:, None] - held[None]) ** 2).mean(-1))  # computed here, not by the module
    assert distances.min() >= sp.HELD_OUT_DISTANCE


def test_the_hold_out_is_not_vacuous():
    """Without the constraint, a visible share of draws would come closer than the stated distance."""
    rng = np.random.default_rng(1)
    free = [sp.held_out_distance(sp.sample_style(rng, grey=True, min_distance=0.0)) for _ in range(1500)]
    assert np.mean(np.array(free) < sp.HELD_OUT_DISTANCE) > 0.01
    for style in sp.benchmark_styles().values():  # the metric sees each benchmark style at distance 0
        assert sp.held_out_distance(style) == pytest.approx(0.0, abs=1e-12)


def test_prior_ranges_cover_every_benchmark_parameter():
    """The prior is broader than the benchmark: each held-out value lies inside its range."""
    for table in STYLES.values():
        for style in table.values():
            vec = sp.style_vector(style)
            assert (vec >= 0).all() and (vec <= 1).all(), style.name
            assert sp.PRIOR_RANGES["scale"][0] <= style.scale <= sp.PRIOR_RANGES["scale"][1]


def test_sampling_is_reproducible_and_varied():
    a = [sp.sample_style(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(8)
    many = [sp.sample_style(rng) for _ in range(200)]
    gains = np.array([s.gain for s in many])
    assert gains.std(axis=0).min() > 0.2  # independent colour casts per channel
    assert {s.noise for s in many} == {"gaussian", "rician"}
    assert any(s.fov is None for s in many) and any(s.fov is not None for s in many)
    grey = sp.sample_style(rng, grey=True)
    assert grey.gain[0] == grey.gain[1] == grey.gain[2] and grey.fov is None


def test_distance_is_rms_of_normalised_coordinates():
    a, b = STYLES["fundus"]["domain1"], STYLES["fundus"]["domain2"]
    lo, hi = sp.PRIOR_RANGES["contrast"]
    expected_contrast_term = ((a.contrast - b.contrast) / (hi - lo)) ** 2
    manual = np.mean((sp.style_vector(a) - sp.style_vector(b)) ** 2)
    assert sp.style_distance(a, b) == pytest.approx(math.sqrt(manual))
    index = sp.STYLE_AXES.index("contrast")
    assert (sp.style_vector(a)[index] - sp.style_vector(b)[index]) ** 2 == pytest.approx(expected_contrast_term)


def test_bad_min_distance_and_impossible_request_raise():
    with pytest.raises(ConfigError, match="min_distance"):
        sp.sample_style(np.random.default_rng(0), min_distance=0.9)
    with pytest.raises(ConfigError, match="lower min_distance"):
        sp.sample_style(np.random.default_rng(0), min_distance=0.49, max_tries=5)


def test_apply_style_keeps_shape_and_grey_stays_grey():
    rng = np.random.default_rng(3)
    colour = rng.random((3, 32, 32)).astype(np.float32)
    grey = np.repeat(rng.random((1, 32, 32)).astype(np.float32), 3, axis=0)
    style = sp.sample_style(rng)
    out = sp.apply_style(colour, style, np.random.default_rng(4))
    assert out.shape == colour.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert not np.allclose(out, colour)
    grey_out = sp.apply_style(grey, style, np.random.default_rng(4))
    assert np.array_equal(grey_out[0], grey_out[1]) and np.array_equal(grey_out[1], grey_out[2])
    assert sp.apply_style(grey[:1], style, np.random.default_rng(4)).shape == (1, 32, 32)


def test_apply_style_rejects_bad_input():
    style = sp.sample_style(np.random.default_rng(0))
    with pytest.raises(InputError, match="batch"):
        sp.apply_style(np.zeros((2, 3, 8, 8), np.float32), style, np.random.default_rng(0))
    bad = np.zeros((3, 8, 8), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        sp.apply_style(bad, style, np.random.default_rng(0))


def test_style_augment_is_seeded_per_batch_and_keeps_grey_images_grey():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=gen)
    images[2:] = images[2:, :1].expand(-1, 3, -1, -1)  # two grey images
    a = sp.style_augment(images, torch.Generator().manual_seed(5))
    b = sp.style_augment(images, torch.Generator().manual_seed(5))
    c = sp.style_augment(images, torch.Generator().manual_seed(6))
    assert a.shape == images.shape and a.dtype == images.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[2, 0], a[2, 1]) and torch.equal(a[3, 1], a[3, 2])
    assert not torch.equal(a[0, 0], a[0, 1])
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        sp.style_augment(images[0], torch.Generator())
