"""``python -m benchmarks.bench``: repgeom against the notebook pipeline and against the machine.

Design notes:
    Every figure is a ratio against a baseline measured in the same run on the same
    machine and the same stimuli, so the table means something on any computer:

    1. *notebook*: the seed's own way of computing the bonus-section figures
       (rsatoolbox ``calc_rdm``, scikit-learn ``PCA``/``MDS``/``TSNE`` per node, the seed's
       path: rsatoolbox cosine comparison, arccos, ``MDS(n_init=10, max_iter=1000)``)
       against repgeom's engine from a cold cache, with embedding quality side by side.
    2. *machine*: an RDM against a bare matrix product of the same shape and dtype.

    Nothing here asserts a time: benchmarks report, tests check that they still run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repgeom.core.embedding import prepare_backends, stress1
from repgeom.core.rdm import compute_rdm
from repgeom.core.stimuli import sample_stimuli
from repgeom.pipeline import Engine

from .bench_http import bench_browser, format_browser
from .server import cpu_name

__all__ = ["SECTIONS", "BenchConfig", "format_report", "main", "run_bench"]

log = logging.getLogger(__name__)
STEPS = ["conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4"]
#: The sections, in the order they run.
SECTIONS = ("notebook", "machine", "browser", "scale")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        quick: small sizes and few repeats (a smoke run that keeps the benchmark alive).
        device: torch device for repgeom's side.
        data_root: full MNIST root for the N = 10,000 figures (skipped without it).
        sections: which sections to run (``notebook``, ``machine``, ``browser``, ``scale``).
    """

    quick: bool = False
    device: str | None = "cpu"
    data_root: str | None = None
    sections: tuple[str, ...] = SECTIONS
    models_dir: str | None = None


@dataclass
class Timer:
    """Accumulates wall-clock seconds per step."""

    seconds: dict[str, float] = field(default_factory=dict)

    def time(self, step: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, add its wall-clock time to ``step``, return its result."""
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t0
        return out


# ---------------------------------------------------------------------------- the notebook's way
def _seed_features(model: torch.nn.Module, images: torch.Tensor, nodes: list[str] | str) -> dict[str, torch.Tensor]:
    """The seed's ``extract_features``: create_feature_extractor, one forward pass, grads on."""
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    if nodes == "all":
        nodes = get_graph_node_names(model)[0]
    extractor = create_feature_extractor(model, return_nodes=list(nodes))
    return extractor(images)


def _seed_rdms(features: dict[str, torch.Tensor], method: str) -> list[np.ndarray]:
    """The seed's ``calc_rdms``: an rsatoolbox Dataset per layer, one ``calc_rdm`` call."""
    import rsatoolbox

    datasets = [
        rsatoolbox.data.Dataset(f.detach().cpu().reshape(f.shape[0], -1).numpy(), descriptors={"layer": name})
        for name, f in features.items()
    ]
    rdms = rsatoolbox.rdm.calc_rdm(datasets, method=method)
    return list(rdms.get_matrices())


def _seed_embed(features: dict[str, torch.Tensor], method: str, seed: int) -> dict[str, np.ndarray]:
    """The seed's ``plot_dim_reduction`` computations (sklearn defaults as the seed had them)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import MDS, TSNE

    out = {}
    for name, f in features.items():
        x = f.detach().cpu().reshape(f.shape[0], -1).numpy()
        if method == "pca":
            model = PCA(n_components=2)
        elif method == "mds":  # scikit-learn's defaults of the seed's time: 4 random starts, 300 iterations
            model = MDS(n_components=2, n_init=4, max_iter=300, init="random", normalized_stress="auto", random_state=seed)
        else:
            model = TSNE(n_components=2, perplexity=40, random_state=seed)
        out[name] = model.fit_transform(x)
    return out


def _seed_path(features: dict[str, dict[str, torch.Tensor]], labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed's ``rep_path`` (latest helpers): Euclidean RDMs + labels, cosine → arccos, MDS."""
    import rsatoolbox
    from sklearn.manifold import MDS

    mats = []
    for feats in features.values():
        mats += _seed_rdms(feats, "euclidean")
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels)).float()
    mats += _seed_rdms({"labels": onehot}, "euclidean")
    n = mats[0].shape[0]
    iu = np.triu_indices(n, 1)
    rdms = rsatoolbox.rdm.RDMs(np.stack([m[iu] for m in mats]))
    sim = rsatoolbox.rdm.compare(rdms, rdms, method="cosine")
    dist = np.nan_to_num(np.arccos(sim))
    dist = (dist + dist.T) / 2
    coords = MDS(n_components=2, max_iter=1000, n_init=10, init="random", normalized_stress="auto", metric="precomputed", random_state=seed).fit_transform(dist)
    return dist, coords


