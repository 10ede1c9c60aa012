"""The export file: RDMs, embeddings, features and the path in one ``.npz`` (and rsatoolbox HDF5).

Design notes:
    :func:`collect_export` computes everything through the :class:`~repgeom.pipeline.Engine`
    into a flat ``{key: array}`` dict; :func:`write_export` and :func:`export_bytes` only
    write. Files are written by :func:`repgeom.core.atomic.atomic_path`: under a
    temporary name in the target folder, renamed into place when complete, so an error,
    an interrupt or a full disk never leaves a partial file; a symbolic link ``--out``
    is written through, a FIFO, device or folder refused with one line.
    The ``.npz`` is stored uncompressed: float64 dissimilarities barely compress (zlib
    spent as long as the computation for a few per cent), and ``np.load`` can then map
    arrays straight from the file.

Keys (a public contract, see the README):
    ``labels`` (N,), ``indices`` (N,), ``class_names`` (C,), ``rdm/<model>/<node>`` (N, N),
    ``embed/<method>/<model>/<node>`` (N, 2), ``features/<model>/<node>`` (N, D),
    ``path/names`` (K,: ``<model>/<node>``, or ``<model>@<epoch>/<node>`` over training; then the
    landmarks and ``labels``), ``path/distances`` (K, K), with ``--bootstrap B`` also
    ``path/boot_distances`` (B, K, K), ``path/ellipses`` (K, 2, 2), ``path/ci_low`` and
    ``path/ci_high`` (K, K); with ``--difference A/i,B/j`` ``diff/<A/i>-<B/j>`` (N, N) and ``diff/mask`` (N, N), ``path/coords`` (K, 2), ``path/stress`` (),
    ``meta/json`` (): the settings and quality figures as a JSON string.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core.atomic import atomic_path
from .core.errors import RepgeomError
from .pipeline import Engine, StimulusSpec

__all__ = ["OUTPUT_MODE", "ExportRequest", "collect_export", "export_bytes", "write_export"]

#: Permission bits of an export file (readable by others, like any file a user asks for).
OUTPUT_MODE = 0o644


@dataclass(frozen=True)
class ExportRequest:
    """What to export (validated by :func:`collect_export` through the engine)."""

    models: Sequence[str]
    layers: str | Sequence[str] | None
    spec: StimulusSpec
    rdm_method: str = "correlation"
    path_rdm_method: str = "euclidean"
    compare: str = "cosine"
    embed: Sequence[str] = ()
    seed: int = 0
    perplexity: float = 40.0
    save_features: bool = False
    over_training: bool = False
    landmarks: Sequence[str] = ("labels",)
    bootstrap: int = 0
    differences: Sequence[str] = ()
    node_overrides: Mapping[str, Sequence[str]] = field(default_factory=dict)


def collect_export(engine: Engine, req: ExportRequest, step: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Compute everything ``req`` asks for.

    Args:
        engine: the engine.
        req: the request.
        step: called with a short description before each unit of work (progress).

    Returns:
        ``{key: array}`` in the layout of the module docstring.
    """
    tick = step or (lambda _msg: None)
    models = [engine.check_model(m) for m in req.models]
    if not models:
        raise RepgeomError(f"choose at least one model; allowed: {', '.join(engine.model_ids)}")
    if len(set(models)) != len(models):
        raise RepgeomError("each model may be named once")
    nodes = {m: req.node_overrides.get(m) or engine.select_nodes(m, req.layers) for m in models}
    out: dict[str, np.ndarray] = {}
    tick("stimuli")
    stim = engine.stimuli(req.spec)
    out["labels"] = stim.labels.astype(np.int64)
    out["indices"] = stim.indices.astype(np.int64)
    dataset = engine.dataset_of(models[0])
    out["class_names"] = np.asarray(dataset.class_names)
    quality: dict[str, dict[str, float]] = {}
    for m in models:
        tick(f"features {m}")
        engine.prefetch_features(m, nodes[m], req.spec)
        for r in engine.rdms(m, nodes[m], req.spec, req.rdm_method):
            tick(f"rdm {m}/{r.node}")
            out[f"rdm/{m}/{r.node}"] = r.matrix
        if req.save_features:
            for n in nodes[m]:
                out[f"features/{m}/{n}"] = engine.features(m, n, req.spec).cpu().numpy()
        for method in req.embed:
            for n in nodes[m]:
                tick(f"{method} {m}/{n}")
                e = engine.embedding(m, n, req.spec, method, req.seed, req.perplexity)
                out[f"embed/{method}/{m}/{n}"] = e.coords
                quality[f"{method}/{m}/{n}"] = {"trustworthiness": e.trustworthiness, "stress": e.stress, "perplexity": e.perplexity}
    tick("path")
    if req.over_training:  # one point per node per epoch: how the geometry forms while the network learns
        for m in models:
            if not engine.history(m):
                raise RepgeomError(f"model {m!r} has no training history; make one with `repgeom train {m} --checkpoint-every 1`")
        snapshots = {f"{m}@{e}": nodes[m] for m in models for e in engine.history(m)}
        path_models, path_nodes = list(snapshots), snapshots
    else:
        path_models, path_nodes = models, nodes
    path_args = (path_models, path_nodes, req.spec, req.path_rdm_method, req.compare, req.seed, req.landmarks)
    path = engine.path(*path_args)
    if req.bootstrap:
        tick(f"bootstrap x{req.bootstrap}")
        boot = engine.path_uncertainty(*path_args, n_boot=req.bootstrap)
        out["path/boot_distances"] = boot.distances
        out["path/ellipses"] = boot.ellipses
        out["path/ci_low"] = boot.low
        out["path/ci_high"] = boot.high
    for item in req.differences:
        tick(f"difference {item}")
        left, right = _difference_pair(item)
        diff, mask = engine.difference(left[0], left[1], right[0], right[1], req.spec, req.rdm_method, n_boot=req.bootstrap or 100, seed=req.seed)
        out[f"diff/{item.replace(',', '-')}"] = diff
        out["diff/mask" if len(req.differences) == 1 else f"diff/mask/{item.replace(',', '-')}"] = mask
    out["path/names"] = np.asarray(path.names)
    out["path/distances"] = path.distances
    out["path/coords"] = path.coords
    out["path/stress"] = np.asarray(path.stress)
    meta = {
        "models": models,
        "nodes": nodes,
        "n_per_class": req.spec.n_per_class,
        "condition": req.spec.condition,
        "epsilon": req.spec.epsilon,
        "attack_model": req.spec.attack_model,
        "rdm": req.rdm_method,
        "path_rdm": req.path_rdm_method,
        "compare": req.compare,
        "seed": req.seed,
        "over_training": req.over_training,
        "landmarks": list(req.landmarks),
        "bootstrap": req.bootstrap,
        "embedding_quality": quality,
        "dataset": dataset.id,
        "source": "embedded" if engine.source_of(dataset.id).name == "embedded" else f"{dataset.id}-test",
    }
    out["meta/json"] = np.asarray(json.dumps(meta))
    return out


