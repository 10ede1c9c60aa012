"""How honest a 2-D picture of distances is: Shepard pairs, per-point distortion, Procrustes alignment.

Design notes:
    A metric MDS (of stimuli, or of a path's RDM angles) fits plotted distances to true
    ones; its Kruskal stress-1 sums the misfit into one number. A Shepard diagram shows
    every pair instead (plotted distance against true distance), and the per-point figures
    say which points are misplaced: for each point, its nearest neighbours on the plot
    with their true and plotted distances, and the point's own share of stress-1
    (``sqrt(Σ_j (d_ij - δ_ij)² / Σ_j d_ij²)``).

    Pictures of the same points made under different comparisons are laid side by side
    after :func:`procrustes_align`: rotation, reflection and shift onto a reference, and
    no scaling unless asked, so that a smaller spread stays visibly smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NeighbourDistortion", "confidence_ellipse", "neighbour_distortion", "procrustes_align", "rms_radius", "shepard_pairs"]


def _plotted(coords: np.ndarray) -> np.ndarray:
    x = np.asarray(coords, dtype=np.float64)
    diff = x[:, None, :] - x[None, :, :]
    return np.sqrt((diff**2).sum(axis=-1))


def _check(true: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64)
    coords = np.asarray(coords, dtype=np.float64)
    if true.ndim != 2 or true.shape[0] != true.shape[1] or coords.ndim != 2 or coords.shape[0] != true.shape[0]:
        raise ValueError(f"need an (N, N) distance matrix and (N, k) coordinates, got {true.shape} and {coords.shape}")
    return true, coords


def shepard_pairs(true: np.ndarray, coords: np.ndarray, max_pairs: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of a Shepard diagram: true and plotted distance of each pair ``i < j``.

    Args:
        true: (N, N) symmetric true distances (angles of a path, stimulus distances).
        coords: (N, k) the plotted positions.
        max_pairs: keep a seeded random subset of this many pairs (all when ``None`` or
            when there are fewer).
        seed: seeds the subset.

    Returns:
        ``(true, plotted, pairs)``: (P,) true distances, (P,) plotted Euclidean
        distances and (P, 2) the pairs' indices, in ``np.triu_indices`` order.
    """
    true, coords = _check(true, coords)
    rows, cols = np.triu_indices(true.shape[0], 1)
    if max_pairs is not None and rows.size > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(rows.size, max_pairs, replace=False))
        rows, cols = rows[keep], cols[keep]
    plotted = np.sqrt(((coords[rows] - coords[cols]) ** 2).sum(axis=1))
    return true[rows, cols], plotted, np.stack([rows, cols], axis=1)


@dataclass(frozen=True)
class NeighbourDistortion:
    """Per-point distortion of a 2-D picture.

    Attributes:
        neighbours: (N, k) indices of each point's ``k`` nearest points on the plot.
        plotted: (N, k) plotted distances to them.
        true: (N, k) true distances to them.
        stress: (N,) each point's stress-1, ``sqrt(Σ_j (d_ij - δ_ij)² / Σ_j d_ij²)``.
    """

    neighbours: np.ndarray
    plotted: np.ndarray
    true: np.ndarray
    stress: np.ndarray


def neighbour_distortion(true: np.ndarray, coords: np.ndarray, k: int = 3) -> NeighbourDistortion:
    """Each point's nearest neighbours on the plot with their true and plotted distances.

    Args:
        true: (N, N) symmetric true distances.
        coords: (N, m) the plotted positions.
        k: neighbours per point (at most N - 1).

    Returns:
        A :class:`NeighbourDistortion`; ties between plotted distances go to the lower index.
    """
    true, coords = _check(true, coords)
    n = true.shape[0]
    k = max(0, min(k, n - 1))
    plotted = _plotted(coords)
    masked = plotted.copy()
    np.fill_diagonal(masked, np.inf)
    near = np.argsort(masked, axis=1, kind="stable")[:, :k]
    off = ~np.eye(n, dtype=bool)
    num = (((plotted - true) ** 2) * off).sum(axis=1)
    den = ((plotted**2) * off).sum(axis=1)
    stress = np.sqrt(np.divide(num, den, out=np.zeros(n), where=den > 0))
    return NeighbourDistortion(near, np.take_along_axis(plotted, near, 1), np.take_along_axis(true, near, 1), stress)


def procrustes_align(coords: np.ndarray, reference: np.ndarray, scale: bool = False) -> np.ndarray:
    """``coords`` rotated (or reflected) and shifted onto ``reference`` by least squares.

    Args:
        coords: (N, m) positions to move.
        reference: (N, m) positions to match.
        scale: also scale ``coords`` by the least-squares factor (as
            ``scipy.spatial.procrustes`` does after normalising both).

    Returns:
        (N, m) the moved ``coords``; their centroid is the reference's.
    """
    from scipy.linalg import orthogonal_procrustes  # noqa: PLC0415 - scipy.linalg loads on first use

    x = np.asarray(coords, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"coordinates {x.shape} and reference {ref.shape} differ in shape")
    xc, rc = x - x.mean(axis=0), ref - ref.mean(axis=0)
    r, s = orthogonal_procrustes(xc, rc)
    factor = s / float((xc**2).sum()) if scale and float((xc**2).sum()) > 0 else 1.0
    return factor * (xc @ r) + ref.mean(axis=0)


def confidence_ellipse(covariance: np.ndarray, centre: np.ndarray, scale: float = 1.96, n_points: int = 48) -> np.ndarray:
    """Points of the contour ``(x - c)ᵀ Σ⁻¹ (x - c) = scale²`` of a 2-D Gaussian, closed.

    Args:
        covariance: (2, 2) symmetric positive semi-definite covariance Σ.
        centre: (2,) the centre c.
        scale: the contour's Mahalanobis radius (1.96: 95 % of each axis's marginal).
        n_points: points on the contour (the first is repeated at the end).

    Returns:
        (n_points + 1, 2) positions.
    """
    values, vectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    radii = scale * np.sqrt(np.clip(values, 0.0, None))
    t = np.linspace(0.0, 2.0 * np.pi, n_points + 1)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.asarray(centre, dtype=np.float64) + (circle * radii) @ vectors.T


def rms_radius(coords: np.ndarray) -> float:
    """Root-mean-square distance of (N, m) points from their centroid."""
    x = np.asarray(coords, dtype=np.float64)
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean())) if len(x) else 0.0
