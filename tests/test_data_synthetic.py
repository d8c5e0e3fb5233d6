"""Synthetic multi-centre generators: contract, determinism, anatomy, styles, shift, cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from emclip.data import STYLES, get_dataset, render_sample, style_table
from emclip.data.cache import SampleCache
from emclip.data.render import apply_gamma, apply_style, gaussian_matrix, sample_rng, smooth_noise
from emclip.data.shift import domain_classifier_accuracy, pixel_segmenter_shift, shift_summary
from emclip.data.styles import get_style
from emclip.data.synthetic import SyntheticDataset
from emclip.data.synthetic_fundus import vessel_map
from emclip.tasks import get_task


@pytest.mark.parametrize("task", ["fundus", "cardiac"])
def test_sample_contract_every_domain(task):
    spec = get_task(task)
    for domain in spec.domains:
        sample = get_dataset(task, domain, "train", size=48, n=2)[1]
        volume_keys = {"volume", "slice", "spacing", "slice_thickness"} if task == "cardiac" else set()
        assert set(sample) == {"image", "mask", "domain", "id"} | volume_keys
        image, mask = sample["image"], sample["mask"]
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        assert mask.shape == (48, 48) and mask.dtype == torch.int64
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        spec.check_mask(mask)
        assert sample["domain"] == domain and domain in sample["id"]
        assert {1, 2} <= set(mask.unique().tolist())  # rim+cup / LV+MYO always present


def test_grey_mri_is_repeated_to_three_channels():
    image = get_dataset("cardiac", "C", n=1, size=32)[0]["image"]
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_deterministic_per_task_domain_split_index_seed():
    a, m1 = render_sample("fundus", "domain2", "train", 7, 3, 40)
    b, m2 = render_sample("fundus", "domain2", "train", 7, 3, 40)
    assert np.array_equal(a, b) and np.array_equal(m1, m2)
    for other in [("domain2", "train", 8, 3), ("domain2", "train", 7, 4), ("domain2", "test", 7, 3)]:
        c, _ = render_sample("fundus", *other, 40)
        assert not np.array_equal(a, c), other


def test_cup_to_disc_ratio_range_and_disc_near_centre():
    cdrs, centres = [], []
    for i in range(40):
        _, mask = render_sample("fundus", "domain1", "train", i, 0, 96)
        disc_rows = np.flatnonzero((mask > 0).any(1))
        cup_rows = np.flatnonzero((mask == 2).any(1))
        cdrs.append(len(cup_rows) / len(disc_rows))
        centres.append(np.argwhere(mask > 0).mean(0) / 96)
    cdrs, centres = np.array(cdrs), np.array(centres)
    assert cdrs.min() > 0.2 and cdrs.max() < 0.9 and cdrs.max() - cdrs.min() > 0.3
    assert np.all(np.abs(centres - 0.5) < 0.15)


def test_vessels_leave_the_disc_and_cross_the_rim():
    size = 96
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    opacity = vessel_map(sample_rng("fundus", "domain1", "train", 0, 0), size, np.array([0.0, 0.0]), 0.3)
    inside, ring = (yy**2 + xx**2) < 0.25**2, np.abs(np.sqrt(yy**2 + xx**2) - 0.3) < 0.03
    outside = (yy**2 + xx**2) > 0.6**2
    assert opacity[inside].max() > 0.5 and opacity[ring].max() > 0.5 and opacity[outside].max() > 0.5
    assert 0.02 < (opacity > 0.5).mean() < 0.35  # a tree, not a flood


def test_cardiac_anatomy_ring_and_rv_presence():
    has_rv = 0
    for i in range(30):
        _, mask = render_sample("cardiac", "A", "train", i, 0, 64)
        lv = mask == 1
        grown = ndimage.binary_dilation(lv, iterations=1)
        assert np.all(np.isin(mask[grown], [1, 2])), "the myocardium must enclose the LV"
        has_rv += int((mask == 3).any())
    assert 10 < has_rv < 30  # RV usually present, absent at some apical slices


def test_domains_differ_in_appearance():
    means = {}
    for domain in ("domain1", "domain2", "domain3", "domain4"):
        imgs = np.stack([render_sample("fundus", domain, "train", i, 0, 48)[0] for i in range(6)])
        means[domain] = imgs.mean(axis=(0, 2, 3))
    values = list(means.values())
    gaps = [np.abs(a - b).max() for k, a in enumerate(values) for b in values[k + 1:]]
    assert min(gaps) > 0.04, means


def test_rician_noise_floor_matches_scipy_rice():
    style = dataclasses.replace(get_style("cardiac", "D"), illumination=0.0, blur=0.0, resolution=1.0, gamma=1.0,
                                offset=0.0, contrast=1.0, gain=(1.0, 1.0, 1.0))
    out = apply_style(np.zeros((1, 128, 128), np.float32), style, np.random.default_rng(0), mri=True)
    expected = stats.rice(0.0, scale=style.noise_sigma).mean()  # Rayleigh mean sigma*sqrt(pi/2)
    assert abs(out.mean() - expected) < 0.03 * expected


def test_blur_matrix_matches_scipy_gaussian_filter_in_the_interior():
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    mat = gaussian_matrix(64, 2.0)
    ours = mat @ image @ mat.T
    ref = ndimage.gaussian_filter(image, 2.0, truncate=8.0)
    assert np.allclose(ours[12:-12, 12:-12], ref[12:-12, 12:-12], atol=1e-4)


def test_gamma_lut_and_smooth_noise():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    assert np.allclose(apply_gamma(x, 1.4), x**1.4, atol=2e-3)
    field = smooth_noise(np.random.default_rng(1), 64, 5)
    assert field.shape == (64, 64) and abs(field.std() - 1) < 1e-3
    assert np.abs(np.diff(field, axis=1)).mean() < 0.2  # smooth (white noise would give ~1.1)


def test_style_table_is_data():
    for task in ("fundus", "cardiac"):
        table = style_table(task)
        assert list(table.index) == list(get_task(task).domains) == list(STYLES[task])
        assert {"gamma", "contrast", "noise", "blur", "illumination"} <= set(table.columns)
    assert set(style_table("cardiac")["noise"]) == {"rician"}
    with pytest.raises(ValueError, match="Valid domains"):
        get_style("fundus", "A")


def test_cache_round_trip(tmp_path):
    cached = SyntheticDataset("cardiac", "B", "val", 2, size=32, cache=SampleCache(tmp_path))
    first = cached[1]
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = cached[1]
    plain = SyntheticDataset("cardiac", "B", "val", 2, size=32)[1]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["image"], plain["image"])
    assert torch.equal(first["mask"], plain["mask"])


def test_domain_shift_is_measurable():
    acc = domain_classifier_accuracy("fundus", n_per_domain=8, size=32, folds=2)
    assert acc["accuracy"] > acc["chance"] + 0.4
    for task in ("fundus", "cardiac"):
        domains = get_task(task).domains
        frame = pixel_segmenter_shift(task, train_domains=domains[:1], n_train=4, n_test=3, size=40, pixels=8000)
        summary = shift_summary(frame)
        assert summary["dice_drop"] > 0.15, (task, summary)


def test_viz_functions_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from emclip.viz.data import plot_domain_grid, plot_intensity_histograms, plot_style_table

    fig = plot_domain_grid("cardiac", n_per_domain=1, size=32)
    assert len(fig.axes) == 4
    fig2 = plot_intensity_histograms("fundus", n_per_domain=2, size=32)
    assert len(fig2.axes) >= 3
    fig3 = plot_style_table("fundus")
    fig3.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_exercise_checker_rician():
    from emclip.exercises.data import check_rician_noise

    def rician(image, sigma, rng):
        return np.hypot(image + sigma * rng.standard_normal(image.shape), sigma * rng.standard_normal(image.shape))

    assert "Rice" in check_rician_noise(rician)
    with pytest.raises(AssertionError, match="Rician mean"):
        check_rician_noise(lambda image, sigma, rng: np.abs(image + sigma * rng.standard_normal(image.shape)))


def _lv_centroid(mask):
    return np.argwhere(mask == 1).mean(0)


def test_cardiac_samples_are_stacks_of_slices_base_to_apex():
    """Every 8 consecutive samples form one volume: same phase and heart, LV shrinking to the apex,
    the RV gone from some apical slices, and the volume keys of the sample contract."""
    from emclip.data.synthetic_cardiac import FIELD_OF_VIEW_MM, SLICE_THICKNESS_MM, SLICES_PER_VOLUME

    size, n_volumes = 64, 6
    ds = get_dataset("cardiac", "B", "test", size=size, n=n_volumes * SLICES_PER_VOLUME, seed=3)
    samples = [ds[i] for i in range(len(ds))]
    volumes = [s["volume"] for s in samples]
    assert len(set(volumes)) == n_volumes and volumes[0] == "syn-cardiac-B-test-s3-v0000"
    assert [s["slice"] for s in samples[:SLICES_PER_VOLUME]] == list(range(SLICES_PER_VOLUME))
    assert torch.allclose(samples[0]["spacing"], torch.full((2,), FIELD_OF_VIEW_MM / size))
    assert float(samples[0]["slice_thickness"]) == SLICE_THICKNESS_MM
    apical_without_rv = 0
    for v in range(n_volumes):
        stack = [s["mask"].numpy() for s in samples[v * SLICES_PER_VOLUME:(v + 1) * SLICES_PER_VOLUME]]
        lv_area = np.array([(m == 1).sum() for m in stack])
        assert lv_area[0] > 1.5 * lv_area[-1] and np.all(np.diff(lv_area) < 0.1 * lv_area[0])  # shrinks to the apex
        centres = np.array([_lv_centroid(m) for m in stack])
        assert np.abs(centres - centres[0]).max() < 0.12 * size  # one heart, not eight random ones
        rv = [(m == 3).any() for m in stack]
        assert all(rv[:4]), "basal and mid slices show the RV"
        apical_without_rv += int(not rv[-1])
    assert apical_without_rv >= n_volumes // 2


def test_cardiac_volumes_are_deterministic_and_differ_between_seeds():
    a = [render_sample("cardiac", "A", "train", i, 0, 32)[1] for i in range(8, 16)]
    b = [render_sample("cardiac", "A", "train", i, 0, 32)[1] for i in range(8, 16)]
    c = [render_sample("cardiac", "A", "train", i, 1, 32)[1] for i in range(8, 16)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_cardiac_per_slice_statistics_stay_sensible():
    """The per-slice view of the stacks: RV absent in about a quarter of the slices (the apical ones),
    LV and MYO always present, the LV covering a plausible part of the image."""
    masks = np.stack([render_sample("cardiac", d, "train", i, 0, 48)[1] for d in "ABCD" for i in range(32)])
    no_rv = 1 - (masks == 3).any(axis=(1, 2)).mean()
    assert 0.1 < no_rv < 0.4, no_rv
    assert (masks == 1).any(axis=(1, 2)).all() and (masks == 2).any(axis=(1, 2)).all()
    lv_fraction = (masks == 1).mean(axis=(1, 2))  # per-slice generator before the stacks: 0.13 % .. 3 %, median 0.7 %
    assert 0.0005 < lv_fraction.min() and 0.004 < np.median(lv_fraction) < 0.015 and lv_fraction.max() < 0.06
