"""Figures for notebook 03 (CLIP features): PCA-RGB of patch features, pixel-text similarity
maps, the text-embedding similarity matrix and 2-D maps (PCA / t-SNE) of image embeddings."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "embed_2d",
    "pca_rgb",
    "plot_embedding_scatter",
    "plot_pca_rgb",
    "plot_similarity_maps",
    "prompt_map_figure",
    "plot_text_similarity",
]


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def pca_rgb(features, random_state: int = 0) -> np.ndarray:
    """Patch features (B, C, h, w) -> RGB images (B, h, w, 3) in [0, 1].

    One PCA (scikit-learn) is fitted on the pixels of the whole batch so that colours mean the same
    in every image; each component is scaled by its 1st/99th percentile over the batch.
    """
    from sklearn.decomposition import PCA

    feats = _numpy(features)
    if feats.ndim != 4:
        raise ValueError(f"Expected features (B, C, h, w), got shape {feats.shape}.")
    b, c, h, w = feats.shape
    pixels = feats.transpose(0, 2, 3, 1).reshape(-1, c)
    comps = PCA(n_components=min(3, c), random_state=random_state).fit_transform(pixels)
    if comps.shape[1] < 3:
        comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = np.percentile(comps, 1, axis=0), np.percentile(comps, 99, axis=0)
    rgb = np.clip((comps - lo) / np.maximum(hi - lo, 1e-8), 0.0, 1.0)
    return rgb.reshape(b, h, w, 3)


def _show_image(ax, image, title=None):
    img = _numpy(image)
    ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1) if img.ndim == 3 else img, cmap="gray")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_pca_rgb(images, features, titles=None):
    """Images (B, 3, H, W) above the PCA-RGB of their features (B, C, h, w); returns the figure."""
    rgb = pca_rgb(features)
    b = rgb.shape[0]
    fig, axes = plt.subplots(2, b, figsize=(2.2 * b, 4.6), squeeze=False)
    for i in range(b):
        _show_image(axes[0, i], images[i], titles[i] if titles else None)
        axes[1, i].imshow(rgb[i], interpolation="nearest")
        axes[1, i].set_axis_off()
    axes[1, 0].set_title("patch features, PCA -> RGB", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def plot_similarity_maps(images, similarity, names, titles=None):
    """One row per image: the image, then its cosine-similarity map (B, K, h, w) for each of K prompts.

    Maps are upsampled (bilinear) to the image size; the colour scale is shared per row.
    """
    sim = similarity.detach().float().cpu() if isinstance(similarity, torch.Tensor) else torch.as_tensor(similarity)
    b, k = sim.shape[:2]
    size = tuple(images.shape[-2:])
    up = F.interpolate(sim, size=size, mode="bilinear", align_corners=False).numpy()
    fig, axes = plt.subplots(b, k + 1, figsize=(2.2 * (k + 1), 2.2 * b), squeeze=False)
    for i in range(b):
        _show_image(axes[i, 0], images[i], titles[i] if titles else None)
        vmin, vmax = up[i].min(), up[i].max()
        for j in range(k):
            im = axes[i, j + 1].imshow(up[i, j], cmap="magma", vmin=vmin, vmax=vmax)
            axes[i, j + 1].set_axis_off()
            if i == 0:
                axes[i, j + 1].set_title(f"sim: {names[j]}", fontsize=9)
        fig.colorbar(im, ax=axes[i, -1], fraction=0.046)
    fig.tight_layout()
    return fig


def prompt_map_figure(images, similarity, names, domains, domain: str, index: int, name: str, masks=None):
    """One image and one prompt's similarity map (the zero-shot explorer of notebook 03).

    Args:
        images: (B, 3, H, W); similarity: (B, K, h, w) pixel-text cosine similarities.
        names: the K prompt / class names; domains: the domain of each of the B images.
        domain, index: show the ``index``-th image of ``domain`` (in batch order).
        name: which of ``names`` to show.
        masks: optional (B, K, H, W) bool ground truth per channel
            (:func:`emclip.clip.analysis.channel_masks`); adds the image's region contrast to the title.
    Returns the Figure of :func:`plot_similarity_maps` for that image and prompt.
    """
    names, domains = list(names), list(domains)
    if name not in names:
        raise ValueError(f"prompt {name!r} unknown; valid: {names}.")
    rows = [i for i, d in enumerate(domains) if d == domain]
    if not rows:
        raise ValueError(f"domain {domain!r} has no images here; valid: {sorted(set(domains))}.")
    if not 0 <= index < len(rows):
        raise ValueError(f"index {index} out of range: {domain} has {len(rows)} images (0..{len(rows) - 1}).")
    row, k = rows[index], names.index(name)
    fig = plot_similarity_maps(images[row:row + 1], similarity[row:row + 1, k:k + 1], [name],
                               titles=[f"{domain} #{index}"])
    if masks is not None:
        from emclip.clip.analysis import region_contrast

        sim = torch.as_tensor(_numpy(similarity[row:row + 1, k:k + 1]))
        contrast = float(region_contrast(sim, torch.as_tensor(_numpy(masks[row:row + 1, k:k + 1])).bool())[0])
        fig.suptitle(f"contrast inside - outside the {name}: {contrast:+.3f}", fontsize=9)
        fig.tight_layout()
    return fig


def plot_text_similarity(text_embeddings, names, ax=None, title="cosine similarity of class embeddings"):
    """Heatmap of the (K, K) cosine similarities of text embeddings (K, D)."""
    emb = F.normalize(torch.as_tensor(_numpy(text_embeddings)), dim=1)
    sim = (emb @ emb.T).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    im = ax.imshow(sim, cmap="viridis", vmin=min(0.0, sim.min()), vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if sim[i, j] > 0.6 else "white")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=10)
    return ax.figure


def embed_2d(embeddings, method: str = "pca", random_state: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) with scikit-learn PCA or t-SNE (perplexity adapted to small N)."""
    x = _numpy(embeddings)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state).fit_transform(x)
    raise ValueError(f"Unknown method {method!r}. Valid methods: pca, tsne.")


def plot_embedding_scatter(embeddings, labels, method: str = "pca", ax=None, title=None, random_state: int = 0):
    """Scatter of the 2-D ``method`` map of (N, D) embeddings, one colour per label."""
    xy = embed_2d(embeddings, method, random_state)
    labels = np.asarray(list(labels))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.8))
    for label in dict.fromkeys(labels.tolist()):
        pts = xy[labels == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=16, alpha=0.8, label=str(label))
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or f"image embeddings ({method.upper()})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.figure
