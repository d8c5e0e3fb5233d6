"""A 2-D toy of EM-CLIP's mechanism: a domain shift moves the clusters, EM per image follows them.

Each "image" is a set of 2-D unit feature vectors from three classes (a cluster per class on the
unit circle). A **domain shift** rotates every cluster of a domain by ``shift_deg`` (plus a small
per-image jitter): the features move, the classes keep their arrangement. Two ways to label them:

1. **a fixed classifier** (scikit-learn logistic regression) fitted once on source-domain points
   and applied to every point of every domain: the decision boundaries stay where the source
   put them, so points of a shifted cluster cross them;
2. **EM per image, then fixed anchors**: EM iterations (:func:`emclip.em.em_iterations`) start
   from bases learned on the source (EMANet's moving-average buffer) and move to *this image's*
   clusters; each centre is then matched one-to-one to a fixed class **anchor** (Hungarian
   assignment on the cosine, :func:`scipy.optimize.linear_sum_assignment`), and every point takes
   the class of its most responsible centre. The anchors play the role of the class text
   embeddings: fixed directions that name the image's own clusters.

This is a picture of the idea, not the model's code: by default EM-CLIP's decoder compares pixel
features rebuilt from the centres with the text embeddings; the model-config variant
``text.tie_centres`` matches the centres to the text with attention. The toy's numbers (angles,
spreads, lambda) are design choices of the lesson, not from the paper. Labelling by anchors works
while the shift keeps each cluster nearest its own anchor in the one-to-one matching: beyond half
the angle between neighbouring classes (60 degrees here) the arrangement is ambiguous, and the toy
shows that failure too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression

from emclip.em import em_iterations

__all__ = ["CLASS_ANGLES", "anchors", "em_anchor_labels", "fit_source_classifier", "make_domain",
           "match_to_anchors", "plot_shift_toy", "shift_experiment", "shift_figure"]

#: class directions of the source domain, in degrees (also the anchors' directions)
CLASS_ANGLES = (30.0, 150.0, 270.0)
COLOURS = ("tab:red", "tab:green", "tab:blue")


def _unit(angles_deg: np.ndarray) -> np.ndarray:
    rad = np.deg2rad(angles_deg)
    return np.stack([np.cos(rad), np.sin(rad)], axis=-1)


def anchors() -> np.ndarray:
    """The fixed class anchors (3, 2): unit vectors at :data:`CLASS_ANGLES`."""
    return _unit(np.asarray(CLASS_ANGLES))


def make_domain(shift_deg: float, n_images: int = 8, n_per_class: int = 40, spread_deg: float = 12.0,
                jitter_deg: float = 2.0, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_images`` images of a domain rotated by ``shift_deg``: a list of (points (N, 2), labels (N,)).

    Each image is rotated by ``shift_deg + jitter_deg * N(0, 1)``; each point of class c sits at
    ``CLASS_ANGLES[c] + rotation + spread_deg * N(0, 1)`` degrees on the unit circle.
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        rotation = shift_deg + jitter_deg * rng.standard_normal()
        labels = np.repeat(np.arange(len(CLASS_ANGLES)), n_per_class)
        angles = np.asarray(CLASS_ANGLES)[labels] + rotation + spread_deg * rng.standard_normal(labels.size)
        images.append((_unit(angles), labels))
    return images


def fit_source_classifier(images: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> LogisticRegression:
    """The fixed classifier: logistic regression on every point of the source images."""
    points = np.concatenate([p for p, _ in images])
    labels = np.concatenate([lab for _, lab in images])
    return LogisticRegression(random_state=seed).fit(points, labels)


def match_to_anchors(centres: np.ndarray, anchor_dirs: np.ndarray) -> np.ndarray:
    """One-to-one assignment of K centres (K, 2) to K anchors (K, 2) maximising the total cosine.

    Returns ``classes`` (K,): ``classes[k]`` is the anchor (class) of centre k (a permutation)."""
    cos = centres @ anchor_dirs.T / np.outer(np.linalg.norm(centres, axis=1), np.linalg.norm(anchor_dirs, axis=1))
    rows, cols = linear_sum_assignment(-cos)
    classes = np.empty(len(centres), dtype=int)
    classes[rows] = cols
    return classes


def em_anchor_labels(points: np.ndarray, init: np.ndarray, anchor_dirs: np.ndarray, iters: int = 3,
                     lam: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """EM on one image's points (N, 2) from bases ``init`` (K, 2), then labels through the anchors.

    Returns (labels (N,), centres (K, 2)): each point takes the anchor matched to its most
    responsible centre."""
    x = torch.as_tensor(points.T, dtype=torch.float32).unsqueeze(0)  # (1, C=2, N)
    mu0 = torch.as_tensor(init.T, dtype=torch.float32).unsqueeze(0)  # (1, C=2, K)
    mu, z = em_iterations(x, mu0, iters, lam)
    centres = mu[0].T.numpy()
    classes = match_to_anchors(centres, anchor_dirs)
    return classes[z[0].argmax(dim=1).numpy()], centres


def _source_bases(source, iters: int, lam: float) -> np.ndarray:
    """EMANet's buffer after training on the source: the mean of the images' final bases, renormalised."""
    finals = [em_anchor_labels(points, anchors(), anchors(), iters, lam)[1] for points, _ in source]
    mean = np.mean(finals, axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def _angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def shift_experiment(shifts=(0.0, 25.0, 45.0, 55.0, 75.0), n_images: int = 8, iters: int = 3, lam: float = 20.0,
                     seed: int = 0) -> pd.DataFrame:
    """One row per domain shift: the fixed classifier's and EM + anchors' accuracy over its images.

    Columns: ``shift_deg``, ``fixed_classifier_acc``, ``em_anchor_acc``, ``centre_move_deg`` (mean
    angle between each class's EM centre and its anchor: how far EM followed the clusters)."""
    source = make_domain(0.0, n_images, seed=seed)
    classifier = fit_source_classifier(source, seed)
    init = _source_bases(source, iters, lam)
    rows = []
    for i, shift in enumerate(shifts):
        domain = make_domain(shift, n_images, seed=seed + 1 + i)
        fixed, em_acc, moves = [], [], []
        for points, labels in domain:
            fixed.append(np.mean(classifier.predict(points) == labels))
            predicted, centres = em_anchor_labels(points, init, anchors(), iters, lam)
            em_acc.append(np.mean(predicted == labels))
            moves.append(_angle_between(centres[match_to_anchors(centres, anchors()).argsort()], anchors()).mean())
        rows.append({"shift_deg": float(shift), "fixed_classifier_acc": float(np.mean(fixed)),
                     "em_anchor_acc": float(np.mean(em_acc)), "centre_move_deg": float(np.mean(moves))})
    return pd.DataFrame(rows)


def shift_figure(shift_deg: float, iters: int = 3, lam: float = 20.0, seed: int = 0):
    """One image of a domain shifted by ``shift_deg``: fixed-classifier labels vs EM + anchors. Returns the Figure.

    The explorer's callback (a slider over the shift)."""
    import matplotlib.pyplot as plt

    source = make_domain(0.0, seed=seed)
    classifier = fit_source_classifier(source, seed)
    points, labels = make_domain(shift_deg, n_images=1, seed=seed + 100)[0]
    em_labels, centres = em_anchor_labels(points, _source_bases(source, iters, lam), anchors(), iters, lam)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2))
    _panel(axes[0], points, classifier.predict(points), labels, classifier=classifier)
    axes[0].set_title(f"fixed classifier: {np.mean(classifier.predict(points) == labels):.0%} correct")
    _panel(axes[1], points, em_labels, labels, centres=centres)
    axes[1].set_title(f"EM per image + anchors: {np.mean(em_labels == labels):.0%} correct")
    fig.suptitle(f"domain shifted by {shift_deg:.0f} degrees: colour = predicted class, x = wrong, "
                 "arrows = fixed anchors", fontsize=10)
    fig.tight_layout()
    return fig


