"""From a validated view to figures: engine calls plus figure builders, no Dash.

Each function here is what one callback does once its inputs are parsed, so callbacks
stay a few lines and these can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..core.distortion import confidence_ellipse, neighbour_distortion, procrustes_align, rms_radius, shepard_pairs
from ..core.embedding import align_sequence
from ..core.embedding.quality import default_neighbors
from ..core.errors import RepgeomError
from ..core.neighbours import point_neighbours
from ..core.rdm import bin_edges, block_stats
from ..core.stimuli import Stimuli
from ..figures import (
    block_figure,
    difference_figure,
    embedding_animation,
    embedding_grid,
    labels_distance_figure,
    metrics_figure,
    pair_figure,
    path_figure,
    probe_embedding_figure,
    probe_probabilities_figure,
    probe_rows_figure,
    rdm_grid,
    rdm_models,
    rdm_slider,
    shepard_figure,
    survive_figure,
    training_path_figure,
)
from ..figures.embedding import METHOD_NAMES
from ..figures.images import image_data_uri
from ..figures.present import for_projector
from ..figures.style import COMPARE_LABELS, STRESS_NAME, model_color, path_basis
from ..pipeline import PROBE_NEIGHBOURS, Engine
from .state import View, default_nodes, split_model_node
from .viewport import DEFAULT, Viewport

__all__ = [
    "DIFF_BOOT",
    "DIFF_MAX_N",
    "HEATMAP_CELLS",
    "PATH_BOOT",
    "SHEPARD_PAIRS",
    "SIDE_MODELS",
    "BlockInfo",
    "BlockSelection",
    "Progress",
    "EmbeddingViews",
    "HoverInfo",
    "NeighbourCard",
    "NeighboursInfo",
    "PathViews",
    "ProbeViews",
    "block_view",
    "difference_stimuli",
    "difference_view",
    "dataset_models",
    "display_side",
    "group_indices",
    "embedding_views",
    "hover_info",
    "metrics_view",
    "neighbours_view",
    "point_hover",
    "search_points",
    "note_figure",
    "model_colors",
    "models_rows",
    "pair_view",
    "presented",
    "path_steps",
    "path_view",
    "probe_note",
    "probe_views",
    "rdm_cell_block",
    "rdm_cell_blocks",
    "rdm_cell_rows",
    "rdm_hover",
    "rdm_views",
    "selection_rows",
    "single_pair_limit",
    "side_by_side_view",
    "side_models",
    "side_nodes",
    "survive_view",
    "update_selection",
]

MAX_SELECTION = 2
#: Heat-map cells per RDM figure (all panels, or all frames, together): 250k float32 cells
#: keep each figure near 1.3 MB and the seed's default (5 × 200²) at full resolution; larger
#: RDMs are shown as block means (the full RDM stays available in the export).
HEATMAP_CELLS = 250_000
#: Bootstrap samples behind the path view's intervals and ellipses (the CLI's export defaults to 100):
#: 20 keep one recurrent model's path under two seconds at 50 per class.
PATH_BOOT = 20
#: Bootstrap samples behind the difference RDM's reliable-sign mask (the CLI's export defaults to 100).
DIFF_BOOT = 50
#: The difference view's largest stimulus set (its bootstrap ranks N² cells per sample).
DIFF_MAX_N = 600
#: Pairs drawn per Shepard diagram of an embedding (a seeded subset; a path's are all drawn).
SHEPARD_PAIRS = 3000
#: Most models drawn side by side (rows of RDM grids).
SIDE_MODELS = 4
#: Nearest points on the plot listed on hover.
NEIGHBOURS = 3
#: Images shown from each side of a hovered block of a block-mean RDM.
BLOCK_IMAGES = 3
#: Most stimuli on each side of a selected block (a store naming more is not read).
MAX_BLOCK = 5_000
#: Nearest neighbours listed for a clicked point (in feature space and on the plot).
POINT_NEIGHBOURS = 6
#: The point search's longest text and most terms.
SEARCH_MAX_CHARS = 400
SEARCH_MAX_TERMS = 32


def presented(view: View, fig: go.Figure, fitted: bool = False) -> go.Figure:
    """``fig`` as the view's display mode shows it: restyled for a projector in presentation mode, else as it is.

    ``fitted``: the figure was laid out to fit the screen's height (a grid), which it keeps.
    """
    return for_projector(fig, keep_height=fitted) if view.mode == "present" and isinstance(fig, go.Figure) else fig


def model_colors(engine: Engine) -> dict[str, str]:
    """Each loaded model's colour: its manifest colour, else the palette's by its place among the loaded models."""
    return {m: model_color(k, engine.entry(m).color) for k, m in enumerate(engine.model_ids)}


def display_side(n: int, nodes: int) -> int:
    """Largest heat-map side (in cells) for ``nodes`` RDMs of ``n`` stimuli within the budget.

    The larger of the RDM tab's figures is the slider, which holds a frame per node plus
    its first frame again, so the budget is shared by ``nodes + 1`` maps.
    """
    return max(10, min(n, int((HEATMAP_CELLS / (max(nodes, 1) + 1)) ** 0.5)))


def rdm_cell_blocks(engine: Engine, view: View, x: int, y: int) -> tuple[tuple[int, int], tuple[int, int], bool]:
    """The stimulus rows under heat-map cell (x, y): ``((row start, row end), (column start, column end), binned)``.

    ``binned`` says the map shows block means (more stimuli than :func:`display_side`
    cells); each block is then a run of rows, ends excluded, else a single row.

    Raises:
        RepgeomError: for a cell outside the map.
    """
    n = engine.stimuli(view.spec(engine, view.n_rdm)).n
    side = display_side(n, len(view.nodes))
    edges = bin_edges(n, side) if n > side else np.arange(n + 1)
    if not (0 <= x < len(edges) - 1 and 0 <= y < len(edges) - 1):
        raise RepgeomError(f"heat-map cell ({x}, {y}) is outside the {len(edges) - 1}-cell map")
    return (int(edges[y]), int(edges[y + 1])), (int(edges[x]), int(edges[x + 1])), n > side


def rdm_cell_rows(engine: Engine, view: View, x: int, y: int) -> tuple[int, int]:
    """Stimulus rows (in the RDM view's stimulus set) under heat-map cell (x, y); first of a block."""
    (i, _), (j, _), _ = rdm_cell_blocks(engine, view, x, y)
    return i, j


@dataclass(frozen=True)
class BlockSelection:
    """A clicked cell of a block-mean RDM map: the block of stimulus pairs it averages.

    Stimuli are named by their index in the dataset's image set (as a pair is), so the
    selection means the same stimuli whatever the view's node count. It lives in the
    selection store as ``{"block": {"rows": [...], "cols": [...], "node": ...}}`` and is not
    kept in the URL (a link keeps single pairs only).

    Attributes:
        rows: the stimuli of the cell's row run.
        cols: the stimuli of the cell's column run.
        node: the node of the clicked panel (``None`` when the map does not say, as the slider's).
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    node: str | None = None

    def to_store(self) -> dict[str, Any]:
        """The selection store's value for this block."""
        return {"block": {"rows": list(self.rows), "cols": list(self.cols), "node": self.node}}


def rdm_cell_block(engine: Engine, view: View, x: int, y: int, panel: int | None) -> BlockSelection | None:
    """The block under heat-map cell (x, y) when the map shows block means, else ``None`` (the cell is one pair).

    Args:
        engine: the engine.
        view: a validated view (its RDM tab's stimuli and nodes).
        x: the cell's column.
        y: the cell's row.
        panel: index of the clicked node in ``view.nodes`` (``None`` when unknown).

    Raises:
        RepgeomError: for a cell outside the map.
    """
    (r0, r1), (c0, c1), binned = rdm_cell_blocks(engine, view, x, y)
    if not binned:
        return None
    indices = engine.stimuli(view.spec(engine, view.n_rdm)).indices
    node = view.nodes[panel] if panel is not None and 0 <= panel < len(view.nodes) else None
    return BlockSelection(tuple(int(i) for i in indices[r0:r1]), tuple(int(i) for i in indices[c0:c1]), node)


def selection_rows(indices: np.ndarray, selection: Sequence[int]) -> list[int]:
    """Rows of the current stimulus set holding the selected test-set indices (absent ones dropped)."""
    where = {int(t): r for r, t in enumerate(indices)}
    return [where[int(s)] for s in selection if int(s) in where]


def rdm_views(engine: Engine, view: View, selection: Sequence[int], viewport: Viewport = DEFAULT) -> tuple[go.Figure, go.Figure]:
    """The grid of RDM heat maps (laid out for the browser's ``viewport``) and the large heat map with a node slider."""
    spec = view.spec(engine, view.n_rdm)
    full = engine.rdms(view.model, list(view.nodes), spec, view.rdm_method)
    n = full[0].matrix.shape[0]
    side = display_side(n, len(full))
    rdms = [r.reduced(side) for r in full]
    rows = selection_rows(engine.stimuli(spec).indices, selection)
    if rdms[0].bins is not None:  # selected stimuli -> the blocks that hold them
        rows = [int(np.searchsorted(rdms[0].bins, r, side="right") - 1) for r in rows]
    cond = "" if spec.condition == "clean" else f", FGSM ε={spec.epsilon:g} against {spec.attack_model}"
    shown = "" if rdms[0].bins is None else f" · shown as {side}×{side} block means"
    title = f"RDMs of {view.model} · {spec.n_per_class} per class{cond}{shown}"
    names = engine.dataset_of(view.model).class_names
    described = engine.node_descriptions(view.model)
    return (
        rdm_grid(
            rdms, view.normalise, view.colorscale, rows, title=title, class_names=names, descriptions=described,
            width=viewport.figure_width(view.mode), height=viewport.figure_height(view.mode),
        ),
        rdm_slider(rdms, view.normalise, view.colorscale, rows, active=len(rdms) - 1, class_names=names, descriptions=described),
    )


@dataclass(frozen=True)
class EmbeddingViews:
    """The embeddings tab's figures: the grid, the animation and the MDS panels' Shepard diagrams."""

    grid: go.Figure
    animation: go.Figure
    shepard: go.Figure


def embedding_views(
    engine: Engine,
    view: View,
    selection: Sequence[int],
    progress: Callable[[int, int, str], None] | None = None,
    highlight: Sequence[int] = (),
    group: Sequence[int] | None = None,
    viewport: Viewport = DEFAULT,
) -> EmbeddingViews:
    """The methods × nodes grid, the animation of one method through the nodes, and MDS's Shepard diagrams.

    The animation's frames are Procrustes-aligned; with ``view.anim_scale == "rescaled"``
    each is first scaled to unit RMS radius; every frame's title gives its RMS radius as computed.

    Args:
        engine: the engine.
        view: a validated view.
        selection: indices (in the dataset's image set) of the stimuli to highlight.
        progress: called as ``progress(done, total, what)`` before each embedding is computed.
        highlight: indices of the stimuli ringed as search matches in every panel.
        group: indices of an isolated group (the other points dimmed in every panel), or ``None``.
        viewport: the browser's window, which the grid is laid out for.
    """
    spec = view.spec(engine, view.n_embed)
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, selection)
    found = selection_rows(stim.indices, highlight)
    isolated = None if group is None else selection_rows(stim.indices, group)
    nodes = list(view.nodes)
    methods = list(dict.fromkeys([*view.embed_methods, view.anim_method]))
    engine.prefetch_features(view.model, nodes, spec)
    steps = [(m, n) for m in methods for n in nodes]
    for done, (method, node) in enumerate(steps):
        if progress is not None:
            progress(done, len(steps), f"{METHOD_NAMES[method]} of {node}")
        engine.embedding(view.model, node, spec, method, perplexity=view.perplexity)
    grid = [engine.embeddings(view.model, nodes, spec, m, perplexity=view.perplexity) for m in view.embed_methods]
    raw = engine.embeddings(view.model, nodes, spec, view.anim_method, perplexity=view.perplexity)
    rescaled = view.anim_scale == "rescaled"
    frames = align_sequence(raw, rescale=rescaled)
    if progress is not None:
        progress(len(steps), len(steps), "drawing")
    true = {n: engine.feature_distances(view.model, n, spec) for n in nodes} if "mds" in view.embed_methods else {}
    distortions = [[neighbour_distortion(true[e.node], e.coords, NEIGHBOURS) if e.method == "mds" else None for e in row] for row in grid]
    names = engine.dataset_of(view.model).class_names
    k = default_neighbors(stim.n)
    return EmbeddingViews(
        embedding_grid(
            grid, stim.indices, rows, names, distortions, k, found, isolated, width=viewport.figure_width(view.mode), height=viewport.figure_height(view.mode)
        ),
        embedding_animation(frames, stim.indices, rows, names, [rms_radius(e.coords) for e in raw], rescaled, k, found, isolated),
        embedding_shepard(grid, true),
    )


