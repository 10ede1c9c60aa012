"""2-D embeddings of stimuli (PCA, metric MDS, t-SNE), their quality, and Procrustes alignment.

Design notes:
    * PCA is an eigendecomposition of the smaller Gram/covariance matrix on the torch
      device, with scikit-learn's sign convention (the largest loading of each component
      is positive), so it equals ``sklearn.decomposition.PCA`` up to round-off.
    * Metric MDS is SMACOF started from classical (Torgerson) MDS instead of random
      restarts: one deterministic run that reaches a stress no higher than the best
      of scikit-learn's restarts in practice, at a fraction of the cost. The stress we
      report is Kruskal's stress-1, ``sqrt(Σ(d - δ)² / Σ d²)`` over pairs, scikit-learn's
      ``normalized_stress``.
    * t-SNE is scikit-learn's exact-gradient-free Barnes-Hut t-SNE with PCA
      initialisation and a fixed ``random_state``; the perplexity is clamped below N/3.
    * Every embedding carries its trustworthiness (scikit-learn's, k = 5 neighbours,
      fewer for tiny N) computed from the same stimulus distances.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.linalg import orthogonal_procrustes
from sklearn.manifold import TSNE, trustworthiness

from .errors import RepgeomError, choice_error

__all__ = [
    "EMBED_METHODS",
    "Embedding",
    "align_sequence",
    "classical_mds",
    "embed",
    "euclidean_distances",
    "pca_2d",
    "smacof",
    "stress1",
    "tsne_2d",
]

EMBED_METHODS = ("pca", "mds", "tsne")
DEFAULT_PERPLEXITY = 40.0
PERPLEXITY_RANGE = (1.0, 100.0)


@dataclass(frozen=True)
class Embedding:
    """2-D coordinates of the stimuli for one node, with their quality.

    Attributes:
        coords: (N, 2) float64.
        method: one of :data:`EMBED_METHODS`.
        model: model id.
        node: node name.
        labels: (N,) digit labels.
        trustworthiness: scikit-learn's trustworthiness in [0, 1] (1 = neighbours kept).
        stress: for MDS, stress-1 of the 2-D distances against the stimulus distances
            (``None`` for PCA and t-SNE, whose scale is not fitted to the distances).
        perplexity: the t-SNE perplexity actually used (``None`` for other methods).
    """

    coords: np.ndarray
    method: str
    model: str
    node: str
    labels: np.ndarray
    trustworthiness: float
    stress: float | None = None
    perplexity: float | None = None


def euclidean_distances(features: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N, N) Euclidean distances between rows of (N, D) ``features`` (centred Gram, exact zero diagonal)."""
    x = features.reshape(features.shape[0], -1).to(dtype)
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_(min=0.0)
    d2 = 0.5 * (d2 + d2.T)
    d2.fill_diagonal_(0.0)
    return d2.sqrt_()


