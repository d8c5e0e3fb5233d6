"""Expectation-Maximization (EM) aggregation of dense features into K compact bases.

This is EMANet's EM attention unit (EMAU; Li et al., "Expectation-Maximization Attention
Networks for Semantic Segmentation", ICCV 2019, official code ``XiaLiPKU/EMANet``; also
MMSegmentation's ``ema_head.py``). Features ``x`` (B, C, N) with N = H*W pixels are clustered
around K bases ``mu`` (B, C, K) by T rounds of

* **E-step** ``z = softmax_K(lam * x^T mu)`` (B, N, K): each pixel's responsibilities. With
  unit-norm features and bases this is the posterior of a mixture of von Mises-Fisher
  distributions of concentration ``lam`` on the unit sphere; EMANet fixes ``lam = 1`` on raw
  features, where the feature norms act as a per-pixel temperature.
* **M-step** ``mu = x z / sum_N z`` (B, C, K): each basis is the responsibility-weighted mean of
  the pixels, then L2-normalised over C (the paper found L2Norm better than LayerNorm).

The pixels are then rebuilt from the bases, ``x_hat = mu z^T`` (B, C, N): a rank-K
reconstruction in which pixels that share a basis share a feature. Cost O(N K T) instead of the
O(N^2) of non-local attention (see :mod:`emclip.attention_cost`).

What EM-CLIP adds (from the paper's abstract): it applies the unit to frozen CLIP patch
features, so that the dispersed, domain-dependent patch embeddings of a medical image are
aggregated into a few compact semantic centres. By default the decoder sees the rebuilt
features ``ReLU(x + conv(mu z^T))``; with the model-config key ``text.tie_centres`` it also
matches the centres (``EMOutput.bases``) against the class text embeddings
(:class:`emclip.decoder.CentreTextMatching`), a design choice, not from the paper.

Modules: ``iterations`` (the E/M-steps as functions), ``unit`` (:class:`EMAggregation`,
:class:`ResidualBlock`), ``updates`` (the bases' moving average, applied by the trainer).
"""

from emclip.em.iterations import (
    e_step,
    em_history,
    em_iterations,
    em_objective,
    init_bases,
    l2_normalize,
    low_rank_reconstruction,
    m_step,
)
from emclip.em.unit import EMAggregation, EMOutput, ResidualBlock
from emclip.em.updates import discard_em_updates, em_units, update_em_bases

__all__ = [
    "EMAggregation",
    "EMOutput",
    "ResidualBlock",
    "discard_em_updates",
    "e_step",
    "em_history",
    "em_iterations",
    "em_objective",
    "em_units",
    "init_bases",
    "l2_normalize",
    "low_rank_reconstruction",
    "m_step",
    "update_em_bases",
]