def embedding_shepard(grid: Sequence[Sequence[Any]], true: dict[str, np.ndarray]) -> go.Figure:
    """Shepard diagrams of the grid's MDS embeddings (a note when MDS is not among the methods)."""
    panels = [
        (e.node, *shepard_pairs(true[e.node], e.coords, SHEPARD_PAIRS)[:2], e.stress) for row in grid for e in row if e.method == "mds"
    ]
    if not panels:
        return note_figure("Shepard diagrams are drawn for MDS: tick MDS among the methods.")
    model = grid[0][0].model
    return shepard_figure(
        panels,
        "feature distance",
        f"Shepard diagrams of the MDS embeddings of {model}<br><sup>each pair's plotted distance against the Euclidean distance of its features "
        f"(up to {SHEPARD_PAIRS} pairs a node) · dashed: plotted = true · {STRESS_NAME} per panel</sup>",
    )


def note_figure(text: str, height: int = 200) -> go.Figure:
    """An empty figure that says ``text`` (what to do to see something there)."""
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": text, "showarrow": False, "font": {"size": 14, "color": "#555"}}],
    )
    return fig


#: A progress report: ``(steps done, steps in all, what comes next)``.
Progress = Callable[[int, int, str], None]


class _Ticker:
    """Counts steps for a :data:`Progress` callable: each call reports the step about to start."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, max(total, 1), 0

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress(min(self.done, self.total - 1), self.total, what)
        self.done += 1


def path_steps(engine: Engine, view: View, bootstrap: bool = True) -> int:
    """How many steps :func:`path_view` reports (with a ``progress``): features of each model, the path, the bootstrap, each seed yardstick."""
    models, _, _ = _path_models(engine, view)
    boot = bootstrap and view.path_mode == "models" and view.compare != "tau_a"
    yardsticks = sum(1 for m in models if engine.replicates(m)) if boot else 0
    return len(models) + 1 + int(boot) + yardsticks


@dataclass(frozen=True)
class PathViews:
    """The path tab's figures: the path (with its ellipses once bootstrapped), the angle to labels, the Shepard diagram, a note."""

    path: go.Figure
    to_labels: go.Figure
    shepard: go.Figure
    note: str