def stress1(dissimilarities: np.ndarray | torch.Tensor, coords: np.ndarray | torch.Tensor) -> float:
    """Kruskal's stress-1 of ``coords`` against ``dissimilarities``, as scikit-learn normalises it.

    Args:
        dissimilarities: (N, N) target dissimilarities δ.
        coords: (N, k) embedding.

    Returns:
        ``sqrt(Σ_{i<j} (d_ij - δ_ij)² / Σ_{i<j} d_ij²)`` with d the embedded distances.
    """
    delta = torch.as_tensor(np.asarray(dissimilarities), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
    d = torch.cdist(x, x)
    iu = torch.triu_indices(d.shape[0], d.shape[0], offset=1)
    dd, de = d[iu[0], iu[1]], delta[iu[0], iu[1]]
    denom = float((dd * dd).sum())
    return float(math.sqrt(float(((dd - de) ** 2).sum()) / denom)) if denom > 0 else 0.0


def classical_mds(dissimilarities: torch.Tensor, n_components: int = 2) -> torch.Tensor:
    """Torgerson's classical MDS: the top eigenvectors of the double-centred -½δ²."""
    d2 = dissimilarities.to(torch.float64) ** 2
    n = d2.shape[0]
    j = torch.eye(n, dtype=d2.dtype, device=d2.device) - 1.0 / n
    b = -0.5 * j @ d2 @ j
    vals, vecs = torch.linalg.eigh(0.5 * (b + b.T))
    vals, vecs = vals.flip(0)[:n_components], vecs.flip(1)[:, :n_components]
    coords = vecs * vals.clamp(min=0.0).sqrt()
    # deterministic sign: largest-magnitude coordinate of each axis positive
    signs = torch.sign(coords.gather(0, coords.abs().argmax(0, keepdim=True)))
    return coords * torch.where(signs == 0, torch.ones_like(signs), signs)


def smacof(
    dissimilarities: torch.Tensor,
    init: torch.Tensor | None = None,
    max_iter: int = 300,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, float, int]:
    """Metric MDS by SMACOF (Guttman transforms), on the dissimilarities' device.

    Args:
        dissimilarities: (N, N) symmetric, zero diagonal.
        init: (N, k) start; classical MDS when ``None``.
        max_iter: most Guttman transforms.
        eps: stop when the stress falls by less than ``eps`` relative to Σd²/2, as
            scikit-learn's ``smacof`` does.

    Returns:
        ``(coords, stress1, iterations)``.
    """
    delta = dissimilarities.to(torch.float64)
    n = delta.shape[0]
    x = classical_mds(delta) if init is None else init.to(delta)
    if n < 3:
        return x, stress1(delta.cpu(), x.cpu()), 0
    old = None
    it = 0
    for it in range(1, max_iter + 1):
        d = torch.cdist(x, x)
        ratio = torch.where(d > 0, delta / d.clamp_min(1e-12), torch.zeros_like(d))
        b = -ratio
        b.diagonal().add_(ratio.sum(dim=1))
        x = (b @ x) / n
        d = torch.cdist(x, x)
        raw = float(((d - delta) ** 2).sum()) / 2.0
        if old is not None and (old - raw) / (float((d * d).sum()) / 2.0) < eps:
            break
        old = raw
    return x, stress1(delta.cpu(), x.cpu()), it


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The first two principal-component scores of (N, D) ``features``, sklearn's signs.

    Returns:
        (N, 2) float64 on the features' device.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(2, n, d)
    if n <= d:
        vals, u = torch.linalg.eigh(x @ x.T)
        vals, u = vals.flip(0)[:k].clamp(min=0.0), u.flip(1)[:, :k]
        s = vals.sqrt()
        scores = u * s
        components = (x.T @ u) / torch.where(s > 0, s, torch.ones_like(s))  # (D, k)
    else:
        vals, v = torch.linalg.eigh(x.T @ x)
        components = v.flip(1)[:, :k]
        scores = x @ components
    # scikit-learn (>= 1.5) flips each component so its largest-|loading| entry is positive
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    scores = scores * torch.where(signs == 0, torch.ones_like(signs), signs)
    if k < 2:
        scores = torch.cat([scores, torch.zeros(n, 2 - k, dtype=scores.dtype, device=scores.device)], dim=1)
    return scores


def clamp_perplexity(perplexity: float, n: int) -> float:
    """Perplexity kept strictly below N/3, with a warning when it had to be lowered."""
    if not PERPLEXITY_RANGE[0] <= perplexity <= PERPLEXITY_RANGE[1]:
        raise RepgeomError(
            f"perplexity must be from {PERPLEXITY_RANGE[0]:g} to {PERPLEXITY_RANGE[1]:g}, got {perplexity}"
        )
    limit = (n - 1) / 3.0
    if perplexity > limit:
        new = max(limit, 1.0 if n > 3 else 0.5)
        warnings.warn(f"t-SNE perplexity {perplexity:g} lowered to {new:.3g} (must stay below N/3 for N={n})", stacklevel=3)
        return float(new)
    return float(perplexity)


def tsne_2d(features: torch.Tensor, perplexity: float = DEFAULT_PERPLEXITY, seed: int = 0) -> tuple[np.ndarray, float]:
    """Seeded 2-D t-SNE (scikit-learn, PCA init).

    Returns:
        ``(coords, perplexity_used)``.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float32).cpu().numpy()
    p = clamp_perplexity(float(perplexity), x.shape[0])
    coords = TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(x)
    return coords.astype(np.float64), p


def _n_neighbors(n: int) -> int:
    return max(1, min(5, (n - 1) // 2 - 1 if n > 4 else 1))


def embed(
    features: torch.Tensor,
    method: str,
    labels: np.ndarray,
    model: str = "",
    node: str = "",
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    distances: torch.Tensor | None = None,
) -> Embedding:
    """Embed one node's stimuli in 2-D and measure how faithful the picture is.

    Args:
        features: (N, D) features.
        method: ``"pca"``, ``"mds"`` or ``"tsne"``.
        labels: (N,) digit labels (carried along).
        model: model id (carried along).
        node: node name (carried along).
        seed: random state for t-SNE (PCA and MDS are deterministic).
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: precomputed (N, N) Euclidean distances of ``features`` (optional).

    Returns:
        An :class:`Embedding`.
    """
    if method not in EMBED_METHODS:
        raise choice_error("embedding method", method, EMBED_METHODS)
    dist = euclidean_distances(features) if distances is None else distances.to(torch.float64)
    used_perplexity = None
    if method == "pca":
        coords = pca_2d(features).cpu().numpy()
    elif method == "mds":
        coords_t, _, _ = smacof(dist)
        coords = coords_t.cpu().numpy()
    else:
        coords, used_perplexity = tsne_2d(features, perplexity, seed)
    dist_np = dist.cpu().numpy()
    n = coords.shape[0]
    tw = float(trustworthiness(dist_np, coords, n_neighbors=_n_neighbors(n), metric="precomputed")) if n > 3 else 1.0
    return Embedding(
        coords=coords,
        method=method,
        model=model,
        node=node,
        labels=np.asarray(labels),
        trustworthiness=tw,
        stress=stress1(dist_np, coords) if method == "mds" else None,
        perplexity=used_perplexity,
    )


def align_sequence(embeddings: Sequence[Embedding], rescale: bool = False) -> list[Embedding]:
    """Procrustes-align each embedding to the one before it (rotation/reflection).

    Each frame is centred, optionally scaled to unit root-mean-square radius (so a frame
    whose activations are ten times larger does not shrink the others to a dot), then
    rotated onto the previous aligned frame, so an animation across nodes shows how
    points move rather than arbitrary turns and flips. Quality figures are unchanged
    (they describe the embeddings as computed).
    """
    out: list[Embedding] = []
    prev: np.ndarray | None = None
    for emb in embeddings:
        y = emb.coords - emb.coords.mean(axis=0)
        if rescale:
            rms = float(np.sqrt((y**2).sum(axis=1).mean()))
            y = y / rms if rms > 0 else y
        if prev is not None and y.shape == prev.shape:
            r, _ = orthogonal_procrustes(y, prev)
            y = y @ r
        out.append(replace(emb, coords=y))
        prev = y
    return out