def _panel(ax, points, predicted, labels, classifier=None, centres=None) -> None:
    if classifier is not None:  # the fixed decision regions
        grid = np.linspace(-1.3, 1.3, 131)
        gx, gy = np.meshgrid(grid, grid)
        regions = classifier.predict(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
        ax.contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5, 2.5], colors=COLOURS, alpha=0.12)
    theta = np.linspace(0, 2 * math.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="0.85", lw=1)
    right = predicted == labels
    colours = np.asarray(COLOURS)[predicted]
    ax.scatter(points[right, 0], points[right, 1], c=colours[right], s=12)
    ax.scatter(points[~right, 0], points[~right, 1], c=colours[~right], s=28, marker="x")
    for c, anchor in enumerate(anchors()):
        ax.annotate("", xy=anchor * 1.2, xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": COLOURS[c], "lw": 1.5})
    if centres is not None:
        ax.scatter(centres[:, 0] * 1.05, centres[:, 1] * 1.05, marker="*", s=220, c="k", label="EM centres")
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.set_aspect("equal")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_shift_toy(table: pd.DataFrame, ax=None):
    """Accuracy against the domain shift for both ways of labelling (the table of :func:`shift_experiment`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(table.shift_deg, table.fixed_classifier_acc, "o-", label="fixed classifier (source)")
    ax.plot(table.shift_deg, table.em_anchor_acc, "s-", label="EM per image + fixed anchors")
    ax.axvline(60, color="0.6", ls=":", lw=1)
    ax.text(61, 0.55, "half the angle\nbetween classes", fontsize=8, color="0.4")
    ax.set_xlabel("domain shift (degrees)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("labelling a shifted domain")
    return ax.figure
