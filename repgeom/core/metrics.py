"""Per-node numbers that tie geometry to behaviour: class-block contrast and silhouette."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

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


def silhouette(rdm: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of the digit classes under the RDM's dissimilarities, in [-1, 1].

    Returns 0 when there are fewer than two classes or fewer than two stimuli per class.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2:
        return 0.0
    d = np.clip(np.asarray(rdm, dtype=np.float64), 0.0, None)
    np.fill_diagonal(d, 0.0)
    return float(silhouette_score(d, labels, metric="precomputed"))
