"""Per-node numbers that tie geometry to behaviour: class-block contrast and silhouette."""

from __future__ import annotations

import numpy as np

from .errors import choice_error
from .rdm import RDM_METHODS

__all__ = ["block_contrast", "silhouette"]


def block_contrast(rdm: np.ndarray, labels: np.ndarray) -> float:
    """How much more dissimilar stimuli of different classes are than those of one class.

    Args:
        rdm: (N, N) dissimilarities.
        labels: (N,) class labels.

    Returns:
        ``(mean between-class - mean within-class) / mean off-diagonal``; 0 for no class
        structure, larger for stronger blocks (the seed's claim 3).
    """
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    within = rdm[same & off]
    between = rdm[~same]
    mean_all = rdm[off].mean()
    if within.size == 0 or between.size == 0 or mean_all == 0:
        return 0.0
    return float((between.mean() - within.mean()) / mean_all)


def silhouette(rdm: np.ndarray, labels: np.ndarray, method: str) -> float:
    """Mean silhouette of the classes under the RDM's distances, in [-1, 1].

    The silhouette compares mean distances, so it needs distances rather than squared
    ones: a Euclidean RDM (squared distance / D, see :func:`repgeom.core.rdm.compute_rdm`)
    is taken by its square root, the Euclidean distance / √D (the silhouette does not
    change with the scale). Correlation and cosine RDMs are used as they are.

    Args:
        rdm: (N, N) dissimilarities.
        labels: (N,) class labels.
        method: the RDM's method, one of :data:`repgeom.core.rdm.RDM_METHODS`.

    Returns:
        scikit-learn's ``silhouette_score(..., metric="precomputed")``; 0 when there are fewer
        than two classes or fewer than two stimuli per class.
    """
    if method not in RDM_METHODS:
        raise choice_error("RDM method", method, RDM_METHODS)
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2:
        return 0.0
    from sklearn.metrics import silhouette_score  # noqa: PLC0415 - scikit-learn costs 0.5 s to import

    d = np.clip(np.asarray(rdm, dtype=np.float64), 0.0, None)
    if method == "euclidean":
        d = np.sqrt(d)
    np.fill_diagonal(d, 0.0)
    return float(silhouette_score(d, labels, metric="precomputed"))
