"""The fused CPU kernels against the torch steps they replace, and their threading rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from sklearn.neighbors import NearestNeighbors

import repgeom.core.embedding as emb
from repgeom.core import kernels
from repgeom.core.embedding.tsne import exact_descent, exact_knn


def _clusters(n: int, d: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=3.0, size=(6, d))[np.arange(n) % 6] + rng.normal(size=(n, d))


def _affinities(n: int, seed: int) -> np.ndarray:
    """A symmetric (N, N) affinity matrix summing to 1, zero diagonal, as t-SNE's."""
    x = _clusters(n, seed=seed)
    p = np.exp(-squareform(pdist(x, "sqeuclidean")) / 20.0)
    np.fill_diagonal(p, 0.0)
    return (p / p.sum()).astype(np.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_smacof_takes_the_torch_steps(dtype):
    d = torch.stack([torch.from_numpy(squareform(pdist(_clusters(150, seed=s)))) for s in range(2)])
    starts = torch.stack([emb.mds_starts(m, 6, seed=0) for m in d])
    kwargs = {"max_iter": 300, "eps": 1e-7, "race": (10, 30), "dtype": dtype}
    fused = emb.smacof_many(d, starts, **kwargs)
    steps = emb.smacof_many(d, starts, fused=False, **kwargs)
    for m, (xa, sa, ia), (xb, sb, ib) in zip(d, fused, steps, strict=True):
        if dtype == torch.float64:
            assert sa == pytest.approx(sb, abs=1e-9)
        else:  # float32 rounding may tip a race to another start: never to a worse end
            assert sa <= sb + 5e-4
        assert sa == pytest.approx(emb.stress1(m, xa), abs=1e-12)
        if dtype == torch.float64:
            assert ia == ib
            np.testing.assert_allclose(xa.numpy(), xb.numpy(), atol=1e-7 * float(xb.abs().max()))
        assert xa.dtype == torch.float64 and xa.shape == (150, 2)


def test_fused_smacof_stress_is_the_stress_of_its_coordinates():
    d = torch.from_numpy(squareform(pdist(_clusters(120, seed=3))))
    coords, stress, iterations = emb.smacof(d, n_random=4, seed=1)
    assert stress == pytest.approx(emb.stress1(d, coords), abs=1e-12)
    assert 1 < iterations < 1000


def test_fused_tsne_takes_the_torch_steps():
    p = np.stack([_affinities(200, s) for s in range(2)])
    start = np.random.default_rng(0).normal(scale=1e-4, size=(2, 200, 2))
    phases = ((20, 12.0, 0.5), (20, 1.0, 0.8))
    fused = exact_descent(torch.from_numpy(p), torch.from_numpy(start), phases)
    steps = exact_descent(torch.from_numpy(p), torch.from_numpy(start), phases, fused=False)
    np.testing.assert_allclose(fused, steps, rtol=0, atol=1e-4 * np.abs(steps).max())
    assert np.abs(fused).max() > 100 * np.abs(start).max()  # it moved: the comparison means something


@pytest.mark.parametrize("n", [397, 500])
def test_fused_tsne_of_a_batch_is_bitwise_each_alone(n):
    p = np.stack([_affinities(n, s) for s in range(3)])
    start = np.random.default_rng(1).normal(scale=1e-4, size=(3, n, 2))
    phases = ((15, 12.0, 0.5), (15, 1.0, 0.8))
    p, start = torch.from_numpy(p), torch.from_numpy(start)
    batch = exact_descent(p, start, phases)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], exact_descent(p[i : i + 1], start[i : i + 1], phases)[0])


def test_exact_tsne_neighbours_come_from_the_top_50_components_of_the_distances():
    from sklearn.decomposition import PCA

    x = _clusters(300, d=120, seed=4) @ np.diag(np.geomspace(3, 0.1, 120))
    scores = emb.principal_axes(torch.from_numpy(squareform(pdist(x))), 50, dtype=torch.float32)
    ref = PCA(n_components=50).fit_transform(x)
    np.testing.assert_allclose(np.abs(scores.numpy()), np.abs(ref), atol=1e-4 * np.abs(ref).max())
    idx, _ = exact_knn(scores, 12)
    ref_idx = NearestNeighbors(n_neighbors=12).fit(ref).kneighbors()[1]
    assert (idx == ref_idx).mean() > 0.999


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_kernels_called_from_many_threads_at_once_do_not_abort():
    # numba's workqueue layer aborts the process when two threads launch parallel kernels at
    # once; every launch holds a lock. Run in a fresh interpreter so an abort fails the test, not pytest.
    out = _run("""
        import threading, numpy as np, torch
        import repgeom.core.embedding as emb
        from scipy.spatial.distance import pdist, squareform
        d = torch.from_numpy(squareform(pdist(np.random.default_rng(0).normal(size=(200, 8)))))
        want = emb.smacof(d, n_random=3, seed=0)[1]
        got, errors = [], []
        def work():
            try:
                for _ in range(5):
                    got.append(emb.smacof(d, n_random=3, seed=0)[1])
            except Exception as exc:
                errors.append(exc)
        threads = [threading.Thread(target=work) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors and len(got) == 20 and set(got) == {want}, (errors, got)
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_compile_kernels_leaves_every_kernel_ready():
    from repgeom.core import _numba_kernels

    kernels.compile_kernels()
    for kernel in (_numba_kernels.tsne_loop, _numba_kernels.smacof_loop):
        assert kernel.signatures  # compiled (or loaded from the disk cache) for the types used
    assert len(_numba_kernels.smacof_loop.signatures) == 2  # float32 (embeddings) and float64 (paths)


def test_importing_the_numerics_loads_no_heavy_library():
    # numba, openTSNE, scikit-learn and scipy.stats load on first use, not at import
    out = _run("""
        import sys
        import repgeom.core.embedding, repgeom.core.kernels, repgeom.core.metrics, repgeom.core.paths, repgeom.core.rdm
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "openTSNE", "sklearn", "llvmlite")
                       or m == "scipy.stats" or m == "repgeom.core._numba_kernels")
        print(heavy)
    """)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])
