"""Measure the domain shift of a data set: can simple statistics tell the domains apart, and
does a segmenter fitted on one domain lose Dice on the others?

Two measurements, both deliberately simple (no CLIP, no training loop) so that notebook 01 and
the tests can run them in seconds:

- :func:`domain_classifier_accuracy`: a scikit-learn logistic regression on per-image
  intensity statistics, cross-validated; accuracy far above chance = a visible style gap.
- :func:`pixel_segmenter_shift`: a gradient-boosted pixel classifier (scikit-learn
  ``HistGradientBoostingClassifier``) on multi-scale intensity features, fitted on one domain
  and applied to every domain; the in-domain vs out-of-domain Dice gap is the shift a
  segmentation model meets.
Design choice, not from the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from emclip.metrics import compute_dice
from emclip.tasks import get_task


def stack_domain(task: str, domain: str, split: str, n: int, size: int, seed: int, source: str = "synthetic",
                 root=None) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, H, W) float32 and masks (n, H, W) int64 of one domain, as numpy arrays."""
    from emclip.data.loaders import get_dataset

    dataset = get_dataset(task, domain, split, source=source, size=size, seed=seed, root=root, n=n)
    samples = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([s["image"] for s in samples]).numpy(), torch.stack([s["mask"] for s in samples]).numpy())


def image_statistics(images: np.ndarray) -> np.ndarray:
    """Per-image features (N, 3 * 5 + 2): per-channel mean, std and 5/50/95th percentiles, mean
    gradient magnitude (sharpness) and the std of the Laplacian (noise level)."""
    flat = images.reshape(images.shape[0], images.shape[1], -1)
    feats = [flat.mean(-1), flat.std(-1), *np.percentile(flat, [5, 50, 95], axis=-1)]
    grey = images.mean(1)
    gy, gx = np.gradient(grey, axis=(1, 2))
    lap = np.stack([ndimage.laplace(g) for g in grey])
    feats += [np.hypot(gy, gx).mean((1, 2))[:, None], lap.std((1, 2))[:, None]]
    return np.concatenate(feats, axis=1).astype(np.float32)


def probe_accuracy(features, labels, folds: int = 4, seed: int = 0) -> np.ndarray:
    """Stratified k-fold accuracies of a logistic-regression probe predicting ``labels`` from ``features``.

    The one domain probe of the kit (scikit-learn ``StandardScaler`` + ``LogisticRegression``),
    used on image statistics here and on CLIP embeddings in :mod:`emclip.clip.analysis`.
    ``features`` (N, D); ``folds`` is reduced to the smallest class count when needed (at least 2).
    Returns the accuracy of each fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(features), np.asarray(list(labels))
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"Expected features (N, D) and N labels, got {x.shape} and {len(y)} labels.")
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        raise ValueError("Need at least two domains with at least two samples each for a probe.")
    cv = StratifiedKFold(n_splits=max(2, min(folds, int(counts.min()))), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(probe, x, y, cv=cv)


def domain_classifier_accuracy(task: str, domains: Sequence[str] | None = None, n_per_domain: int = 24,
                               size: int = 64, seed: int = 0, folds: int = 4) -> dict:
    """Cross-validated accuracy of a logistic regression that predicts the domain of an image
    from its intensity statistics (:func:`probe_accuracy` on :func:`image_statistics`).

    Returns ``{"accuracy": mean CV accuracy, "chance": 1 / #domains, "per_fold": [...]}``.
    """
    domains = tuple(domains or get_task(task).domains)
    feats, labels = [], []
    for k, domain in enumerate(domains):
        images, _ = stack_domain(task, domain, "train", n_per_domain, size, seed)
        feats.append(image_statistics(images))
        labels += [k] * len(images)
    scores = probe_accuracy(np.concatenate(feats), labels, folds, seed)
    return {"accuracy": float(scores.mean()), "chance": 1.0 / len(domains), "per_fold": scores.tolist()}


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N * H * W, 3C + 2): per channel the intensity and its Gaussian-smoothed
    versions (sigma 2 and 5 px), plus the pixel's (y, x) position in [-1, 1] (a location prior)."""
    n, _, h, w = images.shape
    smooth = [ndimage.gaussian_filter(images, sigma=(0, 0, s, s)) for s in (2.0, 5.0)]
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    coords = np.broadcast_to(np.stack([yy, xx])[None], (n, 2, h, w)).astype(np.float32)
    feats = np.concatenate([images, *smooth, coords], axis=1)
    return feats.transpose(0, 2, 3, 1).reshape(n * h * w, -1)


def dice_per_region(task: str, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean Dice over images per region of ``task`` for label maps (N, H, W); empty-vs-empty = 1
    (:func:`emclip.metrics.compute_dice`)."""
    spec = get_task(task)
    p = spec.region_masks(torch.from_numpy(pred))
    t = spec.region_masks(torch.from_numpy(target))
    return {name: float(np.mean(compute_dice(p[:, k], t[:, k]))) for k, name in enumerate(spec.region_names)}


def pixel_segmenter_shift(task: str, train_domains: Sequence[str] | None = None, n_train: int = 8,
                          n_test: int = 6, size: int = 64, seed: int = 0, pixels: int = 20000):
    """Fit a pixel classifier on each train domain, test it on every domain's test split.

    Returns a pandas DataFrame with columns ``train_domain, test_domain, region, dice``.
    """
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    domains = get_task(task).domains
    tests = {d: stack_domain(task, d, "test", n_test, size, seed) for d in domains}
    rows = []
    for source in train_domains or domains:
        images, masks = stack_domain(task, source, "train", n_train, size, seed)
        feats = pixel_features(images)
        pick = np.random.default_rng(seed).choice(len(feats), size=min(pixels, len(feats)), replace=False)
        model = HistGradientBoostingClassifier(max_iter=40, random_state=seed)
        model.fit(feats[pick], masks.reshape(-1)[pick])
        for target, (timages, tmasks) in tests.items():
            pred = model.predict(pixel_features(timages))
            scores = dice_per_region(task, pred.reshape(tmasks.shape).astype(np.int64), tmasks)
            rows += [{"train_domain": source, "test_domain": target, "region": r, "dice": d}
                     for r, d in scores.items()]
    return pd.DataFrame(rows)


def shift_summary(frame) -> dict:
    """In-domain vs out-of-domain mean Dice (and the drop) from :func:`pixel_segmenter_shift`."""
    same = frame["train_domain"] == frame["test_domain"]
    in_domain, out_domain = float(frame[same]["dice"].mean()), float(frame[~same]["dice"].mean())
    return {"in_domain_dice": in_domain, "out_domain_dice": out_domain, "dice_drop": in_domain - out_domain}