def _path_models(engine: Engine, view: View) -> tuple[list[str], dict[str, list[str]] | None, list[int]]:
    """The path's model ids and nodes: the chosen models (all nodes), or the view's model at each epoch of its history."""
    if view.path_mode == "models":
        return list(view.path_models), None, []
    epochs = list(engine.history(view.model))
    if not epochs:
        with_history = [m for m in engine.model_ids if engine.history(m)]
        raise RepgeomError(
            f"{view.model} has no training history; models with one: {', '.join(with_history) or 'none'} (choose it as the model)"
        )
    ids = [f"{view.model}@{e}" for e in epochs]
    return ids, {m: list(view.nodes) for m in ids}, epochs


def path_view(engine: Engine, view: View, bootstrap: bool = True, progress: Progress | None = None) -> PathViews:
    """The path tab: the path, the angle to labels and the path's Shepard diagram.

    Models mode: the chosen models over all their nodes, with the view's landmarks and
    class-group hypotheses; with ``bootstrap``, :data:`PATH_BOOT` samples of the stimuli
    within class give 95 % ellipses and intervals (none for tau-a), and each model with a
    second seed gets its seed variability as a band. Per-point distortion shows on hover.
    Training mode: the view's model and nodes at each epoch of its history, animated
    epoch by epoch (no bootstrap).

    ``progress(done, total, what)`` is called before each step (see :func:`path_steps`).
    """
    spec = view.spec(engine, view.n_embed)
    models, nodes, epochs = _path_models(engine, view)
    marks = view.landmark_spec()
    tick = _Ticker(progress, path_steps(engine, view, bootstrap))
    for m in models if progress is not None else ():  # features model by model: progress while they are extracted
        tick(f"features of {m}")
        engine.prefetch_features(m, engine.select_nodes(m, (nodes or {}).get(m)), spec)
    tick("the path's RDMs and MDS")
    path = engine.path(models, nodes, spec, view.path_rdm, view.compare, landmarks=marks)
    shown = path.display_rows
    true, plotted, _ = shepard_pairs(path.distances[np.ix_(shown, shown)], path.coords[shown])
    shepard = shepard_figure(
        [("path", true, plotted, path.stress)],
        "rad",
        f"Shepard diagram of the path<br><sup>{path_basis(path.rdm_method, path.compare)} · each pair of points: plotted distance against true angle</sup>",
    )
    if view.path_mode == "training":
        note = f"{len(epochs)} epochs of {view.model}'s training (epoch 0: initialisation); no bootstrap over training paths."
        return PathViews(training_path_figure(path, view.model, epochs), labels_distance_figure(path, None, None, _epoch_colors(path)), shepard, note)
    notes: list[str] = []
    uncertainty = None
    if not bootstrap:
        pass
    elif view.compare == "tau_a":
        notes.append("No bootstrap for Kendall's tau-a (0.05 s a pair of RDMs).")
    else:
        tick(f"{PATH_BOOT} bootstrap samples")
        uncertainty = engine.path_uncertainty(models, nodes, spec, view.path_rdm, view.compare, landmarks=marks, n_boot=PATH_BOOT)
        notes.append(f"Intervals and ellipses from {PATH_BOOT} bootstrap samples of the stimuli within class (export --bootstrap B for more).")
    drawn = set(shown.tolist()) if uncertainty is not None else set()
    ellipses = [confidence_ellipse(uncertainty.ellipses[i], path.coords[i]) if i in drawn else None for i in range(len(path.names))]
    yardsticks = {}
    for m in models:
        if bootstrap and engine.replicates(m) and view.compare != "tau_a":
            chosen = [path.nodes[i] for i in path.rows_of(m)]
            tick(f"seed variability of {m}")
            yardsticks[m] = engine.seed_variability(m, chosen, spec, view.path_rdm, view.compare)
            notes.append(f"Band: seed variability of {m}, the angle to {engine.replicates(m)[0]} at each node.")
    colors = model_colors(engine)
    distortion = neighbour_distortion(path.distances, path.coords, NEIGHBOURS)
    return PathViews(
        path_figure(path, colors=colors, uncertainty=uncertainty, ellipses=ellipses, distortion=distortion),
        labels_distance_figure(path, uncertainty, yardsticks, colors),
        shepard,
        " ".join(notes),
    )


