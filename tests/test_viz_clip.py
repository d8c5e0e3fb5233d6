"""Notebook 02 helpers: PCA-RGB, figures, region contrast and the domain probe."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from emclip.clip.analysis import channel_masks, domain_probe_accuracy, region_contrast
from emclip.viz import clip as vclip


def test_pca_rgb_is_shared_across_the_batch_and_in_range():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 5, 6, generator=g)
    rgb = vclip.pca_rgb(feats)
    assert rgb.shape == (2, 5, 6, 3) and rgb.min() >= 0 and rgb.max() <= 1
    swapped = vclip.pca_rgb(feats[[1, 0]])
    np.testing.assert_allclose(swapped[[1, 0]], rgb, atol=1e-5)  # one PCA over the batch, order-free
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        vclip.pca_rgb(feats[0])


def test_figures_build():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=g)
    for fig in (vclip.plot_pca_rgb(images, torch.randn(2, 8, 4, 4, generator=g)),
                vclip.plot_similarity_maps(images, torch.rand(2, 3, 4, 4, generator=g), ["a", "b", "c"]),
                vclip.plot_text_similarity(torch.randn(3, 8, generator=g), ["a", "b", "c"]),
                vclip.plot_embedding_scatter(torch.randn(12, 8, generator=g), ["x", "y"] * 6, "tsne")):
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="pca, tsne"):
        vclip.embed_2d(np.zeros((4, 3)), "umap")


def test_region_contrast_sign_and_channel_masks():
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[:, 2:6, 2:6] = 1
    label[:, 3:5, 3:5] = 2
    masks = channel_masks("fundus", label)  # disc (1, 2), cup (2)
    assert masks.shape == (1, 2, 8, 8) and int(masks[0, 0].sum()) == 16 and int(masks[0, 1].sum()) == 4
    sim = torch.stack([masks[:, 0].float(), -masks[:, 1].float()], dim=1)  # disc lights up, cup is dark
    contrast = region_contrast(sim, masks)
    assert contrast[0] > 0.9 and contrast[1] < -0.9
    cardiac = channel_masks("cardiac", torch.tensor([[[0, 1], [2, 3]]]))
    assert cardiac.shape == (1, 4, 2, 2) and bool(cardiac.sum(dim=1).eq(1).all())


def test_domain_probe_separates_shifted_domains_and_not_identical_ones():
    g = np.random.default_rng(0)
    labels = ["a"] * 20 + ["b"] * 20
    shifted = np.concatenate([g.normal(0, 1, (20, 5)), g.normal(4, 1, (20, 5))])
    same = g.normal(0, 1, (40, 5))
    assert domain_probe_accuracy(shifted, labels) > 0.9
    assert domain_probe_accuracy(same, labels) < 0.8
    with pytest.raises(ValueError, match="two domains"):
        domain_probe_accuracy(same[:3], ["a", "a", "a"])
