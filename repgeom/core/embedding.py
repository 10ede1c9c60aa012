"""2-D embeddings of stimuli (PCA, metric MDS, t-SNE), their quality, and Procrustes alignment.

Design notes:
    * PCA takes the top two eigenvectors of the smaller Gram/covariance matrix on the torch
      device (subspace iteration with a residual check, :func:`_top_eigh`, rather than a full
      eigendecomposition), with scikit-learn's sign convention (the largest loading of each
      component is positive), so it equals ``sklearn.decomposition.PCA`` up to round-off.
      Given the stimulus distances, the Gram matrix is ``-½ J d² J`` (no product over D).
    * Metric MDS is SMACOF from the classical (Torgerson) start and perturbed copies of it,
      raced (see :data:`MDS_STARTS`), with over-relaxed Guttman transforms and a tight
      stopping rule; several nodes and all their starts run as one batch of (B, S, N, N)
      operations (in 2-D on the CPU, fused numba kernels), in float32 from
      :data:`MDS_FLOAT32_MIN_N` stimuli. The stress we report
      is Kruskal's stress-1, ``sqrt(Σ(d - δ)² / Σ d²)`` over pairs, in float64.
    * t-SNE (perplexity clamped below N/3) takes exact nearest neighbours on the top 50
      principal components and openTSNE's perplexity affinities, PCA start and
      gradient-descent schedule. Up to 1,000 stimuli the components come from the stimulus
      distances (already computed for trustworthiness: one N × N eigendecomposition); above,
      from the features (torch, on the device; seeded randomised SVD; blocked matrix
      products). The gradient depends on N, by measurement on this project's 2-core CPU:
      exact and dense in float32 up to 1,000 stimuli (fused numba kernels on the CPU,
      :mod:`repgeom.core.kernels`; torch elsewhere), several nodes of one N as one
      (B, N, N) batch, for 75 + 175 iterations (:data:`TSNE_EXACT_ITERATIONS`);
      openTSNE's Barnes-Hut up to 5,000 (twice as fast as its FFT there), its FFT
      interpolation above, with 250 early-exaggeration and 500 (FFT: 250) final iterations
      (N = 10,000: each costs more as the embedding spreads, and trustworthiness and the
      2-D neighbours' digit accuracy stop changing after ~150 of them). Trustworthiness
      stays within 0.008 of scikit-learn's ``TSNE(perplexity=40)`` on the seed's five
      recurrent steps (N = 500, seeds 0-2; one seed to the next, scikit-learn's own varies
      by up to 0.006).
    * Every embedding carries its trustworthiness (scikit-learn's definition, k = 5
      neighbours, fewer for tiny N; computed by counting, :func:`trustworthiness_from_distances`)
      from the same stimulus distances; above 3,000 stimuli, on a seeded sample of 3,000.
    * Large N × N work reuses preallocated buffers: a fresh multi-megabyte tensor per
      iteration costs page faults comparable to the arithmetic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.linalg import orthogonal_procrustes

from .errors import RepgeomError, choice_error
from .rdm import centred_gram

__all__ = [
    "EMBED_METHODS",
    "Embedding",
    "align_sequence",
    "classical_mds",
    "embed",
    "embed_many",
    "euclidean_distances",
    "pca_2d",
    "prepare_backends",
    "smacof",
    "smacof_many",
    "stress1",
    "trustworthiness_from_distances",
    "tsne_2d",
    "tsne_many",
]

EMBED_METHODS = ("pca", "mds", "tsne")
#: t-SNE runs on this many principal components of the features (distances kept above).
TSNE_PCA_DIMS = 50
#: Exact PCA for t-SNE while min(N, D) is at most this; a seeded randomised SVD above: matrix
#: products and thin QRs, 0.4 s at N = 10,000, D = 1,296 where the exact eigendecomposition
#: takes 0.5 s alone and 6-11 s when another process holds a core (MKL's threads wait on it).
TSNE_EXACT_PCA_MAX = 100
#: Power iterations of that randomised SVD (top two components then equal the exact ones to
#: 1e-13, the tenth to 1e-8, on the recurrent model's conv2_4 features).
TSNE_PCA_POWER_ITER = 4
#: t-SNE iterations with early exaggeration (12, momentum 0.5), Barnes-Hut and FFT gradients.
TSNE_EXAGGERATION_ITER = 250
#: t-SNE iterations after early exaggeration (momentum 0.8) with exact or Barnes-Hut gradients.
TSNE_ITERATIONS = 500
#: The same with FFT gradients (large N, where each iteration costs most).
TSNE_ITERATIONS_FFT = 250
#: Exact (dense, torch) t-SNE gradients up to this many stimuli.
TSNE_EXACT_MAX = 1000
#: Iterations with early exaggeration (12, momentum 0.5), then without (momentum 0.8), with
#: exact gradients. From the PCA start the neighbourhoods settle fast: on the seed's five
#: recurrent steps (N = 500, seeds 0-2: 15 embeddings) trustworthiness after 75 + 175 is
#: within 0.008 of scikit-learn's ``TSNE(perplexity=40)`` with the same seed (mean -0.002;
#: scikit-learn's own moves by up to 0.006 from one seed to the next), at a third of the cost
#: of 250 + 500; 75 + 250 and 100 + 300 came no closer.
TSNE_EXACT_EXAGGERATION_ITER = 75
TSNE_EXACT_ITERATIONS = 175
#: openTSNE's Barnes-Hut gradients up to this many stimuli, its FFT-interpolated ones above.
TSNE_FFT_ABOVE = 5000
#: FFT grid intervals per axis at least, during early exaggeration (openTSNE: 50). The
#: exaggerated embedding spans ~8 units, so 10 intervals are still finer than the 1 unit of
#: the later phase (gradient error 0.2 % against 1.5 % then), and halve that phase's time.
TSNE_FFT_EXAGGERATION_INTERVALS = 10
#: Metric MDS (SMACOF on N × N matrices) is offered up to this many stimuli.
MDS_MAX_N = 3000
#: Trustworthiness above this many stimuli is computed on a seeded sample of this size.
TRUST_SAMPLE = 3000
#: SMACOF starts for stimulus embeddings: classical MDS plus perturbed copies of it (see
#: :func:`_mds_starts`), raced (see :func:`smacof_many`): after :data:`MDS_RACE` relaxed
#: steps only the classical start and the best of the others go on, for at most
#: :data:`MDS_MAX_ITER` steps in all, until the stress changes by less than :data:`MDS_EPS`
#: (relative to Σd²/2). The classical start alone can settle in a poorer basin than the
#: best of scikit-learn's four random starts (the seed's recurrent conv2_4 at 50 per class:
#: stress-1 +0.0005); with these settings every one of the seed's five recurrent steps and
#: two synthetic clustered sets ends at or below it (by 1e-5 to 2e-3), for about twice
#: the work of the classical start alone.
MDS_STARTS = 6
MDS_RACE = (10, 30)
MDS_MAX_ITER = 400
MDS_EPS = 1e-7
#: Scale of the mixing of the third and fourth classical axes into the extra starts.
MDS_START_SPREAD = 0.5
#: SMACOF iterates in float32 from this many stimuli (the stress is still float64).
MDS_FLOAT32_MIN_N = 256
#: Over-relaxation of the Guttman transform (1: plain SMACOF; up to 2 converges).
SMACOF_RELAX = 1.9
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


def prepare_backends() -> None:
    """Import openTSNE and compile (or load from disk) the numba kernels now, not on first use.

    A server does this before it serves (a forked job must import nothing lazily, see
    :mod:`repgeom.ui.background`), and the benchmark before it times anything.
    """
    import openTSNE  # noqa: F401, PLC0415
    import openTSNE.affinity  # noqa: F401, PLC0415
    import openTSNE.initialization  # noqa: F401, PLC0415
    import openTSNE.nearest_neighbors  # noqa: F401, PLC0415

    from .kernels import compile_kernels  # noqa: PLC0415

    compile_kernels()


def euclidean_distances(features: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N, N) Euclidean distances between rows of (N, D) ``features`` (centred Gram, exact zero diagonal, symmetric)."""
    x = features.reshape(features.shape[0], -1)
    g = centred_gram(x, dtype, columns=x.mean(dim=0, dtype=dtype))[0]
    sq = g.diagonal().clone()
    d2 = torch.add(sq[:, None], sq[None, :]).add_(g, alpha=-2.0).clamp_(min=0.0)  # ij and ji alike
    if d2.device.type != "cpu":  # only a CPU BLAS Gram matrix is exactly symmetric
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
    vals, vecs = torch.linalg.eigh(_double_centre(dissimilarities))
    return _scaled_axes(vals.flip(0)[:n_components], vecs.flip(1)[:, :n_components])


