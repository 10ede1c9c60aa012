"""2-D embeddings of stimuli (PCA, metric MDS, t-SNE), their quality, and Procrustes alignment.

Design notes:
    * PCA is an eigendecomposition of the smaller Gram/covariance matrix on the torch
      device, with scikit-learn's sign convention (the largest loading of each component
      is positive), so it equals ``sklearn.decomposition.PCA`` up to round-off.
    * Metric MDS is SMACOF from a classical (Torgerson) start with a tight stopping rule
      (optionally plus seeded random starts, run as one batch, lowest stress kept)
      instead of scikit-learn's random restarts. The stress we
      report is Kruskal's stress-1, ``sqrt(Σ(d - δ)² / Σ d²)`` over pairs, scikit-learn's
      ``normalized_stress``.
    * t-SNE is scikit-learn's exact-gradient-free Barnes-Hut t-SNE with PCA
      initialisation and a fixed ``random_state``; the perplexity is clamped below N/3.
    * Every embedding carries its trustworthiness (scikit-learn's, k = 5 neighbours,
      fewer for tiny N) computed from the same stimulus distances; above 3,000 stimuli,
      on a seeded sample of 3,000 of them.
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
#: scikit-learn t-SNE iterations (250 with early exaggeration, then 250).
TSNE_ITERATIONS = 500
#: Above this many stimuli t-SNE uses openTSNE's FFT gradients.
TSNE_FFT_ABOVE = 3000
#: Metric MDS (SMACOF on N × N matrices) is offered up to this many stimuli.
MDS_MAX_N = 3000
#: Trustworthiness above this many stimuli is computed on a seeded sample of this size.
TRUST_SAMPLE = 3000
#: Random SMACOF starts besides the classical one for stimulus embeddings. Measured on the
#: seed's five recurrent steps (500 stimuli): the classical start alone ends within 0.2 % of
#: the best of scikit-learn's four random starts (lower at four of five nodes) in a fifth of
#: the time, while extra random starts cost 10x for no reliable gain; paths use 9 (K is small).
MDS_RANDOM_STARTS = 0
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


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(S, N, k) -> (S, N, N) Euclidean distances (``torch.cdist`` is slow on small batches)."""
    sq = (x * x).sum(dim=2)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * (x @ x.transpose(1, 2))).clamp_(min=0.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2.sqrt_()


def smacof(
    dissimilarities: torch.Tensor,
    init: torch.Tensor | None = None,
    max_iter: int = 1000,
    eps: float = 1e-7,
    n_random: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, float, int]:
    """Metric MDS by SMACOF (Guttman transforms), on the dissimilarities' device.

    All starts run together as one batch: the classical-MDS start (or ``init``) plus
    ``n_random`` seeded random ones; the lowest stress wins.

    Args:
        dissimilarities: (N, N) symmetric, zero diagonal.
        init: (N, k) start; classical MDS when ``None``.
        max_iter: most Guttman transforms.
        eps: stop a start when its stress falls by less than ``eps`` relative to Σd²/2
            (scikit-learn's criterion, ten times tighter than its default: a batch of
            well-started runs is cheap, so we let them settle).
        n_random: extra random starts (uniform in [0, 1)², as scikit-learn's).
        seed: seeds the random starts.

    Returns:
        ``(coords, stress1, iterations)`` of the best start.
    """
    delta = dissimilarities.to(torch.float64)
    n = delta.shape[0]
    first = classical_mds(delta) if init is None else init.to(delta)
    if n < 3:
        return first, stress1(delta.cpu(), first.cpu()), 0
    gen = torch.Generator().manual_seed(seed)
    starts = [first] + [torch.rand(n, first.shape[1], generator=gen, dtype=torch.float64).to(delta.device) for _ in range(n_random)]
    x = torch.stack(starts)  # (S, N, k)
    floor = 1e-9 * float(delta.abs().max()) + 1e-300  # coincident points: keep the ratio finite
    d = _pairwise(x)
    old = ((d - delta) ** 2).sum(dim=(1, 2)) / 2.0
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    it = 0
    for it in range(1, max_iter + 1):
        ratio = delta / d.clamp_min(floor)
        ratio.diagonal(dim1=1, dim2=2).zero_()
        # Guttman transform X <- B(X) X / n without forming B = diag(rowsum) - ratio
        new = (ratio.sum(dim=2, keepdim=True) * x - ratio @ x) / n
        x = torch.where(active[:, None, None], new, x)
        d = _pairwise(x)
        raw = ((d - delta) ** 2).sum(dim=(1, 2)) / 2.0
        active &= (old - raw) / ((d * d).sum(dim=(1, 2)) / 2.0) >= eps
        old = raw
        if not bool(active.any()):
            break
    stresses = [stress1(delta.cpu(), xi.cpu()) for xi in x]
    best = int(np.argmin(stresses))
    return x[best], float(stresses[best]), it


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
    """Seeded 2-D t-SNE with PCA initialisation.

    Up to :data:`TSNE_FFT_ABOVE` stimuli: scikit-learn's Barnes-Hut t-SNE with 250
    early-exaggeration plus 250 normal iterations (its default adds 500 more that do not
    change the trustworthiness of these embeddings: measured within 0.001 on the seed's
    five steps, in half the time). Above it: openTSNE's FFT-accelerated gradients, which
    scale linearly in N (750 iterations, its defaults).

    Returns:
        ``(coords, perplexity_used)``.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float32).cpu().numpy()
    p = clamp_perplexity(float(perplexity), x.shape[0])
    if x.shape[0] > TSNE_FFT_ABOVE:
        from openTSNE import TSNE as OpenTSNE  # noqa: PLC0415 - only for large N

        coords = np.asarray(OpenTSNE(perplexity=p, initialization="pca", random_state=seed, n_jobs=torch.get_num_threads(), negative_gradient_method="fft").fit(x))
    else:
        coords = TSNE(n_components=2, perplexity=p, init="pca", max_iter=TSNE_ITERATIONS, random_state=seed).fit_transform(x)
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
    n = features.shape[0]
    if method == "mds" and n > MDS_MAX_N:
        raise RepgeomError(f"MDS is offered up to {MDS_MAX_N} stimuli (it fits all N² distances); got {n}: use PCA or t-SNE, or fewer images per class")
    dist = euclidean_distances(features) if distances is None and n <= TRUST_SAMPLE else distances
    used_perplexity = None
    if method == "pca":
        coords = pca_2d(features).cpu().numpy()
    elif method == "mds":
        coords_t, _, _ = smacof(dist, n_random=MDS_RANDOM_STARTS, seed=seed)
        coords = coords_t.cpu().numpy()
    else:
        coords, used_perplexity = tsne_2d(features, perplexity, seed)
    if n > TRUST_SAMPLE:  # a seeded sample keeps the O(N²) ranking bounded
        pick = np.sort(np.random.default_rng(seed).choice(n, TRUST_SAMPLE, replace=False))
        sub = torch.as_tensor(pick, device=features.device)
        dist_np = euclidean_distances(features.reshape(n, -1)[sub]).cpu().numpy()
        tw = float(trustworthiness(dist_np, coords[pick], n_neighbors=5, metric="precomputed"))
    else:
        dist_np = dist.cpu().numpy()
        tw = float(trustworthiness(dist_np, coords, n_neighbors=_n_neighbors(n), metric="precomputed")) if n > 3 else 1.0
    return Embedding(
        coords=coords,
        method=method,
        model=model,
        node=node,
        labels=np.asarray(labels),
        trustworthiness=tw,
        stress=stress1(dist.cpu().numpy(), coords) if method == "mds" else None,
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
