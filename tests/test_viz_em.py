"""Notebook 03's figures and its widget callback, without a kernel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emclip.em import em_history, init_bases  # noqa: E402
from emclip.viz.em import (  # noqa: E402
    circle_data,
    em_on_feature_map,
    parameter_grid_figure,
    plot_attention_cost,
    plot_circle_em,
    plot_compactness,
    responsibility_figure,
)


def _features(seed=0, c=12, h=6, w=7):
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed))


def test_circle_data_is_on_the_unit_circle_and_seeded():
    points, labels = circle_data(n_per_cluster=10, centres_deg=(0, 180), seed=1)
    assert points.shape == (20, 2) and labels.tolist() == [0] * 10 + [1] * 10
    torch.testing.assert_close(points.norm(dim=1), torch.ones(20))
    assert torch.equal(points, circle_data(10, (0, 180), seed=1)[0])
    assert (points[:10, 0] > 0).float().mean() > 0.8  # cluster 0 sits around angle 0


def test_responsibility_figure_shows_the_em_maps():
    feats = _features()
    fig = responsibility_figure(feats, K=3, T=2, lam=5.0, seed=1)
    axes = fig.get_axes()
    assert len(axes) == 2 * 3
    z = em_on_feature_map(feats, 3, 2, 5.0, 1)
    for t in range(2):
        for j in range(3):
            shown = np.asarray(axes[3 * t + j].get_images()[0].get_array())
            np.testing.assert_allclose(shown, z[t][1][0, :, j].reshape(6, 7).numpy(), atol=1e-6)
    plt.close(fig)
    # with an image an extra column; (1, C, h, w) input accepted
    fig = responsibility_figure(feats[None], K=2, T=1, lam=1.0, seed=0, image=torch.rand(3, 24, 28))
    assert len(fig.get_axes()) == 1 * 3
    plt.close(fig)


def test_seed_and_lam_change_the_maps():
    feats = _features()
    a = em_on_feature_map(feats, 4, 1, 5.0, seed=0)[0][1]
    b = em_on_feature_map(feats, 4, 1, 5.0, seed=1)[0][1]
    assert not torch.allclose(a, b)
    soft = em_on_feature_map(feats, 4, 3, 0.5, seed=0)[-1][1].max(dim=2).values.mean()
    sharp = em_on_feature_map(feats, 4, 3, 50.0, seed=0)[-1][1].max(dim=2).values.mean()
    assert sharp > soft


def test_bad_feature_shape_is_explained():
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        responsibility_figure(torch.randn(2, 4, 5, 5))


def test_static_figures_build():
    points, _ = circle_data(10, seed=0)
    mu0 = init_bases(2, 3, torch.Generator().manual_seed(0))
    history = em_history(points.T[None], mu0, 2, 8.0)
    fig = plot_circle_em(points, mu0[0], history, lam=8.0)
    assert len(fig.get_axes()) == 3
    fig = parameter_grid_figure(_features(), lams=(1.0, 20.0), Ks=(2, 3), T=2)
    assert len(fig.get_axes()) == 4
    table = pd.DataFrame({"domain": ["a", "a", "b", "b"], "stage": ["raw", "em"] * 2,
                          "centroid_cosine_distance": [0.5, 0.2, 0.6, 0.3], "between_within": [1, 2, 1, 3],
                          "silhouette": [0.1, 0.4, 0.0, 0.3]})
    assert len(plot_compactness(table).get_axes()) == 3
    cost = pd.DataFrame({"method": ["em", "em", "nonlocal", "nonlocal"], "N": [64, 128] * 2,
                         "time_ms": [1.0, 2.0, 3.0, 9.0], "gflop": [0.1, 0.2, 0.3, 1.2],
                         "attn_MiB": [0.1, 0.2, 1.0, 4.0], "peak_MiB": [np.nan] * 4})
    assert len(plot_attention_cost(cost).get_axes()) == 3
    plt.close("all")


def test_compactness_legend_covers_no_bar():
    domains = ["domain1", "domain2", "domain3", "domain4"]
    table = pd.DataFrame({"domain": domains * 2, "stage": ["raw features"] * 4 + ["EM reconstruction"] * 4,
                          "centroid_cosine_distance": [0.9] * 8, "between_within": [3.0] * 8,
                          "silhouette": [0.8] * 8})
    fig = plot_compactness(table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes), "no legend inside a panel"
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        for bar in ax.patches:
            assert not box.overlaps(bar.get_window_extent(renderer)), "the legend covers a bar"
    assert [t.get_text() for t in legend.get_texts()] == ["raw features", "EM reconstruction"]
    plt.close(fig)
