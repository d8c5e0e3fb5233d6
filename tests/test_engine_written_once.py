"""Logic the kit writes once: the Dice formula, the domain probe, the per-(domain, region) summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emclip.clip.analysis import domain_probe_accuracy
from emclip.data.shift import dice_per_region, probe_accuracy
from emclip.metrics import SegmentationMetrics, compute_dice, summarise_cases


def test_shift_dice_is_the_metrics_dice():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(5, 12, 12))
    pred = rng.integers(0, 3, size=(5, 12, 12))
    pred[0], target[0] = 0, 0  # both empty: Dice 1 by the kit's convention
    got = dice_per_region("fundus", pred, target)
    disc = compute_dice(torch.from_numpy(pred >= 1), torch.from_numpy(target >= 1))
    cup = compute_dice(torch.from_numpy(pred == 2), torch.from_numpy(target == 2))
    assert got == {"disc": pytest.approx(disc.mean()), "cup": pytest.approx(cup.mean())}


def test_one_domain_probe_for_images_and_embeddings():
    rng = np.random.default_rng(1)
    labels = ["a"] * 10 + ["b"] * 10
    features = rng.normal(size=(20, 6)) + np.repeat([[0.0], [1.5]], 10, axis=0)
    assert domain_probe_accuracy(torch.from_numpy(features), labels, folds=4) == pytest.approx(
        probe_accuracy(features, labels, folds=4).mean())
    with pytest.raises(ValueError, match="two domains"):
        probe_accuracy(features[:10], labels[:10])


def test_one_summary_per_domain_and_region():
    pred = torch.zeros(4, 2, 8, 8, dtype=torch.bool)
    pred[:2, 0, 2:6, 2:6] = True
    target = torch.zeros_like(pred)
    target[:, 0, 3:7, 3:7] = True
    acc = SegmentationMetrics(["disc", "cup"])
    acc.update(pred, target, domains=["d1", "d1", "d2", "d2"])
    summary = acc.aggregate()
    pd.testing.assert_frame_equal(summary, summarise_cases(acc.to_frame()))
    d2 = summary[(summary.domain == "d2") & (summary.region == "disc")].iloc[0]
    assert d2["miss_rate"] == 1.0 and d2["dice"] == 0.0  # nothing predicted where the disc is