def _epoch_colors(path: Any) -> dict[str, str]:
    from plotly.colors import sample_colorscale  # noqa: PLC0415

    models = list(dict.fromkeys(m for m in path.models if m not in ("landmark", "labels")))
    return dict(zip(models, sample_colorscale("Viridis", [0.9 * k / max(len(models) - 1, 1) for k in range(len(models))]), strict=True))


def survive_view(engine: Engine, view: View, progress: Progress | None = None) -> go.Figure | None:
    """The path under each of ``view.survive``'s comparisons, Procrustes-aligned to the first (``None`` when none are chosen).

    ``progress(done, total, what)`` is called before each comparison's path.
    """
    if not view.survive:
        return None
    spec = view.spec(engine, view.n_embed)
    models, nodes, _ = _path_models(engine, view)
    tick = _Ticker(progress, len(view.survive))
    paths = []
    for c in view.survive:
        tick(f"the path under {COMPARE_LABELS.get(c, c)}")
        paths.append(engine.path(models, nodes, spec, view.path_rdm, c, landmarks=view.landmark_spec()))
    aligned = [procrustes_align(p.coords, paths[0].coords) for p in paths]
    colors = model_colors(engine) if view.path_mode == "models" else _epoch_colors(paths[0])
    return survive_figure(paths, aligned, colors)


def difference_stimuli(engine: Engine, view: View) -> Stimuli:
    """The stimuli of the view's difference RDM (the RDM tab's).

    Raises:
        RepgeomError: above :data:`DIFF_MAX_N` stimuli.
    """
    stim = engine.stimuli(view.spec(engine, view.n_rdm))
    if stim.n > DIFF_MAX_N:
        raise RepgeomError(f"the difference RDM is offered up to {DIFF_MAX_N} stimuli, got {stim.n}: lower the RDMs' images per class")
    return stim


def difference_view(engine: Engine, view: View, progress: Progress | None = None) -> go.Figure | None:
    """The difference RDM of ``view.diff_a`` minus ``view.diff_b`` on the RDM tab's stimuli (``None`` until both are chosen).

    Args:
        engine: the engine.
        view: the view (its A, B, stimuli and dissimilarity).
        progress: told of each step (features, then the bootstrap) when given.

    Raises:
        RepgeomError: above :data:`DIFF_MAX_N` stimuli.
    """
    if not view.diff_a or not view.diff_b:
        return None
    dataset = engine.dataset_of(view.model).id
    (ma, na), (mb, nb) = (split_model_node(engine, x, dataset, w) for x, w in ((view.diff_a, "A"), (view.diff_b, "B")))
    spec = view.spec(engine, view.n_rdm)
    stim = difference_stimuli(engine, view)
    if progress is not None:
        progress(0, 2, f"features of {view.diff_a} and {view.diff_b}")
        for model, node in ((ma, na), (mb, nb)):
            engine.prefetch_features(model, [node], spec)
        progress(1, 2, f"{DIFF_BOOT} bootstrap samples of both RDMs")
    diff, mask = engine.difference(ma, na, mb, nb, spec, view.rdm_method, n_boot=DIFF_BOOT)
    return difference_figure(diff, mask, stim.labels, view.diff_a, view.diff_b, view.rdm_method, DIFF_BOOT, engine.dataset_of(view.model).class_names)


