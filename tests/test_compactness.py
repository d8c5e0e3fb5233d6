"""Compactness measures on synthetic clustered data, and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from emclip.compactness import (
    between_within_ratio,
    centroid_cosine_distance,
    feature_compactness,
    flatten_dense,
    labels_to_grid,
    silhouette,
)


def clustered(spread: float, seed: int = 0, n_per: int = 60, c: int = 16, k: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, c))
    feats = np.concatenate([centres[i] + spread * rng.normal(size=(n_per, c)) for i in range(k)])
    labels = np.repeat(np.arange(k), n_per)
    return feats, labels


def test_tight_clusters_score_better_than_dispersed_ones():
    tight = feature_compactness(*clustered(0.05))
    loose = feature_compactness(*clustered(1.5))
    assert tight["centroid_cosine_distance"] < loose["centroid_cosine_distance"]
    assert tight["between_within"] > loose["between_within"]
    assert tight["silhouette"] > loose["silhouette"]
    assert tight["silhouette"] > 0.8


def test_collapsed_classes_have_zero_distance():
    feats = np.repeat(np.eye(3), 5, axis=0) * 7.0  # scale must not matter
    labels = np.repeat(np.arange(3), 5)
    assert centroid_cosine_distance(feats, labels) == pytest.approx(0.0, abs=1e-12)
    assert between_within_ratio(feats, labels) > 1e6


def test_centroid_distance_by_hand():
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    # class 0 centroid at 45 degrees: each point is cos 45 away -> 1 - 0.7071; class 1: 0
    expected = 2 * (1 - np.sqrt(0.5)) / 4
    assert centroid_cosine_distance(feats, labels) == pytest.approx(expected)


def test_silhouette_matches_sklearn_on_normalised_features():
    feats, labels = clustered(0.8, seed=3)
    expected = silhouette_score(feats, labels, metric="cosine")  # cosine is scale-invariant
    assert silhouette(feats, labels, sample_size=None) == pytest.approx(expected, abs=1e-9)
    sub = silhouette(torch.tensor(feats), torch.tensor(labels), sample_size=50, seed=1)
    assert sub == pytest.approx(silhouette(feats, labels, sample_size=50, seed=1), abs=1e-6)
    assert sub == pytest.approx(expected, abs=0.2)


def test_labels_to_grid_majority_and_nearest():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 2
    labels[0, 0, 0] = 1  # minority in its cell
    labels[0, 2:, 2:] = 1
    grid = labels_to_grid(labels, (2, 2))
    assert grid.tolist() == [[[2, 0], [0, 1]]]
    assert labels_to_grid(labels, (2, 2), mode="nearest").tolist() == [[[1, 0], [0, 1]]]


def test_flatten_dense_pairs_features_with_grid_labels():
    feats = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[1, 4:, 4:] = 3
    flat, flat_labels = flatten_dense(feats, labels)
    assert flat.shape == (8, 3) and flat_labels.tolist() == [0, 0, 0, 0, 0, 0, 0, 3]
    torch.testing.assert_close(flat[7], feats[1, :, 1, 1])


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="flatten_dense"):
        centroid_cosine_distance(np.zeros((2, 3, 4, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        silhouette(np.random.rand(10, 3), np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="labels must be"):
        between_within_ratio(np.random.rand(10, 3), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="majority"):
        labels_to_grid(torch.zeros(1, 4, 4, dtype=torch.long), (2, 2), mode="mode")
