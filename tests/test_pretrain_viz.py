"""Figures of the pretraining notebook (emclip.viz.pretrain)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from emclip.viz import pretrain as vpre


def test_corpus_grid_shows_every_caption():
    images = np.random.default_rng(0).integers(0, 255, (5, 3, 16, 16), dtype=np.uint8)
    fig = vpre.plot_corpus(images, [f"caption number {i}" for i in range(5)], ncols=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"caption number {i}" for i in range(5)] and len(fig.axes) == 6
    plt.close(fig)
    with pytest.raises(ValueError, match="as many captions"):
        vpre.plot_corpus(images, ["one"])


def test_style_space_marks_the_held_out_styles():
    rng = np.random.default_rng(0)
    fig = vpre.plot_style_space(rng.random((50, 10)), rng.random((8, 10)), list("abcdefgh"), radius=0.2)
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and len(ax.texts) == 8 and "0.2" in ax.get_title()
    plt.close(fig)


def test_curves_plot_loss_chance_and_retrieval():
    history = [{"step": s, "loss": 5 - s / 10} for s in range(1, 11)]
    history[4].update(i2t=0.1, t2i=0.2, chance=0.01)
    history[9].update(i2t=0.3, t2i=0.35, chance=0.01)
    fig = vpre.plot_pretraining_curves(history, batch_size=128)
    left, right = fig.axes
    assert left.lines[1].get_ydata()[0] == pytest.approx(np.log(128))
    assert list(right.lines[0].get_ydata()) == [0.1, 0.3]
    plt.close(fig)
    with pytest.raises(ValueError, match="loss"):
        vpre.plot_pretraining_curves([])


def test_retrieval_matrix_reports_diagonal_hits():
    emb = torch.eye(4)
    fig = vpre.plot_retrieval_matrix(emb, emb[[0, 1, 3, 2]], captions=list("abcd"))
    assert "50%" in fig.axes[0].get_title()
    plt.close(fig)


def test_zero_shot_comparison_and_contrast_bars():
    images = torch.rand(2, 3, 16, 16)
    maps = {"random": torch.rand(2, 4, 4), "pretrained": torch.rand(2, 4, 4)}
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:10, 4:10] = True
    fig = vpre.plot_zero_shot_comparison(images, maps, masks=masks, titles=["d1", "d2"])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "d1" and fig.axes[2].get_title() == "pretrained"
    plt.close(fig)
    fig = vpre.plot_contrast_bars({"random": {"disc": -0.1, "cup": 0.0}, "pretrained": {"disc": 0.2, "cup": 0.1}})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([-0.1, 0.0, 0.2, 0.1])
    plt.close(fig)