def _difference_pair(item: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``A/node,B/node`` -> ``((A, node), (B, node))``."""
    parts = item.split(",")
    halves = [p.partition("/") for p in parts]
    if len(parts) != 2 or any(not m or not sep or not n for m, sep, n in halves):
        raise RepgeomError(f"--difference takes MODEL/NODE,MODEL/NODE, got {item[:60]!r}")
    return (halves[0][0], halves[0][2]), (halves[1][0], halves[1][2])


def export_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The ``.npz`` file content for ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_export(
    out: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    rsatoolbox: str | os.PathLike[str] | None = None,
    method: str = "correlation",
) -> None:
    """Write the ``.npz`` (and the rsatoolbox HDF5) so that both appear or neither does."""
    with (
        atomic_path(out, OUTPUT_MODE, follow_symlinks=True) as tmp_npz,
        atomic_path(rsatoolbox, OUTPUT_MODE, follow_symlinks=True) if rsatoolbox else contextlib.nullcontext() as tmp_h5,
    ):
        if tmp_h5 is not None:
            _write_hdf5(tmp_h5, arrays, method)
        with open(tmp_npz, "wb") as fh:
            np.savez(fh, **arrays)


def _write_hdf5(path: Path, arrays: Mapping[str, np.ndarray], method: str) -> None:
    """Write the ``rdm/*`` arrays as one rsatoolbox ``RDMs`` object in HDF5, atomically.

    The layout is rsatoolbox's own (``dissimilarities``, ``rdm_descriptors``,
    ``pattern_descriptors``, ``dissimilarity_measure``), so
    ``rsatoolbox.rdm.load_rdm(path)`` reads it; rdm descriptors ``model``, ``node`` and
    ``name`` say which RDM is which, pattern descriptors ``label`` and ``index`` which
    stimulus.
    """
    import h5py  # noqa: PLC0415 - only needed for this output

    keys = [k for k in arrays if k.startswith("rdm/")]
    if not keys:
        raise RepgeomError("no RDMs to write")
    n = arrays[keys[0]].shape[0]
    iu = np.triu_indices(n, k=1)
    diss = np.stack([arrays[k][iu] for k in keys])
    models = [k.split("/", 2)[1] for k in keys]
    nodes = [k.split("/", 2)[2] for k in keys]
    with h5py.File(path, "w") as f:
        f.attrs["rsatoolbox_version"] = "0.3"
        f["dissimilarities"] = diss
        f.create_group("descriptors")
        rd = f.create_group("rdm_descriptors")
        rd["model"] = np.asarray(models).astype("S")
        rd["node"] = np.asarray(nodes).astype("S")
        rd["name"] = np.asarray([f"{m}/{x}" for m, x in zip(models, nodes, strict=True)]).astype("S")
        rd["index"] = np.arange(len(keys))
        pd = f.create_group("pattern_descriptors")
        pd["label"] = np.asarray(arrays["labels"])
        pd["index"] = np.asarray(arrays["indices"])
        f.attrs["dissimilarity_measure"] = method
