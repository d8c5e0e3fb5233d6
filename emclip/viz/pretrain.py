"""Figures for notebook 02 (a foundation model of our own): the corpus, the style prior, the
pretraining curves, image-text retrieval, zero-shot maps and contrasts, random vs pretrained."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

__all__ = [
    "cross_domain_frame",
    "cross_domain_summary",
    "plot_contrast_bars",
    "plot_corpus",
    "plot_pretraining_curves",
    "plot_retrieval_matrix",
    "plot_style_space",
    "plot_zero_shot_comparison",
]


def _image(x) -> np.ndarray:
    img = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if img.dtype == np.uint8 or img.max() > 1.5:
        img = img / 255.0
    return np.clip(img.transpose(1, 2, 0), 0, 1)


def plot_corpus(images, captions, ncols: int = 4, width: int = 34):
    """A grid of corpus images (N, 3, H, W) (float in [0, 1] or uint8) with their captions."""
    n = len(images)
    if n == 0 or n != len(captions):
        raise ValueError(f"need as many captions as images (>= 1), got {n} images and {len(captions)} captions.")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, caption in zip(axes.ravel(), images, captions):
        ax.imshow(_image(image))
        ax.set_title("\n".join(textwrap.wrap(caption, width)[:4]), fontsize=7)
    fig.tight_layout()
    return fig


def plot_style_space(prior_vectors, held_vectors, held_names, radius: float | None = None, ax=None):
    """The style prior and the held-out benchmark styles in 2-D (PCA of the normalised style space).

    Args:
        prior_vectors: (N, D) normalised style vectors of prior samples
            (:func:`emclip.data.style_prior.style_vector`).
        held_vectors: (8, D) the benchmark styles; held_names: their 8 names.
        radius: the hold-out distance, quoted in the title (a 2-D projection cannot draw it).
    """
    from sklearn.decomposition import PCA

    prior, held = np.asarray(prior_vectors), np.asarray(held_vectors)
    pca = PCA(n_components=2, random_state=0).fit(np.concatenate([prior, held]))
    p2, h2 = pca.transform(prior), pca.transform(held)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.scatter(p2[:, 0], p2[:, 1], s=6, alpha=0.35, color="tab:blue", label="pretraining styles (prior)")
    ax.scatter(h2[:, 0], h2[:, 1], s=60, marker="*", color="tab:red", label="benchmark styles (held out)")
    for (x, y), name in zip(h2, held_names):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    title = "style space (PCA of the normalised parameters)"
    if radius is not None:
        title += f"\nno pretraining style within {radius} (RMS) of a star"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return ax.figure


def plot_pretraining_curves(history, batch_size: int | None = None):
    """Loss per step (and ln(batch size), the loss at chance) beside held-out retrieval top-1.

    ``history``: a list of row dicts or a DataFrame with ``step, loss`` and, on some rows,
    ``i2t, t2i, chance`` (:func:`emclip.clip.pretrain.train.pretrain`).
    """
    import pandas as pd

    frame = pd.DataFrame(history)
    if frame.empty or "loss" not in frame:
        raise ValueError("history needs rows with 'step' and 'loss' (the output of pretrain()).")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(frame["step"], frame["loss"], lw=0.8)
    if batch_size:
        left.axhline(np.log(batch_size), color="grey", ls="--", lw=0.8, label=f"chance: ln {batch_size}")
        left.legend(fontsize=8)
    left.set(xlabel="step", ylabel="contrastive loss", title="pretraining loss")
    evals = frame.dropna(subset=["i2t"]) if "i2t" in frame else frame.iloc[:0]
    if not evals.empty:
        right.plot(evals["step"], evals["i2t"], marker="o", label="image -> text")
        right.plot(evals["step"], evals["t2i"], marker="o", label="text -> image")
        right.plot(evals["step"], evals["chance"], ls="--", color="grey", label="chance")
        right.legend(fontsize=8)
    right.set(xlabel="step", ylabel="top-1", title="retrieval on held-out pairs")
    fig.tight_layout()
    return fig


def plot_retrieval_matrix(image_embeddings, text_embeddings, captions=None, ax=None, title: str | None = None):
    """Cosine similarities of N images (rows) with their N captions (columns); the diagonal holds
    the true pairs. ``captions`` label the columns (shortened) when N is small."""
    sim = (torch.as_tensor(image_embeddings).float() @ torch.as_tensor(text_embeddings).float().T).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    im = ax.imshow(sim, cmap="viridis")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    hits = (sim.argmax(axis=1) == np.arange(len(sim))).mean()
    ax.set_title(title or f"image-text similarity (row argmax on the diagonal: {hits:.0%})", fontsize=9)
    ax.set(xlabel="caption", ylabel="image")
    if captions is not None and len(captions) <= 12:
        ax.set_xticks(range(len(captions)), [textwrap.shorten(c, 28) for c in captions], rotation=75, fontsize=6)
    return ax.figure


def plot_zero_shot_comparison(images, maps: dict, masks=None, titles=None):
    """Rows: images, then one zero-shot similarity map per model (e.g. ``{"random": ..., "pretrained": ...}``).

    Args:
        images: (B, 3, H, W) in [0, 1].
        maps: model name -> (B, h, w) similarity maps for one class prompt.
        masks: optional (B, H, W) bool masks of that class, drawn as a contour on every panel.
        titles: B row titles (e.g. the domains).
    """
    b = len(images)
    names = list(maps)
    fig, axes = plt.subplots(b, 1 + len(names), figsize=(2.3 * (1 + len(names)), 2.3 * b), squeeze=False)
    size = images.shape[-2:]
    for i in range(b):
        axes[i, 0].imshow(_image(images[i]))
        axes[i, 0].set_title(titles[i] if titles else "image", fontsize=8)
        for j, name in enumerate(names, start=1):
            sim = torch.as_tensor(maps[name][i]).float()[None, None]
            sim = torch.nn.functional.interpolate(sim, size=size, mode="bilinear", align_corners=False)[0, 0]
            axes[i, j].imshow(sim.numpy(), cmap="magma")
            axes[i, j].set_title(name, fontsize=8)
        for ax in axes[i]:
            if masks is not None:
                ax.contour(np.asarray(masks[i], dtype=float), levels=[0.5], colors="cyan", linewidths=0.7)
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_contrast_bars(contrasts: dict, ax=None, title: str = "zero-shot contrast on held-out styles"):
    """Grouped bars: region -> value per model, from ``{model: {region: contrast}}``; 0 marked."""
    models = list(contrasts)
    regions = list(dict.fromkeys(r for values in contrasts.values() for r in values))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.9 * len(regions) * len(models) / 2, 3.2))
    width = 0.8 / max(1, len(models))
    for k, model in enumerate(models):
        values = [contrasts[model].get(r, np.nan) for r in regions]
        ax.bar(np.arange(len(regions)) + (k - (len(models) - 1) / 2) * width, values, width, label=model)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(regions)), regions, fontsize=8)
    ax.set(ylabel="mean sim. inside - outside", title=title)
    ax.legend(fontsize=8)
    return ax.figure


def cross_domain_frame(runs: dict) -> pd.DataFrame:
    """One row per run from ``{"task|source|weights|seed": {"unseen": float, "per_domain": {...}}}``
    (the ``runs`` of the figures shipped beside the weights): task, source, weights, seed, unseen Dice."""
    rows = []
    for key, run in runs.items():
        task, source, weights, seed = key.split("|")
        rows.append({"task": task, "source": source, "weights": weights, "seed": int(seed), "unseen": run["unseen"],
                     "in_domain": run["per_domain"][source]})
    return pd.DataFrame(rows)


def cross_domain_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Unseen-domain Dice per (weights, task) as ``mean ± std (n seeds)``, plus the mean over both tasks
    of the per-task means (the figure the shipped weights were chosen by); rows sorted best first."""
    stats = frame.groupby(["weights", "task"])["unseen"].agg(["mean", "std", "count"])
    table = stats.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f} (n={int(r['count'])})", axis=1).unstack("task")
    table["both tasks"] = stats["mean"].unstack("task").mean(axis=1).round(3)
    return table.sort_values("both tasks", ascending=False)