def _trust(features: torch.Tensor, coords: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(features.detach().cpu().reshape(features.shape[0], -1).numpy(), coords, n_neighbors=5))


def bench_notebook(cfg: BenchConfig) -> dict[str, Any]:
    """Section 1: the notebook pipeline against repgeom's engine on the same stimuli."""
    n_rdm, n_embed = (5, 10) if cfg.quick else (20, 50)
    steps = STEPS[:2] if cfg.quick else STEPS
    engine = Engine(cfg.models_dir, None, cfg.device, cache_bytes=4 << 30)
    ff, rec = engine.models["feedforward"].module, engine.models["recurrent"].module
    ff_cpu, rec_cpu = (m.to("cpu") for m in (ff, rec)) if engine.device.type != "cpu" else (ff, rec)
    s20, s50 = sample_stimuli(engine.source, n_rdm), sample_stimuli(engine.source, n_embed)
    x20, x50 = s20.tensor("cpu"), s50.tensor("cpu")

    # Libraries each side imports lazily, and repgeom's compiled kernels, are ready before
    # either is timed: a notebook kernel has imported them, a server does this at start-up.
    t0 = time.perf_counter()
    import rsatoolbox  # noqa: F401, PLC0415
    import sklearn.decomposition  # noqa: F401, PLC0415
    import sklearn.manifold  # noqa: F401, PLC0415

    t1 = time.perf_counter()
    prepare_backends()
    ready = {"notebook_s": t1 - t0, "repgeom_s": time.perf_counter() - t1}

    ref, ours = Timer(), Timer()
    ref.time("rdms", lambda: _seed_rdms(_seed_features(rec_cpu, x20, steps), "correlation"))
    feats50 = ref.time("embed_pca", lambda: _seed_features(rec_cpu, x50, steps))  # features count with the first method, as in ours
    ref_embeds = {m: ref.time(f"embed_{m}", lambda m=m: _seed_embed(feats50, m, 0)) for m in ("pca", "mds", "tsne")}
    ref_dist, ref_coords = ref.time(
        "path", lambda: _seed_path({"ff": _seed_features(ff_cpu, x50, "all"), "rec": _seed_features(rec_cpu, x50, "all")}, s50.labels, 0)
    )
    if engine.device.type != "cpu":
        ff.to(engine.device), rec.to(engine.device)

    spec20, spec50 = engine.spec(n_rdm), engine.spec(n_embed)
    ours.time("rdms", lambda: engine.rdms("recurrent", steps, spec20, "correlation"))
    our_embeds = {m: ours.time(f"embed_{m}", lambda m=m: engine.embeddings("recurrent", steps, spec50, m)) for m in ("pca", "mds", "tsne")}
    path = ours.time("path", lambda: engine.path(["feedforward", "recurrent"], None, spec50))

    quality: dict[str, Any] = {}
    for m in ("pca", "mds", "tsne"):
        for node, e in zip(steps, our_embeds[m], strict=True):
            row = {"trust_ref": _trust(feats50[node], ref_embeds[m][node]), "trust_ours": e.trustworthiness}
            if m == "mds":
                from repgeom.core.embedding import euclidean_distances

                d = euclidean_distances(feats50[node].detach()).numpy()
                row.update(stress_ref=stress1(d, ref_embeds[m][node]), stress_ours=float(e.stress))
            quality[f"{m}/{node}"] = row
    quality["path"] = {"stress_ref": stress1(ref_dist, ref_coords), "stress_ours": path.stress,
                       "max_abs_distance_diff": float(np.abs(ref_dist - path.distances).max())}
    rows = []
    for step in ref.seconds:
        rows.append({"step": step, "notebook_s": ref.seconds[step], "repgeom_s": ours.seconds[step], "speedup": ref.seconds[step] / ours.seconds[step]})
    total_ref, total_ours = sum(ref.seconds.values()), sum(ours.seconds.values())
    rows.append({"step": "total", "notebook_s": total_ref, "repgeom_s": total_ours, "speedup": total_ref / total_ours})
    worst_trust = min(q["trust_ours"] - q["trust_ref"] for k, q in quality.items() if "trust_ref" in q)
    mds_worse = [k for k, q in quality.items() if "stress_ref" in q and q["stress_ours"] > q["stress_ref"] + 1e-9]
    return {"n_rdm": n_rdm, "n_embed": n_embed, "nodes": steps, "rows": rows, "quality": quality, "ready_before_timing": ready,
            "worst_trust_delta": worst_trust, "stress_higher_than_reference": mds_worse}


