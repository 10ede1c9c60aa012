"""Fused CPU kernels (numba) for the N × N inner loops of exact t-SNE and SMACOF.

Design notes:
    On a CPU, exact t-SNE and SMACOF at a few hundred stimuli are bound by memory traffic,
    not arithmetic: written as torch operations, every step of either makes five or six
    passes over (B, N, N) float32 tensors (a product for the squared distances, then a
    reciprocal or square root, row sums, scalings and a second product). Here each step is
    one pass per row that never stores an N × N intermediate: for every pair it computes the
    2-D distance, the kernel value and adds to the row's sums at once, with the inner loop
    over ``j`` vectorised and the rows spread over the threads. On the 2-core machine this
    project targets, for the seed's five recurrent steps at 50 per class (B = 5, N = 500),
    the 250 t-SNE steps take 0.09 s instead of 0.47 s and the raced SMACOF 0.16 s instead
    of 0.60 s. Other devices keep the torch form (:mod:`repgeom.core.embedding.tsne`,
    :mod:`repgeom.core.embedding.mds`), which suits a GPU.

    Every row's sums run over ``j`` in one fixed order whatever the batch holds, so an
    embedding computed in a batch is bitwise the one computed alone, as with the torch form.

    *Threads.* The kernels run on numba's ``workqueue`` threading layer (numba's own pool,
    the same on every machine). It does not accept two launches at once (the process
    aborts), so every launch holds :data:`_LAUNCH`; kernels use as many threads as torch does.

    *Loading.* Importing this module imports neither numba nor the kernels' sources
    (:mod:`repgeom.core._numba_kernels`): the first launch does. Kernels compile on first use
    (about 10 s for all of them) and are cached on disk (``cache=True``: ``__pycache__``
    beside the sources, else numba's user cache or ``$NUMBA_CACHE_DIR``);
    :func:`compile_kernels` does it ahead, as the server does before it serves and the
    benchmark before it times anything.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import torch

__all__ = ["compile_kernels", "smacof_steps", "tsne_exact"]

_LAUNCH = threading.Lock()


def _sources() -> ModuleType:
    """The numba kernels (numba imported on the first call; the module system caches it)."""
    from . import _numba_kernels  # noqa: PLC0415 - numba costs 0.3-0.5 s to import

    return _numba_kernels


@contextlib.contextmanager
def _launch() -> Iterator[None]:
    """Hold the launch lock (see the module notes), with as many threads as torch uses."""
    import numba  # noqa: PLC0415

    with _LAUNCH:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        yield


def tsne_exact(
    p: np.ndarray, y: np.ndarray, update: np.ndarray, gains: np.ndarray, iterations: int, exaggeration: float, momentum: float
) -> None:
    """Run one phase of exact-gradient t-SNE, in place, on a batch of embeddings.

    The step is openTSNE's (see :func:`repgeom.core.embedding.tsne.tsne_exact_torch`): gradient
    ``Σ_j (e·p_ij - w_ij/Z) w_ij (y_i - y_j)``, gains, momentum, learning rate
    N / exaggeration, steps clipped to length 5, re-centred.

    Args:
        p: (B, N, N) float32 C-contiguous affinities.
        y: (B, 2, N) float32 embeddings (updated).
        update: (B, 2, N) float32 last steps (updated).
        gains: (B, 2, N) float32 gains (updated).
        iterations: steps to run.
        exaggeration: early exaggeration factor of this phase.
        momentum: momentum of this phase.
    """
    kernels = _sources()
    with _launch():
        kernels.tsne_loop(p, y, update, gains, int(iterations), float(exaggeration), float(momentum))


def smacof_steps(
    x: np.ndarray,
    delta: np.ndarray,
    starts: int,
    floor2: float,
    relax: float,
    eps: float,
    first: int,
    last: int,
    state: dict[str, np.ndarray],
) -> None:
    """Relaxed SMACOF steps ``first + 1 .. last`` for a batch of starts, in place.

    Each step of an active start: the Guttman transform ``B(X) X / N`` (the N × N half fused
    into one pass), the raw stress of the current configuration from it
    (``Σδ²/2 - 2 N Σ x·guttman + Σd²`` over pairs, float64), the best configuration kept,
    the stop test ``|Δ stress| < eps · Σd²``, then ``X + relax (guttman - X)``. See
    :func:`repgeom.core.embedding.mds.smacof_many`, whose torch form this is.

    Args:
        x: (C, 2, N) float32 or float64 configurations, ``starts`` consecutive ones per matrix.
        delta: (B, N, N) dissimilarities of the same dtype, zero diagonal, C = B · starts.
        starts: starts per matrix.
        floor2: lower bound on squared 2-D distances (coincident points stay finite).
        relax: over-relaxation factor.
        eps: stopping tolerance.
        first: steps already run.
        last: run up to this step.
        state: ``best_x`` (C, 2, N), ``best`` (C,) float64 raw stress, ``active`` (C,) bool,
            ``old`` (C,) float64 last raw stress (NaN before the first step), ``half_delta2``
            (B,) float64 and ``stopped`` (C,) int64 step at which each start stopped; updated.
    """
    kernels = _sources()
    with _launch():
        kernels.smacof_loop(
            x, delta, int(starts), x.dtype.type(floor2), x.dtype.type(relax), float(eps), int(first), int(last),
            state["best_x"], state["best"], state["active"], state["old"], state["half_delta2"], state["stopped"],
        )


def compile_kernels() -> None:
    """Compile (or load from numba's disk cache) every kernel now, on tiny inputs."""
    z = np.zeros((1, 2, 4), np.float32)
    tsne_exact(np.full((1, 4, 4), 1 / 12, np.float32), np.arange(8, dtype=np.float32).reshape(1, 2, 4), z.copy(), np.ones_like(z), 1, 12.0, 0.5)
    for dtype in (np.float32, np.float64):
        x = np.arange(8, dtype=dtype).reshape(1, 2, 4)
        state = {"best_x": x.copy(), "best": np.full(1, np.inf), "active": np.ones(1, bool), "old": np.full(1, np.nan),
                 "half_delta2": np.full(1, 6.0), "stopped": np.zeros(1, np.int64)}
        smacof_steps(x, 1.0 - np.eye(4, dtype=dtype)[None], 1, 1e-12, 1.9, 1e-7, 0, 1, state)
