"""From a validated view to figures: engine calls plus figure builders, no Dash.

Each function here is what one callback does once its inputs are parsed, so callbacks
stay a few lines and these can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..core.errors import RepgeomError
from ..figures import embedding_animation, embedding_grid, metrics_figure, pair_figure, path_figure, rdm_grid, rdm_slider
from ..figures.images import digit_data_uri
from ..pipeline import Engine
from .state import View

__all__ = ["HoverInfo", "hover_info", "models_rows", "pair_view", "path_view", "rdm_views", "embedding_views", "selection_rows", "update_selection"]

MAX_SELECTION = 2


def selection_rows(indices: np.ndarray, selection: Sequence[int]) -> list[int]:
    """Rows of the current stimulus set holding the selected test-set indices (absent ones dropped)."""
    where = {int(t): r for r, t in enumerate(indices)}
    return [where[int(s)] for s in selection if int(s) in where]


def rdm_views(engine: Engine, view: View, selection: Sequence[int]) -> tuple[go.Figure, go.Figure]:
    """The row of RDM heat maps and the large heat map with a node slider."""
    spec = view.spec(engine, view.n_rdm)
    rdms = engine.rdms(view.model, list(view.nodes), spec, view.rdm_method)
    rows = selection_rows(engine.stimuli(spec).indices, selection)
    cond = "" if spec.condition == "clean" else f", FGSM ε={spec.epsilon:g} against {spec.attack_model}"
    title = f"RDMs of {view.model} · {spec.n_per_class} per class{cond}"
    return (
        rdm_grid(rdms, view.normalise, view.colorscale, rows, title=title),
        rdm_slider(rdms, view.normalise, view.colorscale, rows, active=len(rdms) - 1),
    )


def embedding_views(engine: Engine, view: View, selection: Sequence[int]) -> tuple[go.Figure, go.Figure]:
    """The methods × nodes grid and the animation of one method through the nodes."""
    spec = view.spec(engine, view.n_embed)
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, selection)
    grid = [engine.embeddings(view.model, list(view.nodes), spec, m, perplexity=view.perplexity) for m in view.embed_methods]
    frames = engine.embeddings(view.model, list(view.nodes), spec, view.anim_method, perplexity=view.perplexity, align=True)
    return embedding_grid(grid, stim.indices, rows), embedding_animation(frames, stim.indices, rows)


def path_view(engine: Engine, view: View) -> go.Figure:
    """The representational path of the chosen models over all their nodes."""
    spec = view.spec(engine, view.n_embed)
    path = engine.path(list(view.path_models), None, spec, view.path_rdm, view.compare)
    return path_figure(path)


def models_rows(engine: Engine) -> list[dict[str, Any]]:
    """One row per loaded model for the models table."""
    rows = []
    for m in engine.model_ids:
        e = engine.models[m].entry
        rows.append(
            {
                "model": m,
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
    return metrics_figure([engine.node_metrics(view.model, "all", spec, view.rdm_method)])


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
    return pair_figure(view.model, nodes, values, (int(stim.indices[i]), int(stim.indices[j])), (int(stim.labels[i]), int(stim.labels[j])), view.rdm_method)


def update_selection(current: Sequence[int], new: Sequence[int], pair: bool) -> list[int]:
    """A click's effect: an RDM cell replaces the pair; a point joins it (last two kept)."""
    if pair:
        return [int(x) for x in new][-MAX_SELECTION:]
    out = [int(x) for x in current if int(x) not in new] + [int(x) for x in new]
    return out[-MAX_SELECTION:]


@dataclass(frozen=True)
class HoverInfo:
    """What the hover panel shows: one or two digit images with a caption."""

    images: list[str]
    captions: list[str]
    summary: str


def hover_info(engine: Engine, view: View, test_indices: Sequence[int], value: float | None, method: str, node: str) -> HoverInfo:
    """Images and captions for hovered stimuli (given by MNIST test-set index)."""
    spec = view.spec(engine, max(view.n_rdm, view.n_embed))
    stim = engine.stimuli(spec)
    rows = selection_rows(stim.indices, test_indices)
    if len(rows) != len(test_indices):
        raise RepgeomError("hovered stimulus is not in the current stimulus set")
    images = [digit_data_uri(stim.pixels[r]) for r in rows]
    captions = [f"digit {stim.labels[r]} · test #{stim.indices[r]}" for r in rows]
    summary = f"{node}: {method} dissimilarity {value:.4g}" if value is not None else node
    return HoverInfo(images, captions, summary)
