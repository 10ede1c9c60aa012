"""How far a path can be trusted: bootstrap over stimuli, confidence ellipses, reliable difference RDMs.

Design notes:
    *Bootstrap.* Stimuli are resampled with replacement within each class (the class
    sizes stay fixed), B times with a seeded generator. For each sample every path
    point's matrix is restricted to the sampled stimuli; the pairs of a stimulus with its
    own copy are left out of upper-triangle comparisons (their dissimilarity is 0 by
    construction, not by measurement), as rsatoolbox's pattern bootstrap does. The
    whitened comparisons and CKA double-centre whole matrices, where such zeros would
    read as structure every RDM shares (the noise landmark's whitened angle to labels
    fell from 1.47 to 1.40 rad); there each drawn stimulus is kept once, which makes
    their intervals those of a sample of about 63 % of the stimuli: wider, not biased
    by the copies.

    *Ellipses.* Each sample's angle matrix is placed in 2-D by metric MDS started from
    the main path's coordinates, then Procrustes-aligned to them (rotation, reflection
    and shift; no scaling, since the angles have units). The covariance of a point's
    aligned positions is its ellipse; ``1.96``-σ contours hold about 95 % of a Gaussian cloud.

    *Difference RDMs.* Two RDMs on the same stimuli are rank-transformed (each upper
    triangle's ranks scaled to [0, 1]) and subtracted. A cell's sign is reliable when at
    least 97.5 % of the bootstrap samples that contain the pair agree with it (a
    two-sided 95 % criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .comparisons import angles
from .rdm import symmetrised

__all__ = ["PathUncertainty", "bootstrap_indices", "bootstrap_path", "difference_rdm", "rank_transform"]


def bootstrap_indices(labels: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """(B, N) stimulus indices, resampled with replacement within each class, each sample sorted by class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return np.stack([np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups]) for _ in range(n_boot)])


@dataclass(frozen=True)
class PathUncertainty:
    """Bootstrap figures of one path.

    Attributes:
        distances: (B, K, K) angles of each bootstrap sample.
        low: (K, K) 2.5th percentile of each angle.
        high: (K, K) 97.5th percentile.
        coords: (B, K, 2) each sample's MDS, aligned to the main path.
        ellipses: (K, 2, 2) covariance of each point's aligned coordinates.
    """

    distances: np.ndarray
    low: np.ndarray
    high: np.ndarray
    coords: np.ndarray
    ellipses: np.ndarray

    @property
    def n_boot(self) -> int:
        """Number of bootstrap samples."""
        return int(self.distances.shape[0])