# ---------------------------------------------------------------------------- against the machine
def _median_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_machine(cfg: BenchConfig) -> dict[str, Any]:
    """Section 2: RDM time against a bare matrix product of the same shape and dtype."""
    from repgeom.core.features import resolve_device

    device = resolve_device(cfg.device)
    shapes = [(200, 2048), (200, 128), (1000, 784)] if cfg.quick else [(500, 21632), (500, 128), (10000, 784)]
    repeats = 3 if cfg.quick else 7
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n, d in shapes:
        x = torch.rand(n, d, generator=gen).to(device)
        for dtype in (torch.float64, torch.float32):
            xd = x.to(dtype)
            t_mm = _median_time(lambda xd=xd: xd @ xd.T, repeats, device)
            for method in ("correlation", "euclidean"):
                t_rdm = _median_time(lambda xd=xd, method=method, dtype=dtype: compute_rdm(xd, method, dtype=dtype), repeats, device)
                rows.append({"n": n, "d": d, "dtype": str(dtype).removeprefix("torch."), "method": method, "rdm_s": t_rdm, "matmul_s": t_mm,
                             "ratio": t_rdm / t_mm})
    out = {"device": str(device), "rows": rows, "worst_ratio": max(r["ratio"] for r in rows)}
    if device.type != "cpu":
        out["agreement"] = _device_agreement(cfg, device)
    return out


