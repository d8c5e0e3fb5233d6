"""emclip.metrics against MONAI (the independent reference) and against hand-computed cases.

MONAI's ``compute_dice`` / ``compute_hausdorff_distance(percentile=95)`` /
``compute_average_surface_distance(symmetric=True)`` are called one image at a time on
non-empty masks (where MONAI's numbers are defined); the empty-mask conventions and
single-pixel cases are checked against values worked out by hand.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from emclip.errors import InputError
from emclip.metrics import (
    SegmentationMetrics,
    VolumeMetrics,
    compute_assd,
    compute_dice,
    compute_hd95,
    compute_volume_metrics,
    image_diagonal,
    region_metrics,
    summarise_cases,
)


def _monai(fn, p, t, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn(torch.as_tensor(p)[None, None].float(), torch.as_tensor(t)[None, None].float(), **kwargs)
    return float(value[0, 0])


def ref_dice(p, t):
    from monai.metrics import compute_dice as monai_dice

    return _monai(monai_dice, p, t, include_background=True, ignore_empty=False)


def ref_hd95(p, t, spacing=(1.0, 1.0)):
    from monai.metrics import compute_hausdorff_distance

    return _monai(compute_hausdorff_distance, p, t, include_background=True, percentile=95, spacing=list(spacing))


def ref_assd(p, t, spacing=(1.0, 1.0)):
    from monai.metrics import compute_average_surface_distance

    return _monai(compute_average_surface_distance, p, t, include_background=True, symmetric=True,
                  spacing=list(spacing))


def _random_masks(seed: int, batch: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Blob-like random masks: smoothed noise thresholded, so that boundaries are non-trivial."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        noise = ndimage.gaussian_filter(rng.normal(size=(batch, size, size)), sigma=(0, 3, 3))
        out.append(noise > 0.02)
    return out[0], out[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_match_reference(seed):
    pred, target = _random_masks(seed)
    assert pred.any(axis=(1, 2)).all() and target.any(axis=(1, 2)).all()
    dice, hd95, assd = compute_dice(pred, target), compute_hd95(pred, target), compute_assd(pred, target)
    assert dice.shape == hd95.shape == assd.shape == (6,)
    for b in range(6):
        assert dice[b] == pytest.approx(ref_dice(pred[b], target[b]), abs=1e-6)
        assert hd95[b] == pytest.approx(ref_hd95(pred[b], target[b]), abs=1e-5)
        assert assd[b] == pytest.approx(ref_assd(pred[b], target[b]), abs=1e-5)
    assert (dice < 1).all() and (hd95 > 0).all()  # the masks really differ


def test_anisotropic_spacing_matches_reference():
    pred, target = _random_masks(7, batch=3)
    spacing = (2.0, 0.5)
    hd95 = compute_hd95(pred, target, spacing=spacing)
    assd = compute_assd(torch.from_numpy(pred), torch.from_numpy(target), spacing=spacing)
    for b in range(3):
        assert hd95[b] == pytest.approx(ref_hd95(pred[b], target[b], spacing), abs=1e-5)
        assert assd[b] == pytest.approx(ref_assd(pred[b], target[b], spacing), abs=1e-5)
    # an isotropic spacing s scales pixel distances by s
    np.testing.assert_allclose(compute_hd95(pred, target, spacing=3.0), 3.0 * compute_hd95(pred, target))


def test_known_small_case_by_hand():
    target = np.zeros((10, 10), bool)
    target[2:6, 2:6] = True  # a 4x4 square
    pred = np.zeros_like(target)
    pred[2:6, 4:8] = True  # the same square shifted 2 pixels right
    assert compute_dice(pred, target) == pytest.approx(2 * 8 / 32)
    assert isinstance(compute_dice(pred, target), float)  # (H, W) -> float
    # rows: each boundary of one square lies at most 2 px from the other's boundary
    assert compute_hd95(pred, target) == pytest.approx(ref_hd95(pred, target))
    assert 0 < compute_assd(pred, target) <= 2.0


def test_edge_cases_empty_masks():
    empty = np.zeros((2, 16, 20), bool)
    full = empty.copy()
    full[:, 4:9, 5:12] = True
    diag = math.hypot(16, 20)
    # both empty: perfect
    np.testing.assert_array_equal(compute_dice(empty, empty), [1.0, 1.0])
    np.testing.assert_array_equal(compute_hd95(empty, empty), [0.0, 0.0])
    np.testing.assert_array_equal(compute_assd(empty, empty), [0.0, 0.0])
    # empty prediction / empty target: Dice 0, distances = image diagonal (or NaN on request)
    for pred, target in ((empty, full), (full, empty)):
        np.testing.assert_array_equal(compute_dice(pred, target), [0.0, 0.0])
        np.testing.assert_allclose(compute_hd95(pred, target), [diag, diag])
        np.testing.assert_allclose(compute_assd(pred, target), [diag, diag])
        assert np.isnan(compute_hd95(pred, target, one_empty="nan")).all()
    # the diagonal follows the spacing
    assert compute_hd95(empty[0], full[0], spacing=(2.0, 1.0)) == pytest.approx(math.hypot(32, 20))
    assert image_diagonal((16, 20), (2.0, 1.0)) == pytest.approx(math.hypot(32, 20))


def test_single_pixel_cases():
    a = np.zeros((12, 12), bool)
    a[5, 5] = True
    assert compute_dice(a, a) == 1.0
    assert compute_hd95(a, a) == 0.0 and compute_assd(a, a) == 0.0
    b = np.zeros_like(a)
    b[5, 8] = True  # 3 px away
    assert compute_dice(a, b) == 0.0
    assert compute_hd95(a, b) == pytest.approx(3.0)
    assert compute_assd(a, b) == pytest.approx(3.0)
    assert compute_hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    # a pixel inside a square: distances to the square's boundary, as the reference computes them
    sq = np.zeros_like(a)
    sq[3:8, 3:8] = True
    assert compute_hd95(a, sq) == pytest.approx(ref_hd95(a, sq))
    assert compute_assd(a, sq) == pytest.approx(ref_assd(a, sq))


def test_mixed_batch_and_input_types():
    pred, target = _random_masks(3, batch=3)
    pred[1] = False  # one empty prediction inside a batch
    got = compute_hd95(torch.from_numpy(pred).float(), target.astype(np.uint8))
    assert got[1] == pytest.approx(math.hypot(32, 32))
    assert got[0] == pytest.approx(ref_hd95(pred[0], target[0]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        compute_dice(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="binary"):
        compute_dice(np.full((4, 4), 0.7), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="region_metrics"):
        compute_hd95(np.zeros((1, 2, 4, 4), bool), np.zeros((1, 2, 4, 4), bool))
    with pytest.raises(TypeError, match="numpy array"):
        compute_assd([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="spacing"):
        compute_hd95(np.ones((4, 4), bool), np.ones((4, 4), bool), spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="one_empty"):
        compute_hd95(np.ones((4, 4), bool), np.ones((4, 4), bool), one_empty="zero")


def test_region_metrics_and_accumulator():
    pred, target = _random_masks(5, batch=4)
    pred_r = torch.from_numpy(np.stack([pred, pred], 1))
    target_r = torch.from_numpy(np.stack([target, np.zeros_like(target)], 1))
    rows = region_metrics(pred_r, target_r, ["disc", "cup"], ids=list("abcd"), domains=["d1"] * 4)
    assert len(rows) == 8 and rows[0]["id"] == "a" and rows[1]["region"] == "cup"
    assert rows[0]["dice"] == pytest.approx(ref_dice(pred[0], target[0]))
    assert rows[1]["dice"] == 0.0  # empty cup target, non-empty prediction
    acc = SegmentationMetrics(["disc", "cup"])
    acc.update(pred_r[:2], target_r[:2], domains=["d1", "d1"])
    acc.update(pred_r[2:], target_r[2:], domains=["d2", "d2"])
    frame = acc.to_frame()
    assert list(frame.columns) == ["id", "domain", "region", "dice", "hd95", "assd", "miss"]
    assert frame["miss"].tolist() == [pred[b // 2].any() != (target[b // 2].any() if b % 2 == 0 else False)
                                      for b in range(8)]
    assert frame["id"].nunique() == 4 and len(frame) == 8
    summary = acc.aggregate()
    d1_disc = summary[(summary.domain == "d1") & (summary.region == "disc")].iloc[0]
    assert d1_disc["n"] == 2
    assert d1_disc["dice"] == pytest.approx(np.mean([ref_dice(pred[b], target[b]) for b in range(2)]))
    assert isinstance(summary, pd.DataFrame)
    with pytest.raises(ValueError, match="region names"):
        region_metrics(pred_r, target_r, ["disc"])


def _scipy_volume_distances(p, t, spacing):
    """Reference: boundary = mask minus its 3-D erosion, Euclidean distances with the voxel size."""
    bp, bt = p & ~ndimage.binary_erosion(p, border_value=0), t & ~ndimage.binary_erosion(t, border_value=0)
    d_pt = ndimage.distance_transform_edt(~bt, sampling=spacing)[bp]
    d_tp = ndimage.distance_transform_edt(~bp, sampling=spacing)[bt]
    return max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)), np.concatenate([d_pt, d_tp]).mean()


def _blob(shape, centre, radii):
    zz, yy, xx = np.indices(shape)
    return ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2 <= 1


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (8.0, 1.25, 1.25), (5.0, 0.7, 1.4)])
def test_volume_metrics_match_a_direct_3d_computation(spacing):
    pred = _blob((9, 24, 24), (4, 11, 12), (3, 6, 7))
    target = _blob((9, 24, 24), (5, 12, 10), (3, 7, 6))
    dice, hd95, assd = compute_volume_metrics(pred, target, spacing)
    ref_hd, ref_assd = _scipy_volume_distances(pred, target, spacing)
    assert dice == pytest.approx(2 * (pred & target).sum() / (pred.sum() + target.sum()))
    assert hd95 == pytest.approx(ref_hd, rel=1e-5) and assd == pytest.approx(ref_assd, rel=1e-5)
    assert compute_volume_metrics(pred, pred, spacing) == (1.0, 0.0, 0.0)
    empty = np.zeros_like(pred)
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing)))
    assert compute_volume_metrics(pred, empty, spacing) == (0.0, pytest.approx(diagonal), pytest.approx(diagonal))
    assert compute_volume_metrics(empty, empty, spacing) == (1.0, 0.0, 0.0)


def test_volume_dice_is_not_the_mean_of_slice_dice():
    """A slice where both masks are empty counts as Dice 1 per slice, and not at all in 3-D."""
    target = np.zeros((4, 8, 8), bool)
    target[0, 2:6, 2:6] = True  # the structure is on one slice only
    pred = np.zeros_like(target)
    pred[0, 2:6, 2:4] = True  # half of it found
    per_slice = compute_dice(torch.from_numpy(pred), torch.from_numpy(target))
    assert per_slice.tolist() == [pytest.approx(2 / 3), 1.0, 1.0, 1.0]
    assert compute_volume_metrics(pred, target, (5.0, 1.0, 1.0))[0] == pytest.approx(2 / 3)


def _stack_batches(pred, target, order, spacing=(1.5, 1.5), thickness=8.0, volume="P1-ED", domain="A"):
    """Batches of single slices of one volume, in ``order``: region masks (1, 1, H, W) + volume keys."""
    for z in order:
        yield (torch.from_numpy(pred[z])[None, None], torch.from_numpy(target[z])[None, None],
               {"volume": [volume], "slice": torch.tensor([z]), "spacing": torch.tensor([spacing]),
                "slice_thickness": torch.tensor([thickness]), "domain": [domain]})


def test_volume_accumulator_rebuilds_volumes_from_slices_in_any_order():
    pred = _blob((6, 20, 20), (2, 9, 9), (2, 5, 6))
    target = _blob((6, 20, 20), (3, 10, 10), (2, 6, 5))
    acc = VolumeMetrics(["LV"])
    for p, t, batch in _stack_batches(pred, target, [3, 0, 5, 1, 4, 2]):
        assert VolumeMetrics.applies_to(batch)
        acc.update(p, t, batch)
    row = acc.to_frame().iloc[0]
    assert (row["id"], row["domain"], row["region"], row["slices"]) == ("P1-ED", "A", "LV", 6)
    assert (row["dice"], row["hd95"], row["assd"]) == compute_volume_metrics(pred, target, (8.0, 1.5, 1.5))
    gap = VolumeMetrics(["LV"])
    for p, t, batch in _stack_batches(pred, target, [0, 1, 3]):
        gap.update(p, t, batch)
    with pytest.raises(InputError, match=r"slices \[0, 1, 3\].*whole test split"):
        gap.to_frame()
    twice = VolumeMetrics(["LV"])
    with pytest.raises(InputError, match="slice 1 twice"):
        for p, t, batch in _stack_batches(pred, target, [1, 1]):
            twice.update(p, t, batch)


def test_summaries_report_median_and_miss_rate():
    frame = pd.DataFrame({"id": list("abcd"), "domain": "A", "region": "LV", "dice": [0.9, 0.8, 0.0, 0.7],
                          "hd95": [2.0, 3.0, 100.0, 4.0], "assd": [1.0, 1.0, 100.0, 2.0],
                          "miss": [False, False, True, False]})
    row = summarise_cases(frame).iloc[0]
    assert row["n"] == 4 and row["hd95"] == pytest.approx(27.25) and row["hd95_median"] == pytest.approx(3.5)
    assert row["assd_median"] == pytest.approx(1.5) and row["miss_rate"] == pytest.approx(0.25)