def models_rows(engine: Engine) -> list[dict[str, Any]]:
    """One row per loaded model for the models table."""
    rows = []
    for m in engine.model_ids:
        e = engine.entry(m)
        rows.append(
            {
                "model": m,
                "dataset": engine.dataset_of(m).name,
                "architecture": e.architecture,
                "parameters": f"{e.parameters:,}",
                "nodes": len(engine.nodes(m)),
                "clean accuracy": f"{100 * e.accuracy['clean']:.2f}%" if "clean" in e.accuracy else "n/a",
                "FGSM accuracy (ε=0.2, own)": f"{100 * e.accuracy['fgsm']:.2f}%" if "fgsm" in e.accuracy else "n/a",
                "SHA-256": e.sha256[:12],
            }
        )
    return rows


def dataset_models(engine: Engine, view: View) -> list[str]:
    """The loaded models of the view's model's dataset (they can share its stimuli), the view's model first."""
    dataset = engine.dataset_of(view.model).id
    return [view.model, *(m for m in engine.model_ids if m != view.model and engine.dataset_of(m).id == dataset)]


def metrics_view(engine: Engine, view: View, progress: Progress | None = None) -> go.Figure:
    """Block contrast and silhouette over every node of every model of the view's dataset, in one plot.

    Args:
        engine: the engine.
        view: the view (its model's dataset, stimuli and dissimilarity).
        progress: told of each model in turn when given.
    """
    spec = view.spec(engine, view.n_rdm)
    models = dataset_models(engine, view)
    metrics = []
    for k, m in enumerate(models):
        if progress is not None:
            progress(k, len(models), f"every node's RDM of {m}")
        metrics.append(engine.node_metrics(m, "all", spec, view.rdm_method))
    return metrics_figure(metrics, model_colors(engine), view.rdm_method)


def side_models(engine: Engine, view: View) -> list[str]:
    """The models drawn side by side: the view's model, then the other path models of its dataset (at most :data:`SIDE_MODELS`).

    With no other path model of that dataset, the first other model of the dataset joins
    (so two models are always compared when the dataset has two).
    """
    same = dataset_models(engine, view)
    chosen = [view.model, *(m for m in view.path_models if m != view.model and m in same)]
    if len(chosen) == 1 and len(same) > 1:
        chosen.append(same[1])
    return chosen[:SIDE_MODELS]


def side_nodes(engine: Engine, view: View, model: str) -> list[str]:
    """``model``'s nodes in the side-by-side grid: the view's nodes it has, else its default nodes."""
    have = set(engine.nodes(model))
    kept = [n for n in view.nodes if n in have]
    return kept or list(default_nodes(engine, model))


def side_by_side_view(engine: Engine, view: View, progress: Progress | None = None) -> go.Figure:
    """Two (or more) models' RDM grids on one shared colour scale, one row per model (:func:`side_models`).

    Args:
        engine: the engine.
        view: the view (its model, path models, nodes, stimuli and dissimilarity).
        progress: told of each model in turn when given.
    """
    spec = view.spec(engine, view.n_rdm)
    models = side_models(engine, view)
    rows = []
    for k, m in enumerate(models):
        if progress is not None:
            progress(k, len(models), f"RDMs of {m}")
        rows.append(engine.rdms(m, side_nodes(engine, view, m), spec, view.rdm_method))
    n = rows[0][0].matrix.shape[0]
    side = display_side(n, sum(len(r) for r in rows))
    rows = [[r.reduced(side) for r in row] for row in rows]
    shown = "" if rows[0][0].bins is None else f" · shown as {side}×{side} block means"
    title = (  # short lines: the title is not wrapped by Plotly, and a narrow window clipped one long line
        f"{' vs '.join(models)} side by side<br>"
        f"<sup>{spec.n_per_class} per class{shown} · one colour scale for every panel (same colour = same dissimilarity)</sup><br>"
        "<sup>tick models under “Models in the path” to choose which</sup>"
    )
    return rdm_models(rows, view.colorscale, title, engine.dataset_of(view.model).class_names)


def pair_view(engine: Engine, view: View, selection: Sequence[int]) -> go.Figure | None:
    """The selected pair's dissimilarity at every node of the chosen model (``None`` without a pair)."""
    if len(selection) < 2:
        return None
    spec = view.spec(engine, max(view.n_rdm, view.n_embed))
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, selection[-2:])
    if len(rows) < 2:
        raise RepgeomError("the selected stimuli are not in the current stimulus set; select again")
    i, j = rows
    nodes = engine.nodes(view.model)
    values = [float(r.matrix[i, j]) for r in engine.rdms(view.model, nodes, spec, view.rdm_method)]
    names = engine.dataset_of(view.model).class_names
    return pair_figure(
        view.model,
        nodes,
        values,
        (int(stim.indices[i]), int(stim.indices[j])),
        (names[int(stim.labels[i])], names[int(stim.labels[j])]),
        view.rdm_method,
        model_colors(engine)[view.model],
    )


@dataclass(frozen=True)
class BlockInfo:
    """What the pair panel shows for a selected block: its figure, what it holds, how to pick single pairs, example images."""

    figure: go.Figure
    summary: str
    hint: str
    images: list[str]
    captions: list[str]


