"""The numba sources of :mod:`repgeom.core.kernels` (importing this module imports numba).

Kept apart so that importing :mod:`repgeom.core.kernels` costs nothing: numba loads, and the
kernels compile (or load from numba's disk cache), on the first launch. See
:mod:`repgeom.core.kernels` for what the kernels do and how they are launched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["ordered_sum", "smacof_loop", "tsne_loop"]

#: ``workqueue`` is numba's own thread pool: present on every machine, so the kernels run the
#: same way whichever OpenMP or TBB is installed. It does not accept two launches at once;
#: :mod:`repgeom.core.kernels` serialises them.
numba.config.THREADING_LAYER = "workqueue"

#: LLVM fast-math flags: reassociation (vectorised sums), contraction (fused multiply-add) and
#: approximate reciprocals, but not "no NaNs"/"no infinities": the SMACOF state starts at inf/NaN.
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` without the GIL, cached on disk when a cache folder can be written."""

    def decorate(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:  # no writable cache folder (set NUMBA_CACHE_DIR): compile in each process
            return numba.njit(cache=False, nogil=True, **options)(fn)

    return decorate


@_jit(parallel=True, fastmath=_FAST)
def tsne_loop(p, y, update, gains, iterations, exaggeration, momentum):  # pragma: no cover - compiled
    """``iterations`` steps of exact-gradient t-SNE on (B, 2, N) ``y`` in place (see :func:`repgeom.core.kernels.tsne_exact`)."""
    b_count, _, n = y.shape
    att = np.empty((b_count, 2, n), np.float32)
    rep = np.empty((b_count, 2, n), np.float32)
    zrow = np.empty((b_count, n), np.float32)
    rate = np.float32(n / exaggeration)
    ex = np.float32(exaggeration)
    mom = np.float32(momentum)
    one = np.float32(1.0)
    for _ in range(iterations):
        for flat in numba.prange(b_count * n):
            b = flat // n
            i = flat - b * n
            yi0 = y[b, 0, i]
            yi1 = y[b, 1, i]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            r0 = np.float32(0.0)
            r1 = np.float32(0.0)
            zs = np.float32(0.0)
            for j in range(n):
                d0 = yi0 - y[b, 0, j]
                d1 = yi1 - y[b, 1, j]
                q = one / (one + d0 * d0 + d1 * d1)
                zs += q
                pq = p[b, i, j] * q
                a0 += pq * d0
                a1 += pq * d1
                q2 = q * q
                r0 += q2 * d0
                r1 += q2 * d1
            att[b, 0, i] = a0 * ex
            att[b, 1, i] = a1 * ex
            rep[b, 0, i] = r0
            rep[b, 1, i] = r1
            zrow[b, i] = zs - one  # w_ii = 1 is not a pair
        for b in numba.prange(b_count):
            inv_z = one / ordered_sum(zrow[b])
            for i in range(n):
                step0 = update[b, 0, i]
                step1 = update[b, 1, i]
                g0 = att[b, 0, i] - rep[b, 0, i] * inv_z
                g1 = att[b, 1, i] - rep[b, 1, i] * inv_z
                # gains grow where the gradient's sign differs from the last step's, else decay
                k0 = gains[b, 0, i] + np.float32(0.2) if np.sign(g0) != np.sign(step0) else gains[b, 0, i] * np.float32(0.8) + np.float32(0.01)
                k1 = gains[b, 1, i] + np.float32(0.2) if np.sign(g1) != np.sign(step1) else gains[b, 1, i] * np.float32(0.8) + np.float32(0.01)
                gains[b, 0, i] = k0
                gains[b, 1, i] = k1
                step0 = mom * step0 - rate * k0 * g0
                step1 = mom * step1 - rate * k1 * g1
                norm = np.sqrt(step0 * step0 + step1 * step1)
                if norm > np.float32(5.0):
                    step0 *= np.float32(5.0) / norm
                    step1 *= np.float32(5.0) / norm
                update[b, 0, i] = step0
                update[b, 1, i] = step1
                y[b, 0, i] += step0
                y[b, 1, i] += step1
            mean0 = ordered_sum(y[b, 0]) / n
            mean1 = ordered_sum(y[b, 1]) / n
            for i in range(n):
                y[b, 0, i] -= mean0
                y[b, 1, i] -= mean1


@_jit()
def ordered_sum(values):  # pragma: no cover - compiled
    """Σ values left to right.

    Not fastmath: a vectorised sum's order follows the data's alignment, which differs
    between an embedding alone and the same one inside a batch.
    """
    total = np.float32(0.0)
    for v in values:
        total += v
    return total


@_jit(parallel=True, fastmath=_FAST)
def smacof_loop(x, delta, starts, floor2, relax, eps, first, last, best_x, best, active, old, half_delta2, stopped):  # pragma: no cover - compiled
    """Relaxed SMACOF steps ``first + 1 .. last`` for every active start (see :func:`repgeom.core.kernels.smacof_steps`)."""
    count, _, n = x.shape
    sums = np.empty((count, 3, n), x.dtype)
    zero = x.dtype.type(0.0)
    for it in range(first + 1, last + 1):
        live = False
        for c in range(count):
            live = live or active[c]
        if not live:
            break
        for flat in numba.prange(count * n):
            c = flat // n
            if not active[c]:
                continue
            i = flat - c * n
            b = c // starts
            xi0 = x[c, 0, i]
            xi1 = x[c, 1, i]
            s0 = zero
            s1 = zero
            rs = zero
            for j in range(n):
                e0 = x[c, 0, j]
                e1 = x[c, 1, j]
                d0 = xi0 - e0
                d1 = xi1 - e1
                r = delta[b, i, j] / np.sqrt(max(d0 * d0 + d1 * d1, floor2))  # δ/d; 0 on the diagonal (δ_ii = 0)
                s0 += r * e0
                s1 += r * e1
                rs += r
            sums[c, 0, i] = s0
            sums[c, 1, i] = s1
            sums[c, 2, i] = rs
        for c in numba.prange(count):
            if not active[c]:
                continue
            b = c // starts
            # raw stress of x over pairs: Σδ² - 2Σδd + Σd², with Σδd = n Σ x·guttman, in float64
            sq = 0.0
            m0 = 0.0
            m1 = 0.0
            xg = 0.0
            for i in range(n):
                g0 = (sums[c, 2, i] * x[c, 0, i] - sums[c, 0, i]) / n
                g1 = (sums[c, 2, i] * x[c, 1, i] - sums[c, 1, i]) / n
                sums[c, 0, i] = g0
                sums[c, 1, i] = g1
                sq += float(x[c, 0, i]) * float(x[c, 0, i]) + float(x[c, 1, i]) * float(x[c, 1, i])
                m0 += x[c, 0, i]
                m1 += x[c, 1, i]
                xg += float(x[c, 0, i]) * float(g0) + float(x[c, 1, i]) * float(g1)
            sum_d2 = n * sq - (m0 * m0 + m1 * m1)
            raw = half_delta2[b] - 2.0 * n * xg + sum_d2
            if raw < best[c]:
                best[c] = raw
                for i in range(n):
                    best_x[c, 0, i] = x[c, 0, i]
                    best_x[c, 1, i] = x[c, 1, i]
            if not np.isnan(old[c]) and abs(old[c] - raw) < eps * max(sum_d2, 1e-300):
                active[c] = False
                stopped[c] = it
            old[c] = raw
            if active[c]:
                for i in range(n):
                    x[c, 0, i] += relax * (sums[c, 0, i] - x[c, 0, i])
                    x[c, 1, i] += relax * (sums[c, 1, i] - x[c, 1, i])
