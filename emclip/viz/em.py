"""Figures for notebook 04 (EM aggregation): EM on the unit circle, responsibility maps of the
K bases per iteration, parameter grids, compactness bars and the attention-cost curves.

:func:`responsibility_figure` is the callback of the notebook's ipywidgets explorer: a plain
function (features, K, T, lam, seed) -> matplotlib Figure, unit-tested without a kernel.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from emclip.em import em_history, init_bases, l2_normalize

__all__ = [
    "circle_data",
    "em_on_feature_map",
    "parameter_grid_figure",
    "plot_attention_cost",
    "plot_circle_em",
    "plot_compactness",
    "plot_responsibility_maps",
    "responsibility_figure",
]


def circle_data(n_per_cluster: int = 60, centres_deg=(20.0, 140.0, 250.0), kappa: float = 12.0,
                seed: int = 0):
    """Toy 2-D data on the unit circle: von Mises clusters around ``centres_deg``.

    Returns points (N, 2) float32 tensor and labels (N,) int64, N = n_per_cluster * len(centres).
    """
    rng = np.random.default_rng(seed)
    angles = np.concatenate([rng.vonmises(math.radians(c), kappa, n_per_cluster) for c in centres_deg])
    labels = np.repeat(np.arange(len(centres_deg)), n_per_cluster)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return torch.from_numpy(points), torch.from_numpy(labels)


def plot_circle_em(points: torch.Tensor, mu0: torch.Tensor, history, lam: float | None = None):
    """One panel per EM state on the unit circle: the initial bases, then each iteration.

    points (N, 2); mu0 (2, K) initial bases; history: list of (mu (1,2,K), z (1,N,K)) from
    :func:`emclip.em.em_history`. Points are coloured by their most responsible basis and faded
    by how sure that responsibility is; bases are arrows.
    """
    k = mu0.shape[-1]
    colours = plt.get_cmap("tab10")(np.arange(k) % 10)
    states = [(mu0.reshape(2, k), None)] + [(mu[0], z[0]) for mu, z in history]
    fig, axes = plt.subplots(1, len(states), figsize=(2.6 * len(states), 2.8), squeeze=False)
    theta = np.linspace(0, 2 * np.pi, 200)
    pts = points.numpy()
    for t, (ax, (mu, z)) in enumerate(zip(axes[0], states)):
        ax.plot(np.cos(theta), np.sin(theta), color="0.85", lw=1)
        if z is None:
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color="0.5")
        else:
            best = z.argmax(dim=1).numpy()
            rgba = colours[best].copy()
            rgba[:, 3] = z.max(dim=1).values.numpy()
            ax.scatter(pts[:, 0], pts[:, 1], s=8, c=rgba)
        for j in range(k):
            ax.annotate("", xy=(float(mu[0, j]), float(mu[1, j])), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": colours[j], "lw": 2})
        ax.set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal", xticks=[], yticks=[])
        ax.set_title("initial bases" if t == 0 else f"after iteration {t}", fontsize=9)
    if lam is not None:
        fig.suptitle(f"EM on the unit circle (lam = {lam:g})", fontsize=10)
    fig.tight_layout()
    return fig


def _feature_map(features: torch.Tensor) -> torch.Tensor:
    if features.ndim == 4 and features.shape[0] == 1:
        features = features[0]
    if features.ndim != 3:
        raise ValueError(f"features must be one feature map (C, h, w) or (1, C, h, w), got {tuple(features.shape)}")
    return features.detach().float().cpu()


def em_on_feature_map(features: torch.Tensor, K: int = 8, T: int = 3, lam: float = 10.0, seed: int = 0,
                      normalize: bool = True, center: bool = True):
    """EM on one feature map (C, h, w) from EMANet's random initial bases (seeded).

    ``center=True`` subtracts the map's mean feature and ``normalize=True`` then L2-normalises
    each pixel, so that ``lam`` is the von Mises-Fisher concentration. Design choice for the
    lesson, not from EMANet (which feeds the unnormalised output of a learned 1x1 conv, whose
    norm then acts as part of the temperature): CLIP patch features share a large common
    component, which would otherwise pull every basis to the same direction. Returns the
    history list of :func:`emclip.em.em_history`.
    """
    feats = _feature_map(features)
    x = feats.reshape(1, feats.shape[0], -1)
    if center:
        x = x - x.mean(dim=2, keepdim=True)
    if normalize:
        x = l2_normalize(x, dim=1)
    mu0 = init_bases(feats.shape[0], int(K), torch.Generator().manual_seed(int(seed)))
    return em_history(x, mu0, int(T), float(lam))


def _show_image(ax, image):
    if image is not None:
        img = image.detach().cpu().float()
        img = img[0] if img.ndim == 4 else img
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy() if img.ndim == 3 else img.numpy(), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_responsibility_maps(history, grid_hw: tuple[int, int], image: torch.Tensor | None = None,
                             max_bases: int = 8, title: str | None = None):
    """Rows: EM iterations; columns: the first ``max_bases`` bases' responsibility maps (h, w)
    (0 white .. 1 dark), plus the image in a first column when given."""
    h, w = grid_hw
    k = min(history[0][1].shape[-1], max_bases)
    extra = 1 if image is not None else 0
    fig, axes = plt.subplots(len(history), k + extra, figsize=(1.5 * (k + extra), 1.5 * len(history) + 0.4),
                             squeeze=False)
    for t, (_, z) in enumerate(history):
        maps = z[0].float().reshape(h, w, -1)
        if extra:
            _show_image(axes[t, 0], image)
            axes[t, 0].set_ylabel(f"iter {t + 1}", fontsize=8)
        for j in range(k):
            ax = axes[t, j + extra]
            ax.imshow(maps[..., j].numpy(), vmin=0, vmax=1, cmap="magma_r")
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_title(f"basis {j}", fontsize=8)
            if j == 0 and not extra:
                ax.set_ylabel(f"iter {t + 1}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def responsibility_figure(features: torch.Tensor, K: int = 8, T: int = 3, lam: float = 10.0, seed: int = 0,
                          image: torch.Tensor | None = None, normalize: bool = True, center: bool = True):
    """Widget callback: run EM on ``features`` (C, h, w) (see :func:`em_on_feature_map`) and plot
    every iteration's responsibility maps."""
    feats = _feature_map(features)
    history = em_on_feature_map(feats, K, T, lam, seed, normalize, center)
    return plot_responsibility_maps(history, tuple(feats.shape[-2:]), image=image,
                                    title=f"responsibilities: K={int(K)}, T={int(T)}, lam={float(lam):g}")