def single_pair_limit(engine: Engine, view: View) -> int:
    """The most images per class at which the view's RDM maps show one cell per pair (at least 1)."""
    cells = int((HEATMAP_CELLS / (len(view.nodes) + 1)) ** 0.5)
    return max(1, cells // len(engine.dataset_of(view.model).class_names))


def block_view(engine: Engine, view: View, block: BlockSelection) -> BlockInfo:
    """The pair panel for a block of a block-mean map: its mean, spread and range at every node, and example images.

    The mean is the block-mean map's value (the tooltip's); the spread (SD, min, max) is
    over the block's pairs of two different stimuli. With the clicked node known, the
    summary gives its numbers (and, for maps scaled per node, the value as the map shows it).

    Raises:
        RepgeomError: when the block's stimuli are not all in the RDM tab's stimulus set.
    """
    spec = view.spec(engine, view.n_rdm)
    stim = engine.stimuli(spec)
    rows, cols = selection_rows(stim.indices, block.rows), selection_rows(stim.indices, block.cols)
    if len(rows) != len(block.rows) or len(cols) != len(block.cols):
        raise RepgeomError("the selected block's stimuli are not all in the RDMs' current stimulus set; click a cell again")
    nodes = engine.nodes(view.model)
    rdms = engine.rdms(view.model, nodes, spec, view.rdm_method)
    stats = [block_stats(r.matrix, np.asarray(rows), np.asarray(cols)) for r in rdms]
    names = engine.dataset_of(view.model).class_names

    def classes(where: Sequence[int]) -> str:
        present = [names[c] for c in sorted(set(stim.labels[list(where)].tolist()))]
        return ("class " if len(present) == 1 else "classes ") + ", ".join(present)

    first = stats[0]
    size = f"{len(rows)} × {len(cols)} stimuli"
    summary = f"A block of {size}, {first.pairs} pairs of different stimuli (rows: {classes(rows)}; columns: {classes(cols)})."
    if block.node in nodes:
        k = nodes.index(block.node)
        s = stats[k]
        summary += f" At {block.node}: block mean of the {view.rdm_method} dissimilarity {s.mean:.4g}"
        if view.normalise == "per":
            side = display_side(stim.n, len(view.nodes))
            summary += f" (shown as {s.mean / float(rdms[k].reduced(side).matrix.max()):.4g} of the node's max)"
        if s.pairs != len(rows) * len(cols):
            summary += f"; over its pairs of different stimuli (the zero self-pairs left out) the mean is {s.pair_mean:.4g}"
        summary += f"; SD over the pairs {s.sd:.3g}; min {s.low:.4g}, max {s.high:.4g}."
    summary += " The figure gives them at every node."
    limit = single_pair_limit(engine, view)
    hint = (
        f"The maps show block means at {spec.n_per_class} images per class, so a cell is a block of pairs. To pick single pairs, "
        f"set the RDMs' images per class to {limit} or fewer (each cell is then one pair), or click two points of an embedding."
    )
    title = f"block of {size}<br>{classes(rows)} × {classes(cols)}<br><sup>in {view.model}</sup>"
    fig = block_figure(
        view.model, nodes, [s.mean for s in stats], [s.sd for s in stats], [s.low for s in stats], [s.high for s in stats],
        title, view.rdm_method, model_colors(engine)[view.model],
    )
    images, captions = [], []
    for what, where in (("row", rows), ("column", cols)):
        for r, cap in _spread_images(stim, names, where):
            images.append(r)
            captions.append(f"{what} · {cap}")
    return BlockInfo(fig, summary, hint, images, captions)


def _spread_images(stim: Any, names: Sequence[str], rows: Sequence[int]) -> list[tuple[str, str]]:
    """:data:`BLOCK_IMAGES` images spread across ``rows`` (first, middle, last), with ``class … · image #…`` captions."""
    picks = sorted(set(np.linspace(0, len(rows) - 1, min(BLOCK_IMAGES, len(rows))).round().astype(int).tolist()))
    return [
        (image_data_uri(stim.pixels[rows[p]], size=56), f"class {names[int(stim.labels[rows[p]])]} · image #{int(stim.indices[rows[p]])}")
        for p in picks
    ]


def update_selection(current: Sequence[int], new: Sequence[int], pair: bool) -> list[int]:
    """A click's effect: an RDM cell replaces the pair; a point joins it (last two kept)."""
    if pair:
        return [int(x) for x in new][-MAX_SELECTION:]
    out = [int(x) for x in current if int(x) not in new] + [int(x) for x in new]
    return out[-MAX_SELECTION:]


@dataclass(frozen=True)
class HoverInfo:
    """What the hover panel shows: one or two stimulus images with a caption."""

    images: list[str]
    captions: list[str]
    summary: str


def hover_info(engine: Engine, view: View, test_indices: Sequence[int], summary: str) -> HoverInfo:
    """Images and captions for hovered stimuli (given by their index in the dataset's image set)."""
    spec = view.spec(engine, max(view.n_rdm, view.n_embed))
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, test_indices)
    if len(rows) != len(test_indices):
        raise RepgeomError("hovered stimulus is not in the current stimulus set")
    images = [image_data_uri(stim.pixels[r]) for r in rows]
    names = engine.dataset_of(view.model).class_names
    captions = [f"class {names[int(stim.labels[r])]} · image #{stim.indices[r]}" for r in rows]
    return HoverInfo(images, captions, summary)


def rdm_hover(engine: Engine, view: View, x: int, y: int, panel: int | None, shown: float | None) -> HoverInfo:
    """The hover panel for heat-map cell (x, y): both images and the real dissimilarity.

    Args:
        engine: the engine.
        view: a validated view (its RDM tab's stimuli, nodes and method).
        x: the cell's column in the shown heat map.
        y: the cell's row in the shown heat map.
        panel: index of the hovered node in ``view.nodes`` (``None`` for the slider map,
            whose current frame the browser does not report).
        shown: the value the browser showed (used when ``panel`` is unknown).
    """
    spec = view.spec(engine, view.n_rdm)
    stim = engine.stimuli(spec)
    rows, cols, binned = rdm_cell_blocks(engine, view, x, y)
    if binned:
        return _block_hover(engine, view, x, y, rows, cols, panel, shown)
    i, j = rows[0], cols[0]
    if panel is not None and 0 <= panel < len(view.nodes):
        node = view.nodes[panel]
        value = float(engine.rdm(view.model, node, spec, view.rdm_method).matrix[i, j])
        summary = f"{node}: {view.rdm_method} dissimilarity {value:.4g}"
    else:
        summary = f"{view.rdm_method} dissimilarity {shown:.4g}" + (" of the max" if view.normalise == "per" else "") if shown is not None else ""
    return hover_info(engine, view, [int(stim.indices[i]), int(stim.indices[j])], summary)


