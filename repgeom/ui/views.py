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

from ..core.errors import RepgeomError
from ..core.rdm import bin_edges
from ..figures import embedding_animation, embedding_grid, metrics_figure, pair_figure, path_figure, rdm_grid, rdm_slider
from ..figures.embedding import METHOD_NAMES
from ..figures.images import image_data_uri
from ..figures.style import model_color
from ..pipeline import Engine
from .state import View

__all__ = [
    "HEATMAP_CELLS",
    "HoverInfo",
    "display_side",
    "embedding_views",
    "hover_info",
    "metrics_view",
    "model_colors",
    "models_rows",
    "pair_view",
    "path_view",
    "rdm_cell_rows",
    "rdm_hover",
    "rdm_views",
    "selection_rows",
    "update_selection",
]

MAX_SELECTION = 2
#: Heat-map cells per RDM figure (all panels, or all frames, together): 250k float32 cells
#: keep each figure near 1.3 MB and the seed's default (5 × 200²) at full resolution; larger
#: RDMs are shown as block means (the full RDM stays available in the export).
HEATMAP_CELLS = 250_000


def model_colors(engine: Engine) -> dict[str, str]:
    """Each loaded model's colour: its manifest colour, else the palette's by its place among the loaded models."""
    return {m: model_color(k, engine.entry(m).color) for k, m in enumerate(engine.model_ids)}


def display_side(n: int, nodes: int) -> int:
    """Largest heat-map side (in cells) for ``nodes`` RDMs of ``n`` stimuli within the budget.

    The larger of the RDM tab's figures is the slider, which holds a frame per node plus
    its first frame again, so the budget is shared by ``nodes + 1`` maps.
    """
    return max(10, min(n, int((HEATMAP_CELLS / (max(nodes, 1) + 1)) ** 0.5)))


def rdm_cell_rows(engine: Engine, view: View, x: int, y: int) -> tuple[int, int]:
    """Stimulus rows (in the RDM view's stimulus set) under heat-map cell (x, y); first of a block."""
    n = engine.stimuli(view.spec(engine, view.n_rdm)).n
    side = display_side(n, len(view.nodes))
    edges = bin_edges(n, side) if n > side else np.arange(n + 1)
    if not (0 <= x < len(edges) - 1 and 0 <= y < len(edges) - 1):
        raise RepgeomError(f"heat-map cell ({x}, {y}) is outside the {len(edges) - 1}-cell map")
    return int(edges[y]), int(edges[x])


def selection_rows(indices: np.ndarray, selection: Sequence[int]) -> list[int]:
    """Rows of the current stimulus set holding the selected test-set indices (absent ones dropped)."""
    where = {int(t): r for r, t in enumerate(indices)}
    return [where[int(s)] for s in selection if int(s) in where]


def rdm_views(engine: Engine, view: View, selection: Sequence[int]) -> tuple[go.Figure, go.Figure]:
    """The row of RDM heat maps and the large heat map with a node slider."""
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
    return (
        rdm_grid(rdms, view.normalise, view.colorscale, rows, title=title, class_names=names),
        rdm_slider(rdms, view.normalise, view.colorscale, rows, active=len(rdms) - 1, class_names=names),
    )


def embedding_views(
    engine: Engine, view: View, selection: Sequence[int], progress: Callable[[int, int, str], None] | None = None
) -> tuple[go.Figure, go.Figure]:
    """The methods × nodes grid and the animation of one method through the nodes.

    Args:
        engine: the engine.
        view: a validated view.
        selection: indices (in the dataset's image set) of the stimuli to highlight.
        progress: called as ``progress(done, total, what)`` before each embedding is computed.
    """
    spec = view.spec(engine, view.n_embed)
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, selection)
    nodes = list(view.nodes)
    methods = list(dict.fromkeys([*view.embed_methods, view.anim_method]))
    engine.prefetch_features(view.model, nodes, spec)
    steps = [(m, n) for m in methods for n in nodes]
    for done, (method, node) in enumerate(steps):
        if progress is not None:
            progress(done, len(steps), f"{METHOD_NAMES[method]} of {node}")
        engine.embedding(view.model, node, spec, method, perplexity=view.perplexity)
    grid = [engine.embeddings(view.model, nodes, spec, m, perplexity=view.perplexity) for m in view.embed_methods]
    frames = engine.embeddings(view.model, nodes, spec, view.anim_method, perplexity=view.perplexity, align=True)
    if progress is not None:
        progress(len(steps), len(steps), "drawing")
    names = engine.dataset_of(view.model).class_names
    return embedding_grid(grid, stim.indices, rows, names), embedding_animation(frames, stim.indices, rows, names)


def path_view(engine: Engine, view: View) -> go.Figure:
    """The representational path of the chosen models over all their nodes."""
    spec = view.spec(engine, view.n_embed)
    path = engine.path(list(view.path_models), None, spec, view.path_rdm, view.compare)
    return path_figure(path, colors=model_colors(engine))


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


def metrics_view(engine: Engine, view: View) -> go.Figure:
    """Block contrast and silhouette over every node of the chosen model."""
    spec = view.spec(engine, view.n_rdm)
    return metrics_figure([engine.node_metrics(view.model, "all", spec, view.rdm_method)], model_colors(engine))


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
    i, j = rdm_cell_rows(engine, view, x, y)
    if panel is not None and 0 <= panel < len(view.nodes):
        node = view.nodes[panel]
        value = float(engine.rdm(view.model, node, spec, view.rdm_method).matrix[i, j])
        summary = f"{node}: {view.rdm_method} dissimilarity {value:.4g}"
    else:
        summary = f"{view.rdm_method} dissimilarity {shown:.4g}" + (" of the max" if view.normalise == "per" else "") if shown is not None else ""
    return hover_info(engine, view, [int(stim.indices[i]), int(stim.indices[j])], summary)