def _procrustes(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``x`` rotated (or reflected) and shifted onto ``target``, least squares, no scaling."""
    from scipy.linalg import orthogonal_procrustes  # noqa: PLC0415

    xc, tc = x - x.mean(0), target - target.mean(0)
    r, _ = orthogonal_procrustes(xc, tc)
    return xc @ r + target.mean(0)


def bootstrap_path(
    matrices: torch.Tensor, labels: np.ndarray, method: str, coords: np.ndarray, n_boot: int = 100, seed: int = 0
) -> PathUncertainty:
    """Bootstrap a path's angles and 2-D positions over its stimuli.

    Args:
        matrices: (K, N, N) the path points' RDMs (centred Gram matrices for ``cka``),
            the landmarks' included.
        labels: (N,) class labels.
        method: the path's comparison (see :data:`~repgeom.core.comparisons.PATH_COMPARISONS`).
        coords: (K, 2) the main path's MDS coordinates.
        n_boot: bootstrap samples.
        seed: seeds the resampling.

    Returns:
        The samples' angles, percentile intervals, aligned coordinates and ellipses.
    """
    from .embedding.mds import smacof  # noqa: PLC0415
    from .rdm import compare_rdms  # noqa: PLC0415

    mats = matrices.to(torch.float64)
    k, n = mats.shape[0], mats.shape[-1]
    flat_mats = mats.reshape(k, n * n)
    rows, cols = np.triu_indices(n, 1)
    dist = np.empty((n_boot, k, k))
    aligned = np.empty((n_boot, k, 2))
    start = torch.from_numpy(np.asarray(coords, dtype=np.float64))
    for b, idx in enumerate(bootstrap_indices(labels, n_boot, seed)):
        if method in ("cosine_cov", "corr_cov", "cka"):  # each drawn stimulus once (see the module notes)
            t = torch.from_numpy(np.unique(idx))
            d = angles(mats[:, t][:, :, t], method)
        else:  # gather the sampled pairs' entries straight from the full matrices (no K x N x N copy)
            i, j = idx[rows], idx[cols]
            ok = i != j
            flat = torch.from_numpy(np.minimum(i[ok], j[ok]) * n + np.maximum(i[ok], j[ok]))
            sim = compare_rdms(flat_mats[:, flat], method)
            d = symmetrised(torch.nan_to_num(torch.arccos(sim), nan=0.0), zero_diagonal=True)
        dist[b] = d.numpy()
        xy, _, _ = smacof(d, init=start, max_iter=300, eps=1e-7)
        aligned[b] = _procrustes(xy.numpy(), np.asarray(coords, dtype=np.float64))
    low, high = np.percentile(dist, [2.5, 97.5], axis=0)
    centred = aligned - aligned.mean(axis=0, keepdims=True)
    ellipses = np.einsum("bki,bkj->kij", centred, centred) / max(n_boot - 1, 1)
    return PathUncertainty(dist, low, high, aligned, ellipses)


def rank_transform(matrix: np.ndarray) -> np.ndarray:
    """An RDM's upper-triangle ranks (ties averaged) scaled to [0, 1], mirrored, zero diagonal."""
    from scipy.stats import rankdata  # noqa: PLC0415

    n = matrix.shape[0]
    rows, cols = np.triu_indices(n, 1)
    ranks = rankdata(matrix[rows, cols])
    scaled = (ranks - ranks.min()) / max(ranks.max() - ranks.min(), 1e-12)
    out = np.zeros((n, n))
    out[rows, cols] = scaled
    out[cols, rows] = scaled
    return out


def difference_rdm(a: np.ndarray, b: np.ndarray, labels: np.ndarray, n_boot: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rank-transformed ``a - b`` and the mask of cells whose sign the bootstrap confirms.

    Args:
        a: (N, N) RDM of model A at node i.
        b: (N, N) RDM of model B at node j, same stimuli.
        labels: (N,) class labels (resampling is within class).
        n_boot: bootstrap samples.
        seed: seeds the resampling.

    Returns:
        ``(diff, mask)``: (N, N) differences in [-1, 1] (exactly antisymmetric in A and B,
        symmetric in the cells, zero diagonal) and (N, N) booleans, True where at least
        97.5 % of the samples holding that pair give the same sign as ``diff``.
    """
    diff = rank_transform(a) - rank_transform(b)
    n = diff.shape[0]
    agree = np.zeros((n, n))
    seen = np.zeros((n, n))
    for idx in bootstrap_indices(labels, n_boot, seed):
        rows, cols = np.triu_indices(n, 1)
        ok = idx[rows] != idx[cols]
        i, j = idx[rows][ok], idx[cols][ok]
        sub = rank_transform(a[np.ix_(idx, idx)]) - rank_transform(b[np.ix_(idx, idx)])
        values = sub[rows[ok], cols[ok]]
        np.add.at(seen, (i, j), 1)
        np.add.at(agree, (i, j), np.sign(values) == np.sign(diff[i, j]))
    seen = seen + seen.T
    agree = agree + agree.T
    mask = (seen > 0) & (agree >= 0.975 * seen) & (diff != 0)
    np.fill_diagonal(mask, False)
    return diff, mask
