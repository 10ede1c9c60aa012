"""One point's nearest neighbours in feature space and on a 2-D picture, and which ones the picture loses.

Design notes:
    The embeddings are drawn from the Euclidean distances between a node's features, so
    a point's true neighbours are its k nearest rows in feature space under that same
    distance. The picture keeps a neighbour when it is also among the point's k nearest
    points on the plot; the others are *lost* (the picture puts them further away than
    points that are not neighbours at all). Each feature-space neighbour's rank on the
    plot says by how much. Ties are broken by row order (a stable sort), so the answer
    does not depend on how a BLAS summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PointNeighbours", "point_neighbours"]


@dataclass(frozen=True)
class PointNeighbours:
    """The ``k`` nearest rows of one point, in feature space and on the plot.

    Attributes:
        row: the query row.
        feature_rows: (k,) rows of the nearest points in feature space, nearest first.
        feature_distances: (k,) their Euclidean feature distances.
        plot_rows: (k,) rows of the nearest points on the plot, nearest first.
        plot_distances: (k,) their distances on the plot.
        lost: (k,) bool, per feature-space neighbour: not among the plot's k nearest.
        plot_ranks: (k,) per feature-space neighbour, its rank on the plot (1 = nearest).
    """

    row: int
    feature_rows: np.ndarray
    feature_distances: np.ndarray
    plot_rows: np.ndarray
    plot_distances: np.ndarray
    lost: np.ndarray
    plot_ranks: np.ndarray

    @property
    def kept(self) -> int:
        """How many of the feature-space neighbours the plot keeps among its k nearest."""
        return int((~self.lost).sum())


def _nearest(points: np.ndarray, row: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, distances, order)``: the k nearest other rows to ``row``, and every other row by distance."""
    d = np.sqrt(((points - points[row]) ** 2).sum(axis=1))
    others = np.delete(np.arange(len(points)), row)
    order = others[np.argsort(d[others], kind="stable")]
    return order[:k], d[order[:k]], order


def point_neighbours(features: np.ndarray, coords: np.ndarray, row: int, k: int) -> PointNeighbours:
    """The ``k`` nearest neighbours of ``row`` in feature space and on the plot.

    Args:
        features: (N, D) features of one node (higher dims are flattened).
        coords: (N, 2) the plotted positions of the same N stimuli.
        row: the query point's row.
        k: how many neighbours (1 to N - 1).

    Returns:
        The neighbours, their distances, and which feature-space neighbours the plot loses.

    Raises:
        ValueError: for mismatched shapes, a row outside ``[0, N)`` or ``k`` outside ``[1, N - 1]``.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(coords, dtype=np.float64)
    n = x.shape[0]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"need (N, D) features and (N, 2) coordinates of the same N, got {x.shape} and {y.shape}")
    if not 0 <= row < n:
        raise ValueError(f"row {row} is outside 0..{n - 1}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be from 1 to {n - 1} (the other points), got {k}")
    f_rows, f_dist, _ = _nearest(x, row, k)
    p_rows, p_dist, p_order = _nearest(y, row, k)
    rank = np.empty(n, dtype=np.int64)
    rank[p_order] = np.arange(1, n)
    ranks = rank[f_rows]
    return PointNeighbours(row, f_rows, f_dist, p_rows, p_dist, ranks > k, ranks)