def _device_agreement(cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """Features, RDMs and the path on ``device`` against the CPU, same stimuli; and their times."""
    n = 5 if cfg.quick else 50
    cpu, dev = Engine(cfg.models_dir, None, "cpu"), Engine(cfg.models_dir, None, str(device))
    t_cpu, t_dev = Timer(), Timer()
    worst_feat = worst_rdm = 0.0
    for model in ("feedforward", "recurrent"):
        nodes = cpu.nodes(model)
        spec_c, spec_d = cpu.spec(n), dev.spec(n)
        rc = t_cpu.time("rdms", lambda m=model, s=spec_c, nd=nodes: cpu.rdms(m, nd, s, "correlation"))
        rd = t_dev.time("rdms", lambda m=model, s=spec_d, nd=nodes: dev.rdms(m, nd, s, "correlation"))
        for node, a, b in zip(nodes, rc, rd, strict=True):
            fa, fb = cpu.features(model, node, spec_c), dev.features(model, node, spec_d).cpu()
            worst_feat = max(worst_feat, float((fa - fb).abs().max() / fa.abs().max().clamp_min(1e-12)))
            worst_rdm = max(worst_rdm, float(np.abs(a.matrix - b.matrix).max()))
    pc = t_cpu.time("path", lambda: cpu.path(["feedforward", "recurrent"], None, cpu.spec(n)))
    pd = t_dev.time("path", lambda: dev.path(["feedforward", "recurrent"], None, dev.spec(n)))
    return {
        "n_per_class": n,
        "max_rel_feature_diff": worst_feat,
        "max_abs_rdm_diff": worst_rdm,
        "max_abs_path_distance_diff": float(np.abs(pc.distances - pd.distances).max()),
        "cpu_s": t_cpu.seconds,
        "device_s": t_dev.seconds,
    }


def bench_scale(cfg: BenchConfig) -> dict[str, Any]:
    """Section 4: one model on the whole MNIST test set (or 1,000 images with ``quick``)."""
    from repgeom.figures.rdm import rdm_grid, rdm_slider
    from repgeom.ui.views import display_side

    if not cfg.data_root and not cfg.quick:
        return {"skipped": "needs --data-root (the full MNIST test set)"}
    engine = Engine(cfg.models_dir, cfg.data_root if not cfg.quick else None, cfg.device, cache_bytes=8 << 30)
    spec = engine.spec("all" if not cfg.quick else 100)
    t = Timer()
    stim = t.time("stimuli", lambda: engine.stimuli(spec))
    nodes = engine.nodes("recurrent")
    t.time("features (22 nodes)", lambda: engine.prefetch_features("recurrent", nodes, spec))
    rdms = t.time("RDMs (input, conv2, conv2_4)", lambda: engine.rdms("recurrent", ["input", "conv2", "conv2_4"], spec, "correlation"))
    side = display_side(stim.n, len(rdms))
    shown = [r.reduced(side) for r in rdms]
    grid_bytes = len(rdm_grid(shown).to_json())
    slider_bytes = len(rdm_slider(shown).to_json())
    pca = t.time("PCA conv2_4", lambda: engine.embedding("recurrent", "conv2_4", spec, "pca"))
    tsne = t.time("t-SNE conv2_4", lambda: engine.embedding("recurrent", "conv2_4", spec, "tsne"))
    return {
        "n": stim.n,
        "seconds": t.seconds,
        "heatmap_side": side,
        "rdm_grid_json_bytes": grid_bytes,
        "rdm_slider_json_bytes": slider_bytes,
        "trust_pca": pca.trustworthiness,
        "trust_tsne": tsne.trustworthiness,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _machine() -> dict[str, Any]:
    cpu = cpu_name()
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the chosen sections; returns the JSON-able report."""
    report: dict[str, Any] = {"machine": _machine(), "quick": cfg.quick}
    if "notebook" in cfg.sections:
        report["notebook"] = bench_notebook(cfg)
    if "machine" in cfg.sections:
        report["machine_limit"] = bench_machine(cfg)
    if "browser" in cfg.sections:

        report["browser"] = bench_browser(cfg.quick, cfg.device)
    if "scale" in cfg.sections:
        report["scale"] = bench_scale(cfg)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    lines = [f"machine: {json.dumps(report['machine'])}"]
    if "notebook" in report:
        nb = report["notebook"]
        lines += ["", f"1. notebook pipeline vs repgeom ({nb['n_rdm']}/class RDMs, {nb['n_embed']}/class embeddings and path)",
                  f"{'step':<12}{'notebook s':>12}{'repgeom s':>12}{'speed-up':>10}"]
        lines += [f"{r['step']:<12}{r['notebook_s']:>12.3f}{r['repgeom_s']:>12.3f}{r['speedup']:>9.1f}x" for r in nb["rows"]]
        lines.append(f"worst trustworthiness change (ours - notebook): {nb['worst_trust_delta']:+.4f}; "
                     f"MDS stress higher than notebook at: {nb['stress_higher_than_reference'] or 'none'}")
        lines.append(f"path stress: notebook {nb['quality']['path']['stress_ref']:.4f}, repgeom {nb['quality']['path']['stress_ours']:.4f}")
        rd = nb["ready_before_timing"]
        lines.append(f"not timed: importing the notebook's libraries {rd['notebook_s']:.2f} s; importing openTSNE and loading repgeom's "
                     f"numba kernels {rd['repgeom_s']:.2f} s (compiled once per install; a server does this at start-up)")
    if "machine_limit" in report:
        ml = report["machine_limit"]
        lines += ["", f"2. RDM vs a bare matrix product of the same shape ({ml['device']})",
                  f"{'N':>6}{'D':>7}{'dtype':>9}{'method':>13}{'RDM s':>10}{'matmul s':>10}{'ratio':>7}"]
        lines += [f"{r['n']:>6}{r['d']:>7}{r['dtype']:>9}{r['method']:>13}{r['rdm_s']:>10.4f}{r['matmul_s']:>10.4f}{r['ratio']:>7.2f}" for r in ml["rows"]]
        if "agreement" in ml:
            ag = ml["agreement"]
            lines.append(
                f"{ml['device']} vs cpu at {ag['n_per_class']}/class, all nodes of feedforward and recurrent: "
                f"features max rel diff {ag['max_rel_feature_diff']:.2e}, "
                f"RDMs max abs diff {ag['max_abs_rdm_diff']:.2e}, path angles max abs diff {ag['max_abs_path_distance_diff']:.2e}"
            )
            lines.append("  seconds (cpu -> device): " + ", ".join(f"{k} {ag['cpu_s'][k]:.2f} -> {ag['device_s'][k]:.2f}" for k in ag["cpu_s"]))
    if "browser" in report:
        lines += ["", *format_browser(report["browser"])]
    if "scale" in report:
        sc = report["scale"]
        lines += ["", "4. at scale"]
        if "skipped" in sc:
            lines.append(f"skipped: {sc['skipped']}")
        else:
            lines.append(f"N = {sc['n']} stimuli, recurrent model")
            lines += [f"{k:<32}{v:>9.2f} s" for k, v in sc["seconds"].items()]
            lines.append(f"heat maps sent as {sc['heatmap_side']}×{sc['heatmap_side']} block means: "
                         f"grid {sc['rdm_grid_json_bytes'] / 1e6:.2f} MB, slider {sc['rdm_slider_json_bytes'] / 1e6:.2f} MB")
            lines.append(f"trustworthiness (3,000-stimulus sample): PCA {sc['trust_pca']:.3f}, t-SNE {sc['trust_tsne']:.3f}; "
                         f"peak RSS {sc['peak_rss_mb']:.0f} MB")
    lines.append(f"\npeak RSS: {report['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    from repgeom.argparsing import OneLineParser

    p = OneLineParser(prog="python -m benchmarks.bench",
                      description="Speed against the notebook pipeline, the machine and the production server.")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto...")
    p.add_argument("--models-dir", default=None)
    p.add_argument("--data-root", default=None, help="full MNIST for the N = 10,000 figures")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; 0 when it ran, 2 for bad flags."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    bad = [s for s in sections if s not in SECTIONS]
    problem = None
    if bad or not sections:
        problem = f"unknown bench section {bad[0] if bad else ''!r}; allowed: {', '.join(SECTIONS)}"
    elif args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        problem = f"cannot write {args.json}: its folder does not exist"
    if problem:
        sys.stderr.write(f"python -m benchmarks.bench: error: {problem}\n")
        return 2
    report = run_bench(BenchConfig(args.quick, args.device, args.data_root, sections, args.models_dir))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