def _double_centre(dissimilarities: torch.Tensor) -> torch.Tensor:
    """``-½ J δ² J`` (J the centring matrix) by row and column means: O(N²), no N³ products."""
    d2 = dissimilarities.to(torch.float64) ** 2
    row = d2.mean(dim=1)
    b = d2.sub_(row[:, None]).sub_(row[None, :]).add_(row.mean()).mul_(-0.5)
    return 0.5 * (b + b.T)


def _scaled_axes(vals: torch.Tensor, vecs: torch.Tensor) -> torch.Tensor:
    """Eigenvectors times sqrt(eigenvalue), each axis signed so its largest-magnitude coordinate is positive."""
    coords = vecs * vals.clamp(min=0.0).sqrt()
    signs = torch.sign(coords.gather(0, coords.abs().argmax(0, keepdim=True)))
    return coords * torch.where(signs == 0, torch.ones_like(signs), signs)


def _top_eigh(a: torch.Tensor, k: int, tol: float = 1e-11, max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenpairs of a symmetric positive semi-definite matrix, descending.

    Subspace iteration on ``2k + 8`` seeded columns with a Rayleigh-Ritz step each time,
    until every wanted pair has residual ``|A v - λ v| <= tol·λ₁``; a full ``eigh`` for
    small matrices or when that does not happen within ``max_iter`` steps. At N = 500 it
    takes a few milliseconds where ``eigh`` takes 17 (and far more when another process
    holds a core). Only for PSD matrices (Gram matrices, double-centred squared Euclidean
    distances): subspace iteration finds the eigenvalues of largest magnitude.
    """
    n = a.shape[0]
    k = min(k, n)
    p = min(n, 2 * k + 8)
    if n <= 4 * p:
        vals, vecs = torch.linalg.eigh(a)
        return vals.flip(0)[:k], vecs.flip(1)[:, :k]
    gen = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(a @ torch.randn(n, p, generator=gen, dtype=a.dtype).to(a.device))[0]
    for _ in range(max_iter):
        aq = a @ q
        h = q.T @ aq
        vals, w = torch.linalg.eigh(0.5 * (h + h.T))
        vals, w = vals.flip(0), w.flip(1)
        v, av = q @ w, aq @ w
        res = torch.linalg.vector_norm(av[:, :k] - v[:, :k] * vals[:k], dim=0)
        if bool((res <= tol * vals[0].abs()).all()):
            return vals[:k], v[:, :k]
        q = torch.linalg.qr(av)[0]
    vals, vecs = torch.linalg.eigh(a)
    return vals.flip(0)[:k], vecs.flip(1)[:, :k]


def smacof(
    dissimilarities: torch.Tensor,
    init: torch.Tensor | None = None,
    max_iter: int = 1000,
    eps: float = 1e-10,
    n_random: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, float, int]:
    """Metric MDS by SMACOF (Guttman transforms), on the dissimilarities' device.

    All starts run together as one batch (see :func:`smacof_many`): the classical-MDS
    start (or ``init``) plus ``n_random`` seeded random ones; the lowest stress wins.

    Args:
        dissimilarities: (N, N) symmetric, zero diagonal.
        init: (N, k) start; classical MDS when ``None``.
        max_iter: most Guttman transforms.
        eps: stop a start when its stress changes by less than ``eps`` relative to Σd²/2
            (scikit-learn's criterion, far tighter than its default: over-relaxed steps
            change the stress less per step near a minimum, and a path's few points are
            cheap to settle: on the shipped models' path, 1e-7 stops 2e-5 above the
            minimum that scikit-learn's ten restarts reach, 1e-10 below it).
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
    return smacof_many(delta[None], torch.stack(starts)[None], max_iter=max_iter, eps=eps)[0]


def _take(t: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Rows ``pick`` (B, S') of the second axis of (B, S, ...) ``t``, per first index."""
    index = pick.reshape(*pick.shape, *([1] * (t.ndim - 2))).expand(*pick.shape, *t.shape[2:])
    return t.gather(1, index)


class _SmacofBuffers:
    """Reused N × N buffers for :func:`smacof_many` (fresh large tensors every step cost page faults)."""

    def __init__(self, b: int, s: int, n: int, k: int, like: torch.Tensor) -> None:
        opts = {"dtype": like.dtype, "device": like.device}
        self.shape = (b, s, n, n)
        self.left, self.right = torch.ones(b * s, n, k + 2, **opts), torch.ones(b * s, n, k + 2, **opts)
        self.x1 = torch.ones(b * s, n, k + 1, **opts)
        self.r, self.bx = torch.empty(b * s, n, n, **opts), torch.empty(b * s, n, k + 1, **opts)
        self.k, self.n = k, n

    def guttman(self, x: torch.Tensor, delta: torch.Tensor, floor2: float) -> torch.Tensor:
        """The Guttman transform ``B(X) X / N`` of (B, S, N, k) ``x`` against (B, 1, N, N) ``delta``."""
        k, flat = self.k, x.reshape(-1, self.n, self.k)
        sq = (flat * flat).sum(dim=2)
        self.left[..., :k], self.left[..., k] = flat, sq
        self.right[..., :k], self.right[..., k + 1] = -2.0 * flat, sq
        self.x1[..., :k] = flat
        torch.bmm(self.left, self.right.transpose(1, 2), out=self.r)  # d²
        self.r.clamp_min_(floor2).rsqrt_().view(self.shape).mul_(delta)  # δ / d, zero on the diagonal
        torch.bmm(self.r, self.x1, out=self.bx)  # [B(X)-part X, row sums]
        bx = self.bx.view(*x.shape[:3], k + 1)
        return (bx[..., k:] * x - bx[..., :k]) / self.n


def _distance_floor2(delta64: torch.Tensor) -> float:
    """Lower bound on squared 2-D distances in a Guttman transform: coincident points keep δ/d finite."""
    return (1e-9 * float(delta64.abs().max()) + 1e-150) ** 2


def _race_survivors(starts: int, last: bool) -> int:
    """Starts that go on at a race point: the first and the better half of the others; after the last, the first and the best other."""
    return 2 if last else 1 + starts // 2


def smacof_many(
    dissimilarities: torch.Tensor,
    starts: torch.Tensor,
    max_iter: int = 1000,
    eps: float = 1e-7,
    race: Sequence[int] = (),
    dtype: torch.dtype = torch.float64,
    fused: bool = True,
) -> list[tuple[torch.Tensor, float, int]]:
    """SMACOF for B dissimilarity matrices with S starts each, all as one batch.

    Each step is one relaxed Guttman transform ``X + α (B(X) X / N - X)``, α =
    :data:`SMACOF_RELAX` (de Leeuw and Heiser's over-relaxation, convergent for α < 2:
    about twice as fast near a minimum). The N × N work of a step is two
    batched products and three passes: ``d²`` from one product of ``[x, |x|², 1]`` with
    ``[-2x, 1, |x|²]``, ``δ / d`` in place, and one product with ``[x, 1]`` that gives both
    ``B(X) X`` and the row sums. The raw stress of the current configuration then costs
    nothing more: ``Σ δ² - 2 tr(Xᵀ B(X) X) + Σ d²`` over pairs. A start stops when its
    stress changes by less than ``eps`` relative to Σd²/2 (scikit-learn's criterion); each
    start keeps the best configuration it has seen.

    Args:
        dissimilarities: (B, N, N) symmetric, zero diagonal.
        starts: (B, S, N, k) initial configurations.
        max_iter: most Guttman transforms.
        eps: the stopping tolerance above.
        race: steps after which, per matrix, the first start and the better half of the
            others (by the lowest stress so far) go on; after the last of them, the first
            and the best other run to the end (empty: all run to the end). Early stress
            ranks the basins poorly, so the first (classical) start is never dropped.
        dtype: working precision of the iterations (stress-1 is computed in float64).
        fused: in 2-D on the CPU, run the steps as fused kernels
            (:func:`repgeom.core.kernels.smacof_steps`, 2-5× faster); ``False`` runs the
            torch steps that other devices run (the same arithmetic, up to summation order).

    Returns:
        Per matrix, ``(coords, stress1, iterations)`` of its best start, coords (N, k) float64.
        A matrix whose starts have all stopped leaves the batch, so the others do not
        carry it along.
    """
    delta64 = dissimilarities.to(torch.float64)
    b, s, n, k = starts.shape
    if fused and starts.device.type == "cpu" and k == 2:
        return _smacof_many_cpu(delta64, starts, max_iter, eps, race, dtype)
    delta = delta64.to(dtype)[:, None]  # (B, 1, N, N), broadcast over starts
    x = starts.to(dtype)
    x = x - x.mean(dim=2, keepdim=True)
    floor2 = _distance_floor2(delta64)
    half_delta2 = (delta64 * delta64).sum(dim=(1, 2))[:, None] / 2.0  # (B, 1)
    best_x, best = x.clone(), torch.full((b, s), math.inf, dtype=torch.float64, device=x.device)
    active = torch.ones(b, s, dtype=torch.bool, device=x.device)
    live = torch.arange(b, device=x.device)  # matrices still iterating; finished ones leave the batch
    done: dict[int, tuple[torch.Tensor, int]] = {}
    bufs = _SmacofBuffers(b, s, n, k, x)
    it = 0
    for it in range(1, max_iter + 1):
        guttman = bufs.guttman(x, delta, floor2)
        # raw stress of x over pairs: Σδ² - 2Σδd + Σd², with Σδd = tr(Xᵀ B(X) X) = n Σ x·guttman
        sum_d2 = n * (x * x).sum(dim=(2, 3), dtype=torch.float64) - (x.sum(dim=2, dtype=torch.float64) ** 2).sum(dim=2)
        raw = half_delta2 - 2.0 * n * (x * guttman).sum(dim=(2, 3), dtype=torch.float64) + sum_d2
        better = raw < best
        best_x = torch.where(better[:, :, None, None], x, best_x)
        best = torch.where(better, raw, best)
        if it > 1:
            active &= (old - raw).abs() >= eps * sum_d2.clamp_min(1e-300)
        if it in race and s > 2:  # successive halving: the first start and the better half of the others go on
            s = _race_survivors(s, it == max(race))
            order = best[:, 1:].argsort(dim=1) + 1
            pick = torch.cat([torch.zeros_like(order[:, :1]), order[:, : s - 1]], dim=1)
            x, guttman, best_x, best, active, raw = (_take(t, pick) for t in (x, guttman, best_x, best, active, raw))
            bufs = _SmacofBuffers(len(live), s, n, k, x)
        finished = ~active.any(dim=1)
        if it == max_iter:
            finished[:] = True
        if bool(finished.any()):
            for row in finished.nonzero().flatten().tolist():
                done[int(live[row])] = (best_x[row, int(best[row].argmin())], it)
            keep = ~finished
            if not bool(keep.any()):
                break
            live, x, guttman, best_x, best, active, raw, delta, half_delta2 = (
                t[keep] for t in (live, x, guttman, best_x, best, active, raw, delta, half_delta2))
            bufs = _SmacofBuffers(len(live), s, n, k, x)
        old = raw
        x = torch.where(active[:, :, None, None], x + SMACOF_RELAX * (guttman - x), x)
    out = []
    for i in range(b):
        coords, steps = done[i]
        coords = coords.to(torch.float64)
        out.append((coords, stress1(delta64[i].cpu(), coords.cpu()), steps))
    return out


def _smacof_many_cpu(
    delta64: torch.Tensor, starts: torch.Tensor, max_iter: int, eps: float, race: Sequence[int], dtype: torch.dtype
) -> list[tuple[torch.Tensor, float, int]]:
    """:func:`smacof_many` in 2-D on the CPU: the same steps, each a fused kernel (:func:`repgeom.core.kernels.smacof_steps`).

    The kernel runs from one race point to the next; the successive halving happens here.
    """
    from .kernels import smacof_steps  # noqa: PLC0415 - numba loads on first use

    b, s, n, _ = starts.shape
    work = np.float32 if dtype == torch.float32 else np.float64
    delta = np.ascontiguousarray(delta64.cpu().numpy(), dtype=work)
    x0 = starts.to(torch.float64)
    x0 = x0 - x0.mean(dim=2, keepdim=True)
    x = np.ascontiguousarray(x0.transpose(2, 3).cpu().numpy(), dtype=work)  # (B, S, 2, N)
    state = {
        "best_x": x.copy(), "best": np.full((b, s), np.inf), "active": np.ones((b, s), bool), "old": np.full((b, s), np.nan),
        "half_delta2": (delta64 * delta64).sum(dim=(1, 2)).cpu().numpy() / 2.0, "stopped": np.full((b, s), max_iter, np.int64),
    }
    floor2 = _distance_floor2(delta64)
    points = sorted({r for r in race if 0 < r < max_iter}) if s > 2 else []
    done = 0
    for stop in [*points, max_iter]:
        flat = {key: v.reshape(b * s, *v.shape[2:]) for key, v in state.items() if key != "half_delta2"}
        smacof_steps(x.reshape(b * s, 2, n), delta, s, floor2, SMACOF_RELAX, eps, done, stop, {**flat, "half_delta2": state["half_delta2"]})
        done = stop
        if stop in points and s > 2:  # successive halving: the first start and the better half of the others go on
            s = _race_survivors(s, stop == points[-1])
            order = np.argsort(state["best"][:, 1:], axis=1, kind="stable") + 1
            pick = np.concatenate([np.zeros((b, 1), np.int64), order[:, : s - 1]], axis=1)
            x = np.ascontiguousarray(np.take_along_axis(x, pick[:, :, None, None], axis=1))
            state = {key: v if key == "half_delta2" else np.ascontiguousarray(
                np.take_along_axis(v, pick.reshape(b, s, *([1] * (v.ndim - 2))), axis=1)) for key, v in state.items()}
    out = []
    for i in range(b):
        winner = int(np.argmin(state["best"][i]))
        finished = ~state["active"][i]
        steps = int(state["stopped"][i][finished].max()) if finished.all() else max_iter
        coords = torch.from_numpy(state["best_x"][i, winner].T.astype(np.float64))
        out.append((coords, stress1(delta64[i].cpu(), coords), steps))
    return out


def pca_2d(features: torch.Tensor, distances: torch.Tensor | None = None) -> torch.Tensor:
    """The first two principal-component scores of (N, D) ``features``, sklearn's signs.

    Args:
        features: (N, D) features.
        distances: their (N, N) Euclidean distances, if at hand: when N <= D the Gram
            matrix is then ``-½ J d² J`` (O(N²)) instead of a product over all D features.

    Returns:
        (N, 2) float64 on the features' device.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(2, n, d)
    if n <= d:
        gram = _double_centre(distances.to(x.device)) if distances is not None else x @ x.T
        vals, u = _top_eigh(gram, k)
        s = vals.clamp(min=0.0).sqrt()
        scores = u * s
        components = (x.T @ u) / torch.where(s > 0, s, torch.ones_like(s))  # (D, k)
    else:
        components = _top_eigh(x.T @ x, k)[1]
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


def _top_pca_scores(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Scores on the top ``k`` principal components of (N, D) float64 ``x``, sklearn's signs.

    Exact (an eigendecomposition of the smaller Gram/covariance matrix) while that matrix
    has at most :data:`TSNE_EXACT_PCA_MAX` rows; otherwise a seeded randomised range finder
    with :data:`TSNE_PCA_POWER_ITER` power iterations (Halko et al.), which agrees with the
    exact scores to round-off on the leading components (the t-SNE start) and spans nearly
    the same subspace (all a neighbour search needs).
    """
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    k = min(k, n, d)
    if min(n, d) <= TSNE_EXACT_PCA_MAX:
        if n <= d:
            vals, u = torch.linalg.eigh(x @ x.T)
            s = vals.flip(0)[:k].clamp(min=0.0).sqrt()
            scores = u.flip(1)[:, :k] * s
            components = (x.T @ scores) / torch.where(s > 0, s * s, torch.ones_like(s))  # (D, k)
        else:
            components = torch.linalg.eigh(x.T @ x)[1].flip(1)[:, :k]
            scores = x @ components
    else:
        gen = torch.Generator().manual_seed(seed)
        basis = x @ torch.randn(d, k + 10, generator=gen, dtype=x.dtype).to(x.device)
        for _ in range(TSNE_PCA_POWER_ITER):
            basis = x @ torch.linalg.qr(x.T @ torch.linalg.qr(basis)[0])[0]
        components = torch.linalg.svd(torch.linalg.qr(basis)[0].T @ x, full_matrices=False)[2][:k].T
        scores = x @ components
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    return scores * torch.where(signs == 0, torch.ones_like(signs), signs)


def _exact_knn(z: torch.Tensor, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of (N, d) ``z`` by Euclidean distance, exactly.

    Returns:
        ``(indices, distances)``, both (N, k), nearest first: int64 and float64 NumPy arrays.
    """
    n = z.shape[0]
    sq = (z * z).sum(dim=1, keepdim=True)
    ones = torch.ones_like(sq)
    # d² = [z, |z|², 1] [-2z, 1, |z|²]ᵀ: one matrix product per block, no broadcast passes
    left, right = torch.cat([z, sq, ones], dim=1), torch.cat([-2.0 * z, ones, sq], dim=1)
    rows = torch.arange(block, device=z.device)
    idx, dist = [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        d2 = left[start:stop] @ right.T
        d2[rows[: stop - start], rows[: stop - start] + start] = math.inf  # not its own neighbour
        vals, nn = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        idx.append(nn)
        dist.append(vals.clamp_(min=0.0).sqrt_())
    return torch.cat(idx).cpu().numpy(), torch.cat(dist).cpu().numpy()


def _tsne_exact(p: torch.Tensor, start: torch.Tensor, phases: Sequence[tuple[int, float, float]]) -> torch.Tensor:
    """openTSNE's gradient descent with the exact t-SNE gradient, dense, in float32, for a batch.

    The gradient is openTSNE's (no factor 4): ``Σ_j (e·p_ij - w_ij/Z) w_ij (y_i - y_j)``
    with ``w = 1 / (1 + d²)``; gains (+0.2 / ×0.8 + 0.01), momentum, learning rate
    N / exaggeration, steps clipped to length 5, the embedding re-centred every step.
    Several embeddings of the same N run as one batch of (B, N, N) operations: per step,
    one product gives ``1 + d²`` (``[y, |y|², 1]`` times ``[-2y, 1, |y|² + 1]``), then
    four passes (reciprocal, row sums for Z, ``e·p - w/Z``, times ``w``) and one product
    with ``[y, 1]`` gives both ``M y`` and ``M``'s row sums.

    Args:
        p: (B, N, N) (or (N, N)) symmetric affinities summing to 1.
        start: (B, N, 2) (or (N, 2)) initial embeddings.
        phases: ``(iterations, exaggeration, momentum)`` in order; gains and momentum carry over.

    Returns:
        (B, N, 2) (or (N, 2)) float64 embeddings.
    """
    single = start.ndim == 2
    p, y = (p[None], start[None]) if single else (p, start)
    b, n, _ = y.shape
    y = y.to(torch.float32)
    opts = {"dtype": y.dtype, "device": y.device}
    left, right, y1 = torch.ones(b, n, 4, **opts), torch.ones(b, n, 4, **opts), torch.ones(b, n, 3, **opts)
    # N × N buffers reused every step: a fresh 1 MB+ tensor per step costs page faults, not just arithmetic
    w, m = torch.empty(b, n, n, **opts), torch.empty(b, n, n, **opts)
    rows, my = torch.empty(b, n, **opts), torch.empty(b, n, 3, **opts)
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    for iterations, exaggeration, momentum in phases:
        pe = (p * exaggeration).to(y)
        rate = n / exaggeration
        for _ in range(iterations):
            sq = (y * y).sum(dim=2)
            left[..., :2], left[..., 2] = y, sq
            right[..., :2], right[..., 3] = -2.0 * y, sq + 1.0
            y1[..., :2] = y
            torch.bmm(left, right.transpose(1, 2), out=w).reciprocal_()  # 1 / (1 + d²); w_ii = 1 cancels below
            z = torch.sum(w, dim=2, out=rows).sum(dim=1) - n  # row sums first: the same order for any batch size
            torch.addcmul(pe, w, (-1.0 / z)[:, None, None], out=m).mul_(w)
            torch.bmm(m, y1, out=my)
            grad = my[..., 2:] * y - my[..., :2]
            gains = torch.where(torch.sign(grad) != torch.sign(update), gains + 0.2, gains * 0.8 + 0.01)
            update = momentum * update - rate * gains * grad
            norm = update.norm(dim=2, keepdim=True)
            update = torch.where(norm > 5.0, update * (5.0 / norm), update)
            y = y + update
            y = y - y.mean(dim=1, keepdim=True)
    y = y.to(torch.float64)
    return y[0] if single else y


def _tsne_exact_cpu(p: np.ndarray, start: np.ndarray, phases: Sequence[tuple[int, float, float]]) -> np.ndarray:
    """:func:`_tsne_exact` on the CPU, each phase one fused kernel (:func:`repgeom.core.kernels.tsne_exact`).

    Args:
        p: (B, N, N) float32 affinities.
        start: (B, N, 2) initial embeddings.
        phases: ``(iterations, exaggeration, momentum)`` in order.

    Returns:
        (B, N, 2) float64 embeddings.
    """
    from .kernels import tsne_exact  # noqa: PLC0415 - numba loads on first use

    p = np.ascontiguousarray(p, dtype=np.float32)
    y = np.ascontiguousarray(start.transpose(0, 2, 1), dtype=np.float32)  # (B, 2, N): coordinates contiguous
    update, gains = np.zeros_like(y), np.ones_like(y)
    for iterations, exaggeration, momentum in phases:
        tsne_exact(p, y, update, gains, iterations, exaggeration, momentum)
    return y.transpose(0, 2, 1).astype(np.float64)


@dataclass
class _TsneJob:
    """One embedding's t-SNE inputs: its start, affinities and the perplexity used."""

    n: int
    perplexity: float
    start: np.ndarray
    affinities: Any = None  # openTSNE affinities (N > TSNE_EXACT_MAX); None: see ``p``, or the start is the answer
    p: np.ndarray | None = None  # (N, N) float32 joint affinities for the exact gradients


def _tsne_prepare(features: torch.Tensor, perplexity: float, seed: int, distances: torch.Tensor | None = None) -> _TsneJob:
    """Affinities and start of one t-SNE.

    The ``3 × perplexity`` nearest neighbours are found on the top :data:`TSNE_PCA_DIMS`
    principal components: up to :data:`TSNE_EXACT_MAX` stimuli those come from the
    stimuli's distances (``distances`` when given), above from the features, so affinities
    mean the same at every N. The start is the top two components.
    """
    from openTSNE.affinity import PerplexityBasedNN, joint_probabilities_nn  # noqa: PLC0415 - heavy; only for t-SNE
    from openTSNE.initialization import jitter, rescale  # noqa: PLC0415
    from openTSNE.nearest_neighbors import PrecomputedNeighbors  # noqa: PLC0415

    n = features.shape[0]
    p = clamp_perplexity(float(perplexity), n)
    k = min(n - 1, int(3 * p))
    if n <= TSNE_EXACT_MAX:
        dist = distances if distances is not None else euclidean_distances(features)
        start = pca_2d(features, dist).cpu().numpy()
        if n < 4 or not np.std(start[:, 0]) > 0:
            return _TsneJob(n, p, start)
        neighbors, near = _exact_knn(_pca_scores_from_distances(dist, TSNE_PCA_DIMS), k)
        joint = joint_probabilities_nn(neighbors, near, [p], n_jobs=torch.get_num_threads())
        return _TsneJob(n, p, jitter(rescale(start), random_state=seed), p=joint.toarray().astype(np.float32))
    z = _top_pca_scores(features.reshape(n, -1).to(torch.float64), TSNE_PCA_DIMS, seed)  # a rotation when D <= 50
    start = np.zeros((n, 2))
    start[:, : min(2, z.shape[1])] = z[:, :2].cpu().numpy()
    if not np.std(start[:, 0]) > 0:
        return _TsneJob(n, p, start)
    neighbors, near = _exact_knn(z, k)
    affinities = PerplexityBasedNN(perplexity=p, knn_index=PrecomputedNeighbors(neighbors, near), n_jobs=torch.get_num_threads())
    return _TsneJob(n, p, jitter(rescale(start), random_state=seed), affinities)


def _pca_scores_from_distances(distances: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) scores on the top ``k`` principal components, from the stimuli's (N, N) Euclidean distances.

    The Gram matrix of the centred features is ``-½ J d² J``; its top eigenvectors times
    the square roots of their eigenvalues are the scores (signs arbitrary: for neighbour
    searches). One float32 eigendecomposition of an N × N matrix (11 ms at N = 500), not a
    pass over the D features.
    """
    vals, vecs = torch.linalg.eigh(_double_centre(distances.cpu()).to(torch.float32))
    k = min(k, vals.shape[0])
    return (vecs[:, -k:] * vals[-k:].clamp(min=0.0).sqrt()).flip(1).to(torch.float64)


def tsne_2d(
    features: torch.Tensor, perplexity: float = DEFAULT_PERPLEXITY, seed: int = 0, distances: torch.Tensor | None = None
) -> tuple[np.ndarray, float]:
    """Seeded 2-D t-SNE with PCA initialisation.

    The ``3 × perplexity`` nearest neighbours are found exactly on the top
    :data:`TSNE_PCA_DIMS` principal components (up to :data:`TSNE_EXACT_MAX` stimuli from
    their distances, ``distances`` if given; above from the features, on the torch device)
    and turned into openTSNE's symmetric perplexity-based affinities. The start is the top two components scaled to standard
    deviation 1e-4 plus openTSNE's seeded jitter (1 % of that). Up to
    :data:`TSNE_EXACT_MAX` stimuli, the exact gradients run dense in float32 (fused CPU
    kernels, :mod:`repgeom.core.kernels`, or torch on other devices):
    :data:`TSNE_EXACT_EXAGGERATION_ITER` iterations at exaggeration 12 and momentum 0.5,
    then :data:`TSNE_EXACT_ITERATIONS` at momentum 0.8, learning rate N / exaggeration.
    Above, openTSNE's Barnes-Hut gradients up to :data:`TSNE_FFT_ABOVE` stimuli and its
    FFT ones beyond, with :data:`TSNE_EXAGGERATION_ITER` and :data:`TSNE_ITERATIONS`
    (:data:`TSNE_ITERATIONS_FFT`) iterations. Fewer than four stimuli (or identical ones)
    are returned at their principal-component scores.

    Args:
        features: (N, D) features.
        perplexity: from :data:`PERPLEXITY_RANGE`; lowered below N/3 with a warning.
        seed: seeds the jitter of the start (and the randomised PCA of large inputs).
        distances: their (N, N) Euclidean distances, if at hand.

    Returns:
        ``(coords, perplexity_used)``: (N, 2) float64 and the perplexity after clamping.
    """
    return tsne_many([features], perplexity, seed, [distances])[0]


def tsne_many(
    features: Sequence[torch.Tensor],
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
    distances: Sequence[torch.Tensor | None] | None = None,
) -> list[tuple[np.ndarray, float]]:
    """:func:`tsne_2d` of several feature sets; those with exact gradients and one N run as one batch.

    Each result equals what :func:`tsne_2d` gives for that feature set alone (the batch
    changes no arithmetic, only how many embeddings each operation carries).
    """
    given = list(distances) if distances is not None else [None] * len(features)
    jobs = [_tsne_prepare(f, perplexity, seed, d) for f, d in zip(features, given)]
    out: list[tuple[np.ndarray, float] | None] = [None] * len(jobs)
    exact: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.p is not None:
            exact.setdefault(job.n, []).append(i)
        elif job.affinities is None:
            out[i] = (job.start, job.perplexity)
        else:
            out[i] = (_tsne_opentsne(job, seed), job.perplexity)
    phases = ((TSNE_EXACT_EXAGGERATION_ITER, 12.0, 0.5), (TSNE_EXACT_ITERATIONS, 1.0, 0.8))
    for group in exact.values():
        device = features[group[0]].device
        p = np.stack([jobs[i].p for i in group])
        start = np.stack([jobs[i].start for i in group])
        if device.type == "cpu":
            coords = _tsne_exact_cpu(p, start, phases)
        else:
            coords = _tsne_exact(torch.from_numpy(p).to(device), torch.from_numpy(start).to(device), phases).cpu().numpy()
        for j, i in enumerate(group):
            out[i] = (coords[j], jobs[i].perplexity)
    return [o for o in out if o is not None]


def _tsne_opentsne(job: _TsneJob, seed: int) -> np.ndarray:
    """openTSNE's Barnes-Hut (up to :data:`TSNE_FFT_ABOVE` stimuli) or FFT gradients."""
    from openTSNE import TSNEEmbedding  # noqa: PLC0415

    fft = job.n > TSNE_FFT_ABOVE
    threads = torch.get_num_threads()
    embedding = TSNEEmbedding(np.ascontiguousarray(job.start), job.affinities, negative_gradient_method="fft" if fft else "bh", n_jobs=threads, random_state=seed)
    coarse = {"min_num_intervals": TSNE_FFT_EXAGGERATION_INTERVALS} if fft else {}
    embedding = embedding.optimize(TSNE_EXAGGERATION_ITER, exaggeration=12, momentum=0.5, **coarse)
    embedding = embedding.optimize(TSNE_ITERATIONS_FFT if fft else TSNE_ITERATIONS, momentum=0.8)
    return np.asarray(embedding, dtype=np.float64)


def trustworthiness_from_distances(
    distances: torch.Tensor, coords: np.ndarray | torch.Tensor, n_neighbors: int = 5
) -> float:
    """scikit-learn's ``trustworthiness(..., metric="precomputed")``, by counting instead of sorting.

    The rank of ``j`` among ``i``'s input-space neighbours is one plus the number of
    stimuli nearer to ``i`` than ``j`` is, so only the ``k`` embedded neighbours of each
    stimulus need ranking: an (N, k, N) comparison instead of scikit-learn's argsort of the
    whole N × N matrix. Equal to scikit-learn's whenever no two distances from a stimulus tie
    (with ties scikit-learn's own answer depends on its sort order).

    Args:
        distances: (N, N) input-space distances.
        coords: (N, m) embedding.
        n_neighbors: k, below N / 2.

    Returns:
        Trustworthiness in [0, 1].
    """
    dist = distances.to(torch.float64).cpu().clone()
    n, k = dist.shape[0], n_neighbors
    if k >= n / 2:
        raise ValueError(f"n_neighbors ({k}) should be less than n_samples / 2 ({n / 2})")
    y = torch.as_tensor(np.asarray(coords), dtype=torch.float64)
    embedded = torch.cdist(y, y, compute_mode="donot_use_mm_for_euclid_dist")
    embedded.fill_diagonal_(math.inf)
    near = torch.topk(embedded, k, dim=1, largest=False).indices  # (N, k) embedded neighbours
    dist.fill_diagonal_(math.inf)
    to_near = dist.gather(1, near)
    total = 0
    rows = max(1, (1 << 24) // max(1, n * k))  # bound the (rows, k, N) comparison
    for a in range(0, n, rows):
        rank = (dist[a : a + rows, None, :] < to_near[a : a + rows, :, None]).sum(dim=2) + 1
        total += int((rank - k).clamp_(min=0).sum())
    return 1.0 - total * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def _n_neighbors(n: int) -> int:
    return max(1, min(5, (n - 1) // 2 - 1 if n > 4 else 1))


def _mds_starts(distances: torch.Tensor, n_starts: int, seed: int) -> torch.Tensor:
    """(S, N, 2) SMACOF starts from Euclidean ``distances``: classical MDS, then perturbed copies.

    The first is classical MDS (the features' top two principal components). Each other
    start adds the third and fourth classical axes, mixed by a seeded 2 × 2 Gaussian
    matrix of scale :data:`MDS_START_SPREAD`: the same large-scale layout, folded
    differently, so the starts fall into different basins of the stress.
    """
    vals, vecs = _top_eigh(_double_centre(distances), 4)
    axes = _scaled_axes(vals, vecs)
    if axes.shape[1] < 4:
        axes = torch.cat([axes, axes.new_zeros(axes.shape[0], 4 - axes.shape[1])], dim=1)
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(max(n_starts - 1, 0), 2, 2, generator=gen, dtype=axes.dtype).to(axes.device) * MDS_START_SPREAD
    return torch.cat([axes[None, :, :2], axes[None, :, :2] + axes[None, :, 2:] @ mix])


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
        seed: random state for t-SNE and the extra MDS starts.
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: precomputed (N, N) Euclidean distances of ``features`` (optional).

    Returns:
        An :class:`Embedding`.
    """
    return embed_many([features], method, labels, model, [node], seed, perplexity, [distances])[0]


def embed_many(
    features: Sequence[torch.Tensor],
    method: str,
    labels: np.ndarray,
    model: str = "",
    nodes: Sequence[str] | None = None,
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    distances: Sequence[torch.Tensor | None] | None = None,
) -> list[Embedding]:
    """:func:`embed` for several nodes' features of the same stimuli.

    MDS and exact t-SNE of feature sets with the same N run as one batch (one sequence of
    (B, N, N) operations instead of B), which is where their time goes; each embedding is
    what :func:`embed` gives for that node alone.

    Args:
        features: B (N, D_b) feature sets.
        method: ``"pca"``, ``"mds"`` or ``"tsne"``.
        labels: (N,) digit labels (carried along).
        model: model id (carried along).
        nodes: B node names (carried along).
        seed: random state for t-SNE and the extra MDS starts.
        perplexity: t-SNE perplexity (clamped below N/3 with a warning).
        distances: per feature set, its precomputed (N, N) Euclidean distances or ``None``.

    Returns:
        B :class:`Embedding` objects, in order.
    """
    if method not in EMBED_METHODS:
        raise choice_error("embedding method", method, EMBED_METHODS)
    names = list(nodes) if nodes is not None else [""] * len(features)
    given = list(distances) if distances is not None else [None] * len(features)
    sizes = [f.shape[0] for f in features]
    if method == "mds" and max(sizes, default=0) > MDS_MAX_N:
        raise RepgeomError(f"MDS is offered up to {MDS_MAX_N} stimuli (it fits all N² distances); got {max(sizes)}: use PCA or t-SNE, or fewer images per class")
    dists = [
        euclidean_distances(f) if d is None and n <= TRUST_SAMPLE else d for f, d, n in zip(features, given, sizes)
    ]
    stresses: list[float | None] = [None] * len(features)
    perplexities: list[float | None] = [None] * len(features)
    if method == "pca":
        coords = [pca_2d(f, d).cpu().numpy() for f, d in zip(features, dists)]
    elif method == "mds":
        coords = [np.zeros((n, 2)) for n in sizes]
        for n in sorted(set(sizes)):
            group = [i for i, m in enumerate(sizes) if m == n]
            delta = torch.stack([dists[i].to(torch.float64) for i in group])
            starts = torch.stack([_mds_starts(d, MDS_STARTS, seed) for d in delta])
            work = torch.float32 if n >= MDS_FLOAT32_MIN_N else torch.float64
            solved = smacof_many(delta, starts, MDS_MAX_ITER, MDS_EPS, race=MDS_RACE, dtype=work)
            for i, (xy, stress, _) in zip(group, solved):
                coords[i], stresses[i] = xy.cpu().numpy(), stress
    else:
        done = tsne_many(features, perplexity, seed, dists)
        coords = [c for c, _ in done]
        perplexities = [p for _, p in done]
    out = []
    for f, d, n, xy, name, stress, used in zip(features, dists, sizes, coords, names, stresses, perplexities):
        if n > TRUST_SAMPLE:  # a seeded sample keeps the O(N²) ranking bounded
            pick = np.sort(np.random.default_rng(seed).choice(n, TRUST_SAMPLE, replace=False))
            sub = euclidean_distances(f.reshape(n, -1)[torch.as_tensor(pick, device=f.device)])
            tw = trustworthiness_from_distances(sub, xy[pick], n_neighbors=5)
        else:
            tw = trustworthiness_from_distances(d, xy, n_neighbors=_n_neighbors(n)) if n > 3 else 1.0
        out.append(Embedding(coords=xy, method=method, model=model, node=name, labels=np.asarray(labels),
                             trustworthiness=tw, stress=stress, perplexity=used))
    return out


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
