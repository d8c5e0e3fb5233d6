"""How compact are features of the same class? Dispersion measures for labelled features.

EM-CLIP's claim is that EM aggregation turns dispersed CLIP patch features into compact semantic
centres. These measures make "compact" a number, for any features with labels:

* :func:`centroid_cosine_distance` - mean cosine distance of each feature to its class
  centroid (lower = more compact);
* :func:`between_within_ratio` - between-class over within-class scatter of the
  L2-normalised features (Fisher's criterion, trace form; higher = better separated);
* :func:`silhouette` - scikit-learn's silhouette score with the cosine metric, sub-sampled with
  a seed for speed (in [-1, 1], higher = better).

Input: features (N, C) with labels (N,), or dense features (B, C, h, w) with label maps
(B, H, W), which :func:`flatten_dense` brings to the feature grid (majority vote per cell or
nearest neighbour). All measures use the cosine geometry of CLIP (features L2-normalised);
that choice is ours, not the paper's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "between_within_ratio",
    "centroid_cosine_distance",
    "feature_compactness",
    "flatten_dense",
    "labels_to_grid",
    "silhouette",
]


def _as_numpy(features, labels) -> tuple[np.ndarray, np.ndarray]:
    feats = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    labs = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if feats.ndim != 2:
        raise ValueError(f"features must be (N, C), got shape {feats.shape}; "
                         "for dense (B, C, h, w) features call flatten_dense(features, label_maps) first")
    if labs.shape != (feats.shape[0],):
        raise ValueError(f"labels must be (N,) = ({feats.shape[0]},), got shape {labs.shape}")
    if not np.issubdtype(labs.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labs.dtype}")
    if len(np.unique(labs)) < 2:
        raise ValueError("need at least 2 distinct labels to measure compactness between classes; "
                         f"got {np.unique(labs).tolist()}")
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats.astype(np.float64) / np.maximum(norms, 1e-12), labs


def centroid_cosine_distance(features, labels) -> float:
    """Mean over samples of ``1 - cos(f_i, centroid(label_i))``; centroids are class means of the
    normalised features. 0 when every class collapses to one direction; lower = more compact."""
    feats, labs = _as_numpy(features, labels)
    total = 0.0
    for value in np.unique(labs):
        group = feats[labs == value]
        centroid = group.mean(axis=0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        total += float((1.0 - group @ centroid).sum())
    return total / len(labs)


def between_within_ratio(features, labels) -> float:
    """``trace(S_between) / trace(S_within)`` of the L2-normalised features (higher = better).

    ``S_within = sum_i ||f_i - m_{y_i}||^2``, ``S_between = sum_c n_c ||m_c - m||^2``.
    """
    feats, labs = _as_numpy(features, labels)
    mean = feats.mean(axis=0)
    within = between = 0.0
    for value in np.unique(labs):
        group = feats[labs == value]
        centre = group.mean(axis=0)
        within += float(((group - centre) ** 2).sum())
        between += len(group) * float(((centre - mean) ** 2).sum())
    return between / max(within, 1e-12)


def silhouette(features, labels, sample_size: int | None = 2000, seed: int = 0) -> float:
    """scikit-learn's ``silhouette_score`` with ``metric="cosine"`` on at most ``sample_size``
    samples drawn with ``seed`` (``None``: all samples)."""
    from sklearn.metrics import silhouette_score

    feats, labs = _as_numpy(features, labels)
    if sample_size is not None and sample_size >= len(labs):
        sample_size = None
    return float(silhouette_score(feats, labs, metric="cosine", sample_size=sample_size, random_state=seed))


def feature_compactness(features, labels, sample_size: int | None = 2000, seed: int = 0) -> dict:
    """All three measures in a dict: ``centroid_cosine_distance``, ``between_within``, ``silhouette``."""
    return {
        "centroid_cosine_distance": centroid_cosine_distance(features, labels),
        "between_within": between_within_ratio(features, labels),
        "silhouette": silhouette(features, labels, sample_size=sample_size, seed=seed),
    }


def labels_to_grid(label_maps: torch.Tensor, size: tuple[int, int], mode: str = "majority") -> torch.Tensor:
    """Label maps (B, H, W) int -> (B, h, w) on the feature grid.

    ``majority``: the most frequent label in each cell (ties -> the smaller label; adaptive
    average pooling of the one-hot maps); ``nearest``: nearest-neighbour sampling.
    """
    if label_maps.ndim != 3 or label_maps.is_floating_point():
        raise ValueError(f"label_maps must be an int tensor (B, H, W), got {label_maps.dtype} {tuple(label_maps.shape)}")
    if mode == "nearest":
        return F.interpolate(label_maps[:, None].float(), size=size, mode="nearest")[:, 0].long()
    if mode != "majority":
        raise ValueError(f"mode must be 'majority' or 'nearest', got {mode!r}")
    if label_maps.min() < 0:
        raise ValueError("label_maps must be non-negative for the majority vote")
    onehot = F.one_hot(label_maps.long(), int(label_maps.max()) + 1).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, size).argmax(dim=1)


def flatten_dense(features: torch.Tensor, label_maps: torch.Tensor, mode: str = "majority"):
    """Dense features (B, C, h, w) and label maps (B, H, W) -> features (B*h*w, C), labels (B*h*w,)."""
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got shape {tuple(features.shape)}")
    if label_maps.shape[0] != features.shape[0]:
        raise ValueError(f"features have batch {features.shape[0]} but label_maps {label_maps.shape[0]}")
    grid = labels_to_grid(label_maps, tuple(features.shape[-2:]), mode=mode)
    flat = features.detach().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    return flat, grid.reshape(-1)