def parameter_grid_figure(features: torch.Tensor, lams=(1.0, 10.0, 50.0), Ks=(2, 4, 8), T: int = 3,
                          seed: int = 0, normalize: bool = True, center: bool = True):
    """Static grid: hard assignment (argmax_k z) after T iterations, one panel per (lam, K)."""
    feats = _feature_map(features)
    h, w = feats.shape[-2:]
    fig, axes = plt.subplots(len(lams), len(Ks), figsize=(1.9 * len(Ks), 1.9 * len(lams)), squeeze=False)
    for r, lam in enumerate(lams):
        for c, k in enumerate(Ks):
            z = em_on_feature_map(feats, k, T, lam, seed, normalize, center)[-1][1][0]
            sharp = float(z.max(dim=1).values.mean())
            ax = axes[r, c]
            ax.imshow(z.argmax(dim=1).reshape(h, w).numpy(), cmap="tab10", vmin=0, vmax=9,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"K={k}, lam={lam:g}\nmean max z={sharp:.2f}", fontsize=8)
    fig.suptitle(f"argmax responsibilities after T={T}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_compactness(table, metrics=("centroid_cosine_distance", "between_within", "silhouette")):
    """Bars per domain of each compactness measure, one colour per ``stage`` (e.g. raw vs
    EM reconstruction). ``table``: DataFrame with columns ``domain, stage`` and the metrics.

    One legend for the figure, below the panels, so that it never covers a bar."""
    import seaborn as sns

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.barplot(data=table, x="domain", y=metric, hue="stage", ax=ax)
        ax.set_title(metric + (" (lower = compact)" if metric == "centroid_cosine_distance" else
                               " (higher = better)"), fontsize=9)
        ax.set_xlabel("")
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_attention_cost(table):
    """Time (measured), work (counted GFLOP) and memory against N (log-log) per method, from
    :func:`emclip.attention_cost.attention_cost`."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for method, group in table.groupby("method"):
        axes[0].plot(group["N"], group["time_ms"], "o-", label=method)
        axes[1].plot(group["N"], group["gflop"], "o-", label=method)
        axes[2].plot(group["N"], group["attn_MiB"], "o--", label=f"{method}: attention map (theory)")
        if group["peak_MiB"].notna().any():
            axes[2].plot(group["N"], group["peak_MiB"], "s-", label=f"{method}: measured peak")
    axes[0].set(xscale="log", yscale="log", xlabel="N tokens", ylabel="time per forward (ms, measured)")
    axes[1].set(xscale="log", yscale="log", xlabel="N tokens", ylabel="GFLOP per forward (counted)")
    axes[2].set(xscale="log", yscale="log", xlabel="N tokens", ylabel="MiB")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
