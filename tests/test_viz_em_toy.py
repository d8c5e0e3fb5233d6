"""The 2-D toy of the EM notebook: a shift moves the clusters, a fixed classifier fails, EM + anchors follows."""

from __future__ import annotations

import numpy as np
import pytest

from emclip.viz import em_toy


def _class_angle(points, labels, c):
    mean = points[labels == c].mean(axis=0)
    return np.degrees(np.arctan2(mean[1], mean[0]))


def test_a_domain_shift_rotates_every_cluster():
    for shift in (0.0, 40.0):
        points, labels = em_toy.make_domain(shift, n_images=1, jitter_deg=0.0, seed=3)[0]
        assert np.allclose(np.linalg.norm(points, axis=1), 1.0)
        for c, angle in enumerate(em_toy.CLASS_ANGLES):
            moved = (_class_angle(points, labels, c) - angle + 180) % 360 - 180
            assert moved == pytest.approx(shift, abs=4.0)


def test_matching_to_anchors_is_a_one_to_one_assignment():
    anchors = em_toy.anchors()
    order = np.array([2, 0, 1])
    rotation = np.deg2rad(35.0)
    rot = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    centres = anchors[order] @ rot.T  # centre k lies 35 degrees from anchor order[k]
    assert em_toy.match_to_anchors(centres, anchors).tolist() == order.tolist()
    # a greedy nearest-anchor choice could give two centres one class; the assignment never does
    crowded = anchors[[0, 0, 1]] + np.array([[0.0, 0.0], [0.1, 0.05], [0.0, 0.0]])
    assert sorted(em_toy.match_to_anchors(crowded, anchors).tolist()) == [0, 1, 2]


def test_fixed_classifier_fails_under_shift_and_em_with_anchors_recovers_the_labels():
    table = em_toy.shift_experiment(shifts=(0.0, 55.0, 75.0), n_images=4, seed=0)
    at = table.set_index("shift_deg")
    assert at.loc[0.0, "fixed_classifier_acc"] > 0.99 and at.loc[0.0, "em_anchor_acc"] > 0.99
    assert at.loc[55.0, "fixed_classifier_acc"] < 0.8  # points crossed the source's decision boundaries
    assert at.loc[55.0, "em_anchor_acc"] > 0.95  # EM followed the clusters; the anchors named them
    assert at.loc[55.0, "centre_move_deg"] == pytest.approx(55.0, abs=6.0)
    assert at.loc[75.0, "em_anchor_acc"] < 0.1  # beyond half the angle between classes: the stated limit
    assert table.equals(em_toy.shift_experiment(shifts=(0.0, 55.0, 75.0), n_images=4, seed=0))


def test_shift_figure_reports_both_accuracies():
    import matplotlib.pyplot as plt

    fig = em_toy.shift_figure(55.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("fixed classifier:") and titles[1].startswith("EM per image + anchors:")
    assert "100%" in titles[1] and "100%" not in titles[0]
    plt.close(fig)
    fig = em_toy.plot_shift_toy(em_toy.shift_experiment(shifts=(0.0, 45.0), n_images=2))
    assert len(fig.axes[0].lines) >= 2
    plt.close(fig)