def _block_hover(
    engine: Engine, view: View, x: int, y: int, rows: tuple[int, int], cols: tuple[int, int], panel: int | None, shown: float | None
) -> HoverInfo:
    """The hover panel for a cell of a block-mean map: the block's mean, what the block holds, and images from each side.

    The value is the shown cell's (the mean over the block of the node's full RDM), so the
    panel and the heat map's tooltip say the same thing.
    """
    spec = view.spec(engine, view.n_rdm)
    stim = engine.stimuli(spec)
    names = engine.dataset_of(view.model).class_names
    size = f"{rows[1] - rows[0]} × {cols[1] - cols[0]} stimuli"
    scaled = view.normalise == "per"
    if panel is not None and 0 <= panel < len(view.nodes):
        node = view.nodes[panel]
        full = engine.rdm(view.model, node, spec, view.rdm_method)
        value = float(full.reduced(display_side(stim.n, len(view.nodes))).matrix[y, x])
        summary = f"{node}: block mean of the {view.rdm_method} dissimilarity {value:.4g} over {size}"
        if scaled and shown is not None:
            summary += f" (shown as {shown:.4g} of the node's max)"
    elif shown is not None:
        summary = f"block mean of the {view.rdm_method} dissimilarity {shown:.4g}" + (" of the max" if scaled else "") + f" over {size}"
    else:
        summary = f"block of {size}"

    def classes(a: int, b: int) -> str:
        present = [names[c] for c in sorted(set(stim.labels[a:b].tolist()))]
        return ("class " if len(present) == 1 else "classes ") + ", ".join(present)

    summary += f" · block {y} (rows: {classes(*rows)}) × block {x} (columns: {classes(*cols)}); the map shows block means at this size"
    images, captions = [], []
    for what, k, (a, b) in (("row", y, rows), ("column", x, cols)):
        for image, cap in _spread_images(stim, names, range(a, b)):
            images.append(image)
            captions.append(f"{what} block {k} · {cap}")
    return HoverInfo(images, captions, summary)


@dataclass(frozen=True)
class ProbeViews:
    """The live probe's outputs: what the model saw (a PNG data URI), a note on how it was prepared, and three figures."""

    seen: str
    note: str
    probabilities: go.Figure
    embedding: go.Figure
    rows: go.Figure


def probe_note(engine: Engine, model: str) -> str:
    """How an image is prepared for ``model``, in the words of its dataset's descriptor."""
    d = engine.dataset_of(model)
    box = d.content_box or min(d.image_size)
    centred = "its centre of mass" if d.centring == "mass" else "its bounding box"
    return (
        f"Prepared like {d.name}'s images: ink made bright, its bounding box scaled to fit {box} × {box} pixels in a "
        f"{d.image_size[0]} × {d.image_size[1]} image ({'grey' if d.channels == 1 else 'RGB'}), centred by {centred}, "
        f"then normalised with the dataset's mean and std."
    )


def probe_views(engine: Engine, view: View, pixels: np.ndarray) -> ProbeViews:
    """A prepared image through the view's model: probabilities, its place in each chosen embedding, its dissimilarity rows.

    The stimuli are the embeddings tab's (``view.n_embed`` per class), so the embeddings
    it lands in are the ones that tab shows. PCA (milliseconds) is always drawn; MDS and
    t-SNE (seconds, in that tab's background job) only once that tab has computed them,
    which the note then says, so a drawing is answered at once.

    Args:
        engine: the engine.
        view: a validated view (model, nodes, RDM method, embedding methods, perplexity).
        pixels: (C, H, W) in [0, 1], prepared by :func:`~repgeom.core.probe.prepare_image`.
    """
    spec = view.spec(engine, view.n_embed)
    nodes = list(view.nodes)
    slow = [m for m in view.embed_methods if m != "pca"]
    ready = [m for m in slow if engine.embeddings_ready(view.model, nodes, spec, m, perplexity=view.perplexity)]
    result = engine.probe(view.model, pixels, nodes, spec, view.rdm_method, ["pca", *ready], view.perplexity)
    names = engine.dataset_of(view.model).class_names
    waiting = [METHOD_NAMES[m] for m in slow if m not in ready]
    later = (
        f" {' and '.join(waiting)}: not computed yet for these nodes and stimuli; open the Embeddings tab once and your image "
        "is placed there too."
        if waiting
        else ""
    )
    stim = result.stimuli
    places = {m: [(p.embedding, p.xy, p.neighbours) for p in placed] for m, placed in result.places.items()}
    return ProbeViews(
        image_data_uri(result.pixels, size=112),
        probe_note(engine, view.model) + later,
        probe_probabilities_figure(result.probabilities, names, view.model),
        probe_embedding_figure(places, stim.indices, names, PROBE_NEIGHBOURS),
        probe_rows_figure(result.rows, stim.labels, stim.indices, result.method, names, view.model),
    )


def point_hover(engine: Engine, view: View, test_index: int, node: str, method: str) -> HoverInfo:
    """The hover panel for one embedding point: its image, class and index, and the panel it is in.

    Raises:
        RepgeomError: for a node the view's model lacks, an unknown method, or a stimulus
            outside the embeddings' stimulus set.
    """
    engine.select_nodes(view.model, [node])
    if method not in METHOD_NAMES:
        raise RepgeomError(f"unknown embedding method {method!r}; choose from {', '.join(METHOD_NAMES)}")
    return hover_info(engine, view, [test_index], f"{METHOD_NAMES[method]} of {view.model} · node {node}")


