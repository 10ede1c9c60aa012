"""Metric MDS: classical scaling, and SMACOF for batches of matrices and starts (torch, or fused on the CPU).

Design notes:
    Stimulus embeddings run SMACOF from the classical (Torgerson) start and perturbed copies
    of it, raced (see :class:`MdsOptions`), with over-relaxed Guttman transforms and a tight
    stopping rule; several nodes and all their starts run as one batch of (B, S, N, N)
    operations (in 2-D on the CPU, the fused numba kernels of :mod:`repgeom.core.kernels`;
    on other devices the torch steps, which the tests hold to each other), in float32 from
    :attr:`MdsOptions.float32_min_n` stimuli. The stress reported is Kruskal's stress-1,
    ``sqrt(Σ(d - δ)² / Σ d²)`` over pairs, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .pca import principal_axes
from .quality import stress1

__all__ = ["SMACOF_RELAX", "MdsOptions", "classical_mds", "mds_starts", "smacof", "smacof_many"]

#: Over-relaxation of the Guttman transform (1: plain SMACOF; up to 2 converges).
SMACOF_RELAX = 1.9


@dataclass(frozen=True)
class MdsOptions:
    """How stimulus embeddings run SMACOF.

    The classical start alone can settle in a poorer basin than the best of scikit-learn's
    four random starts (the seed's recurrent conv2_4 at 50 per class: stress-1 +0.0005);
    with these defaults every one of the seed's five recurrent steps and two synthetic
    clustered sets ends at or below it (by 1e-5 to 2e-3), for about twice the work of the
    classical start alone.

    Attributes:
        starts: classical MDS plus ``starts - 1`` perturbed copies (see :func:`mds_starts`).
        race: steps after which only the classical start and the better part of the others
            go on (see :func:`smacof_many`).
        max_iter: most relaxed steps in all.
        eps: stop when the stress changes by less than this, relative to Σd²/2.
        spread: scale of the mixing of the third and fourth classical axes into the extra starts.
        float32_min_n: iterate in float32 from this many stimuli (the stress stays float64).
        relax: over-relaxation of the Guttman transform.
        max_n: MDS (all N² distances fitted) is offered up to this many stimuli.
    """

    starts: int = 6
    race: tuple[int, ...] = (10, 30)
    max_iter: int = 400
    eps: float = 1e-7
    spread: float = 0.5
    float32_min_n: int = 256
    relax: float = SMACOF_RELAX
    max_n: int = 3000


def classical_mds(dissimilarities: torch.Tensor, n_components: int = 2) -> torch.Tensor:
    """Torgerson's classical MDS: the top eigenvectors of the double-centred -½δ².

    Args:
        dissimilarities: (N, N) symmetric, zero diagonal.
        n_components: dimensions wanted.

    Returns:
        (N, n_components) float64, each axis signed so its largest-magnitude coordinate is positive.
    """
    return principal_axes(dissimilarities, n_components)


def mds_starts(distances: torch.Tensor, n_starts: int, seed: int, spread: float = 0.5) -> torch.Tensor:
    """SMACOF starts from Euclidean ``distances``: classical MDS, then perturbed copies.

    The first is classical MDS (the features' top two principal components). Each other
    start adds the third and fourth classical axes, mixed by a seeded 2 × 2 Gaussian matrix
    of scale ``spread``: the same large-scale layout, folded differently, so the starts fall
    into different basins of the stress.

    Args:
        distances: (N, N) Euclidean distances.
        n_starts: starts wanted, the classical one included.
        seed: seeds the mixing matrices.
        spread: their scale.

    Returns:
        (n_starts, N, 2) float64.
    """
    axes = principal_axes(distances, 4)
    if axes.shape[1] < 4:
        axes = torch.cat([axes, axes.new_zeros(axes.shape[0], 4 - axes.shape[1])], dim=1)
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(max(n_starts - 1, 0), 2, 2, generator=gen, dtype=axes.dtype).to(axes.device) * spread
    return torch.cat([axes[None, :, :2], axes[None, :, :2] + axes[None, :, 2:] @ mix])


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
    relax: float = SMACOF_RELAX,
) -> list[tuple[torch.Tensor, float, int]]:
    """SMACOF for B dissimilarity matrices with S starts each, all as one batch.

    Each step is one relaxed Guttman transform ``X + α (B(X) X / N - X)``, α = ``relax``
    (de Leeuw and Heiser's over-relaxation, convergent for α < 2: about twice as fast near a
    minimum). The N × N work of a step is two batched products and three passes: ``d²``
    from one product of ``[x, |x|², 1]`` with ``[-2x, 1, |x|²]``, ``δ / d`` in place, and
    one product with ``[x, 1]`` that gives both ``B(X) X`` and the row sums. The raw stress
    of the current configuration then costs nothing more: ``Σ δ² - 2 tr(Xᵀ B(X) X) + Σ d²``
    over pairs. A start stops when its stress changes by less than ``eps`` relative to
    Σd²/2 (scikit-learn's criterion); each start keeps the best configuration it has seen.

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
        relax: the over-relaxation α, in [1, 2).

    Returns:
        Per matrix, ``(coords, stress1, iterations)`` of its best start, coords (N, k) float64.
        A matrix whose starts have all stopped leaves the batch, so the others do not
        carry it along.
    """
    delta64 = dissimilarities.to(torch.float64)
    b, s, n, k = starts.shape
    if fused and starts.device.type == "cpu" and k == 2:
        return _smacof_many_cpu(delta64, starts, max_iter, eps, race, dtype, relax)
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
    old = torch.full((b, s), math.nan, dtype=torch.float64, device=x.device)  # stress of the step before
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
        x = torch.where(active[:, :, None, None], x + relax * (guttman - x), x)
    out = []
    for i in range(b):
        coords, steps = done[i]
        coords = coords.to(torch.float64)
        out.append((coords, stress1(delta64[i].cpu(), coords.cpu()), steps))
    return out


def _smacof_many_cpu(
    delta64: torch.Tensor, starts: torch.Tensor, max_iter: int, eps: float, race: Sequence[int], dtype: torch.dtype, relax: float
) -> list[tuple[torch.Tensor, float, int]]:
    """:func:`smacof_many` in 2-D on the CPU: the same steps, each a fused kernel (:func:`repgeom.core.kernels.smacof_steps`).

    The kernel runs from one race point to the next; the successive halving happens here.
    """
    from ..kernels import smacof_steps  # noqa: PLC0415 - numba loads on first use

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
        smacof_steps(x.reshape(b * s, 2, n), delta, s, floor2, relax, eps, done, stop, {**flat, "half_delta2": state["half_delta2"]})
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
