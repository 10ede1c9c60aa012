"""Per-node metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_score

from repgeom.core.errors import RepgeomError
from repgeom.core.metrics import block_contrast, silhouette
from repgeom.core.rdm import compute_rdm


def _blobs(n=90, d=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return rng.normal(scale=2.0, size=(3, d))[labels] + rng.normal(size=(n, d)), labels


def test_silhouette_of_a_euclidean_rdm_uses_distances_not_squares():
    x, labels = _blobs()
    rdm = compute_rdm(torch.from_numpy(x), "euclidean").numpy()  # squared distance / D
    ours = silhouette(rdm, labels, "euclidean")
    assert ours == pytest.approx(silhouette_score(x, labels, metric="euclidean"), abs=1e-9)
    assert ours != pytest.approx(silhouette_score(rdm, labels, metric="precomputed"), abs=1e-3)  # squares would differ


@pytest.mark.parametrize("method", ["correlation", "cosine"])
def test_silhouette_of_other_rdms_uses_them_as_they_are(method):
    x, labels = _blobs(seed=1)
    rdm = compute_rdm(torch.from_numpy(x), method).numpy()
    ref = silhouette_score(squareform(pdist(x, method)), labels, metric="precomputed")
    assert silhouette(rdm, labels, method) == pytest.approx(ref, abs=1e-9)


def test_silhouette_without_two_full_classes_is_zero_and_bad_method_lists_choices():
    assert silhouette(np.zeros((3, 3)), np.array([0, 0, 1]), "euclidean") == 0.0
    with pytest.raises(RepgeomError, match="allowed: correlation, euclidean, cosine"):
        silhouette(np.zeros((4, 4)), np.array([0, 0, 1, 1]), "sqeuclidean")


def test_block_contrast_is_zero_without_structure_and_positive_with_it():
    x, labels = _blobs(seed=2)
    rdm = compute_rdm(torch.from_numpy(x), "correlation").numpy()
    assert block_contrast(rdm, labels) > 0.2
    flat = 1.0 - np.eye(len(labels))
    assert block_contrast(flat, labels) == pytest.approx(0.0)