@dataclass(frozen=True)
class NeighbourCard:
    """One listed neighbour: its image, index, class, distance, and whether the plot loses it."""

    image: str
    index: int
    class_name: str
    distance: float
    lost: bool
    plot_rank: int


@dataclass(frozen=True)
class NeighboursInfo:
    """A clicked point's nearest neighbours in feature space and on the plot."""

    title: str
    image: str
    feature: list[NeighbourCard]
    plot: list[NeighbourCard]
    summary: str


def neighbours_view(engine: Engine, view: View, test_index: int, node: str, method: str, k: int = POINT_NEIGHBOURS) -> NeighboursInfo:
    """The ``k`` nearest neighbours of a clicked point at ``node``: in feature space and on ``method``'s plot.

    The embedding must already be computed (by the embeddings job); a click never starts one.

    Raises:
        RepgeomError: for a bad node or method, a stimulus outside the embeddings' set, or
            an embedding not computed yet.
    """
    engine.select_nodes(view.model, [node])
    if method not in METHOD_NAMES:
        raise RepgeomError(f"unknown embedding method {method!r}; choose from {', '.join(METHOD_NAMES)}")
    spec = view.spec(engine, view.n_embed)
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, [test_index])
    if not rows:
        raise RepgeomError(f"image #{test_index} is not among the {stim.n} embedded stimuli; click a point of the current embeddings")
    emb = engine.embedding_if_computed(view.model, node, spec, method, perplexity=view.perplexity)
    if emb is None:
        raise RepgeomError(f"the {METHOD_NAMES[method]} of {node} is not computed yet: open the Embeddings tab and wait for it")
    k = max(1, min(k, stim.n - 1))
    nb = point_neighbours(engine.features(view.model, node, spec).cpu().numpy(), emb.coords, rows[0], k)
    names = engine.dataset_of(view.model).class_names
    plot_rank = {int(r): i + 1 for i, r in enumerate(nb.plot_rows)}

    def card(r: int, distance: float, lost: bool, rank: int) -> NeighbourCard:
        return NeighbourCard(image_data_uri(stim.pixels[r], size=56), int(stim.indices[r]), names[int(stim.labels[r])], float(distance), lost, rank)

    feature = [card(int(r), d, bool(lost), int(rank)) for r, d, lost, rank in zip(nb.feature_rows, nb.feature_distances, nb.lost, nb.plot_ranks, strict=True)]
    plot = [card(int(r), d, int(r) not in set(nb.feature_rows.tolist()), plot_rank[int(r)]) for r, d in zip(nb.plot_rows, nb.plot_distances, strict=True)]
    me = rows[0]
    title = f"image #{test_index} (class {names[int(stim.labels[me])]}) · {METHOD_NAMES[method]} of {node}"
    summary = (
        f"The plot keeps {nb.kept} of its {k} nearest neighbours in feature space among its {k} nearest points; "
        f"{k - nb.kept} lost (marked) are placed further away on the plot than points that are not neighbours."
    )
    return NeighboursInfo(title, image_data_uri(stim.pixels[me], size=56), feature, plot, summary)


def search_points(engine: Engine, view: View, text: str) -> tuple[list[int], str]:
    """The embedded stimuli a search names, and a line that says what matched.

    ``text`` holds comma-separated terms: a class name (any case) or an image index
    (``#123``, or a bare number that is no class name).

    Returns:
        ``(indices, message)``: the matching stimuli's indices in the dataset's image set.

    Raises:
        RepgeomError: for a text that is too long, too many terms, or a term that names
            neither a class nor an image index.
    """
    if len(text) > SEARCH_MAX_CHARS:
        raise RepgeomError(f"the search is at most {SEARCH_MAX_CHARS} characters, got {len(text)}")
    terms = [t.strip() for t in text.split(",") if t.strip()]
    if len(terms) > SEARCH_MAX_TERMS:
        raise RepgeomError(f"the search takes at most {SEARCH_MAX_TERMS} terms, got {len(terms)}")
    if not terms:
        return [], ""
    stim = engine.stimuli(view.spec(engine, view.n_embed))
    names = engine.dataset_of(view.model).class_names
    by_name = {n.casefold(): c for c, n in enumerate(names)}
    found: list[int] = []
    said: list[str] = []
    for term in terms:
        if term.casefold() in by_name:
            c = by_name[term.casefold()]
            hits = [int(t) for t in stim.indices[stim.labels == c]]
            found += hits
            said.append(f"class {names[c]}: {len(hits)} points")
            continue
        digits = term[1:] if term.startswith("#") else term
        if not digits.isdecimal() or len(digits) > 9:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise RepgeomError(f"{term[:40]!r} is neither a class ({shown}) nor an image index (#123)")
        idx = int(digits)
        if idx in set(stim.indices.tolist()):
            found.append(idx)
            said.append(f"#{idx}: found")
        else:
            said.append(f"#{idx}: not among the {stim.n} embedded stimuli")
    unique = list(dict.fromkeys(found))
    return unique, f"{len(unique)} points ringed · " + "; ".join(said)


def group_indices(engine: Engine, view: View, event_indices: Sequence[int]) -> list[int]:
    """The embedded stimuli among a box or lasso selection's image indices (others dropped, order kept)."""
    stim = engine.stimuli(view.spec(engine, view.n_embed))
    present = set(stim.indices.tolist())
    return list(dict.fromkeys(int(i) for i in event_indices if int(i) in present))
