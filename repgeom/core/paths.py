"""Representational paths: every node's RDM as a point, placed by MDS of RDM-to-RDM angles.

Design notes (seed-reference §4.6):
    1. RDMs of the chosen nodes of each model, in model order then graph order
       (Euclidean by default, as the seed's ``rep_path``).
    2. The one-hot ``labels`` RDM, computed by the same method, appended as the last row.
    3. Pairwise comparison of the upper triangles (cosine by default), turned into
       angles with ``arccos``; NaN -> 0; symmetrised.
    4. Metric MDS to 2-D of the *full* matrix, duplicate ``input`` rows included, as the
       seed does. We run SMACOF from the classical-MDS start plus nine seeded random
       starts (the seed's ``n_init=10``) as one batch and keep the lowest stress.
    5. For display only, every ``input`` row after the first is dropped
       (:attr:`RepPath.display_rows`), because all models share the same input RDM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .embedding.mds import smacof
from .errors import choice_error
from .rdm import RDM, onehot_rdm, rdm_distances, symmetrised

__all__ = ["RepPath", "compute_path"]


@dataclass(frozen=True)
class RepPath:
    """A representational path over one or more models.

    Attributes:
        names: K row names, ``"<model>/<node>"``, then the landmarks' names, then ``"labels"`` last.
        models: K model ids (``"landmark"`` for a landmark, ``"labels"`` for the last row).
        nodes: K node names (``"labels"`` for the last row).
        distances: (K, K) angles between RDMs, radians.
        coords: (K, 2) metric-MDS coordinates.
        stress: stress-1 of ``coords`` against ``distances``.
        rdm_method: the RDM method used inside the path.
        compare: the comparison method.
        display_rows: rows kept for the heat map (later duplicate ``input`` rows removed).
    """

    names: list[str]
    models: list[str]
    nodes: list[str]
    distances: np.ndarray
    coords: np.ndarray
    stress: float
    rdm_method: str
    compare: str
    display_rows: np.ndarray

    def rows_of(self, model: str) -> np.ndarray:
        """Row indices of ``model``'s nodes, in path order."""
        return np.flatnonzero(np.asarray(self.models) == model)

    @property
    def to_labels(self) -> np.ndarray:
        """(K,) angle of every row to the ``labels`` RDM."""
        return self.distances[:, -1]

    @property
    def landmark_rows(self) -> np.ndarray:
        """Row indices of the reference landmarks (``labels`` excluded), in path order."""
        return np.flatnonzero(np.asarray(self.models) == "landmark")


def compute_path(
    rdms: Sequence[RDM],
    labels: np.ndarray,
    compare: str = "cosine",
    seed: int = 0,
    n_random_starts: int = 9,
    landmarks: Sequence[RDM] = (),
    labels_matrix: np.ndarray | None = None,
) -> RepPath:
    """Build the representational path of the given RDMs, reference landmarks and the ``labels`` RDM.

    Args:
        rdms: node RDMs, grouped by model, in graph order, all of one method and
            one stimulus set (for ``compare="cka"``: the nodes' centred Gram matrices).
        labels: (N,) class labels of the stimuli.
        compare: one of :data:`~repgeom.core.comparisons.PATH_COMPARISONS` (each as an angle).
        seed: seeds the random SMACOF starts.
        n_random_starts: random starts tried besides the classical-MDS start.
        landmarks: reference points placed before ``labels`` (their ``model`` is ``"landmark"``).
        labels_matrix: the ``labels`` point's (N, N) matrix (default: the one-hot labels RDM
            by the RDMs' method; for ``cka`` the caller passes the one-hot Gram matrix).

    Returns:
        A :class:`RepPath`; ``labels`` is always its last row.
    """
    from .comparisons import PATH_COMPARISONS, angles, kendall_tau_a  # noqa: PLC0415

    if not rdms:
        raise ValueError("a path needs at least one RDM")
    if compare not in PATH_COMPARISONS:
        raise choice_error("comparison method", compare, PATH_COMPARISONS)
    method = rdms[0].method
    n = rdms[0].matrix.shape[0]
    points = [*rdms, *landmarks]
    last = onehot_rdm(labels, method).cpu().numpy() if labels_matrix is None else np.asarray(labels_matrix, dtype=np.float64)
    if compare in ("cosine", "corr", "spearman", "tau_a"):
        rows, cols = np.triu_indices(n, 1)
        flat = rows * n + cols
        vectors = np.empty((len(points) + 1, flat.size))  # each upper triangle, gathered once (no K × N × N stack)
        for k, r in enumerate(points):
            np.take(np.asarray(r.matrix, dtype=np.float64), flat, out=vectors[k])
        np.take(last, flat, out=vectors[-1])
        if compare == "tau_a":
            dist = symmetrised(torch.nan_to_num(torch.arccos(kendall_tau_a(vectors)), nan=0.0), zero_diagonal=True)
        else:
            dist = rdm_distances(torch.from_numpy(vectors), compare)
    else:
        stack = torch.from_numpy(np.stack([np.asarray(r.matrix, dtype=np.float64) for r in points] + [last]))
        dist = angles(stack, compare)
    coords_t, stress, _ = smacof(dist, n_random=n_random_starts, seed=seed)
    coords = coords_t.cpu().numpy()
    models = [r.model for r in points] + ["labels"]
    nodes = [r.node for r in points] + ["labels"]
    names = [r.name if r.model != "landmark" else r.node for r in points] + ["labels"]
    seen_input = False
    keep = []
    for i, node in enumerate(nodes):
        if node == "input" and models[i] != "landmark":
            if seen_input:
                continue
            seen_input = True
        keep.append(i)
    return RepPath(names, models, nodes, dist.numpy(), coords, stress, method, compare, np.asarray(keep))
