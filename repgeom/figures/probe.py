"""The live probe's figures: class probabilities, the new image among the stimuli in each embedding, and its dissimilarity rows.

They take the engine's results (a :class:`~repgeom.pipeline.ProbeResult`'s arrays) and
draw; the placement itself (projection, nearest neighbours) is computed in
:mod:`repgeom.core.probe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .embedding import METHOD_NAMES
from .rdm import class_ticks
from .style import METRIC_LABELS, base_layout, class_colors

if TYPE_CHECKING:
    from ..core.embedding import Embedding

__all__ = ["PLACEMENT_NOTES", "PROBE_NAME", "probe_embedding_figure", "probe_probabilities_figure", "probe_rows_figure"]

#: The legend name of the new image's marker in every panel.
PROBE_NAME = "your image"
#: How the new image is placed in each method's embedding (said on screen, in each panel's title).
PLACEMENT_NOTES = {
    "pca": "projected onto the stimuli's principal axes",
    "mds": "at the mean of its {k} nearest stimuli (feature space)",
    "tsne": "at the mean of its {k} nearest stimuli (feature space)",
}


def probe_probabilities_figure(probabilities: np.ndarray, class_names: Sequence[str], model: str) -> go.Figure:
    """A bar per class: the model's probability for the new image, the predicted class highlighted.

    Args:
        probabilities: (K,) the model's output probabilities.
        class_names: the dataset's K class names.
        model: the model's id (in the title).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    best = int(np.argmax(p))
    colors = ["#0077BB" if k == best else "#BBBBBB" for k in range(len(p))]
    fig = go.Figure(
        go.Bar(
            x=list(class_names),
            y=p,
            marker={"color": colors},
            text=[f"{v:.0%}" for v in p],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="class %{x}: probability %{y:.4f}<extra></extra>",
            name="probability",
        )
    )
    fig.update_layout(
        **base_layout(
            title=f"{model} predicts <b>{class_names[best]}</b> ({p[best]:.0%})",
            xaxis={"title": {"text": "class"}, "type": "category"},
            yaxis={"title": {"text": "probability"}, "range": [0, 1.12]},
            height=320,
            showlegend=False,
        )
    )
    return fig


def probe_embedding_figure(
    places: Mapping[str, Sequence[tuple[Embedding, np.ndarray, np.ndarray]]],
    indices: np.ndarray,
    class_names: Sequence[str],
    k: int,
) -> go.Figure:
    """The stimuli of each method × node embedding with the new image marked, and how it was placed in each title.

    Args:
        places: per method, per node ``(embedding, xy, neighbour rows)``: the stimuli's
            embedding, the new image's (2,) position and the stimulus rows it was placed
            among (empty for a projection).
        indices: (N,) the stimuli's indices in their image set (for hover).
        class_names: the dataset's class names.
        k: the neighbours of a placement (for the titles).

    Returns:
        A grid of panels, methods down and nodes across: the stimuli coloured by class
        (one legend entry per class), the new image as a large black star named
        :data:`PROBE_NAME`, and lines to the neighbours it was placed among.
    """
    methods = list(places)
    nodes = [p[0].node for p in places[methods[0]]]
    titles = [f"{METHOD_NAMES[m]} · {e.node}<br><sup>{PLACEMENT_NOTES[m].format(k=k)}</sup>" for m in methods for e, _, _ in places[m]]
    fig = make_subplots(rows=len(methods), cols=len(nodes), subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.16)
    colors = class_colors(len(class_names))
    for r, method in enumerate(methods, start=1):
        for c, (e, xy, near) in enumerate(places[method], start=1):
            first = r == 1 and c == 1
            for label in np.unique(e.labels):
                rows = np.flatnonzero(e.labels == label)
                fig.add_trace(
                    go.Scatter(
                        x=e.coords[rows, 0], y=e.coords[rows, 1], mode="markers", name=str(class_names[int(label)]), legendgroup=f"class-{label}",
                        showlegend=first, marker={"size": 5, "color": colors[int(label)], "opacity": 0.55},
                        customdata=np.asarray(indices)[rows], hovertemplate=f"class {class_names[int(label)]}<br>image #%{{customdata}}<extra></extra>",
                    ),
                    row=r,
                    col=c,
                )
            if len(near):
                xs = [v for j in near for v in (xy[0], e.coords[j, 0], None)]
                ys = [v for j in near for v in (xy[1], e.coords[j, 1], None)]
                fig.add_trace(
                    go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#000000", "width": 1, "dash": "dot"}, name="its nearest stimuli",
                               legendgroup="near", showlegend=first, hoverinfo="skip"),
                    row=r,
                    col=c,
                )
            fig.add_trace(
                go.Scatter(
                    x=[xy[0]], y=[xy[1]], mode="markers", name=PROBE_NAME, legendgroup="probe", showlegend=first,
                    marker={"symbol": "star", "size": 18, "color": "#000000", "line": {"color": "#FFFFFF", "width": 1.5}},
                    hovertemplate=f"{PROBE_NAME} · {METHOD_NAMES[method]} · {e.node}<extra></extra>",
                ),
                row=r,
                col=c,
            )
    fig.update_xaxes(title_text="dim 1", showticklabels=False)
    fig.update_yaxes(title_text="dim 2", showticklabels=False)
    fig.update_layout(
        **base_layout(
            title=f"Where your image lands among {len(indices)} stimuli of {places[methods[0]][0][0].model}",
            height=170 + 300 * len(methods),
            legend={"title": {"text": "class"}, "itemsizing": "constant"},
            margin={"l": 50, "r": 30, "t": 110, "b": 40},
        )
    )
    return fig


def probe_rows_figure(
    rows: Mapping[str, np.ndarray], labels: np.ndarray, indices: np.ndarray, method: str, class_names: Sequence[str], model: str
) -> go.Figure:
    """The new image's dissimilarity to every stimulus, one row per node, on one colour scale.

    Args:
        rows: per node (in graph order), (N,) dissimilarities to the stimuli.
        labels: (N,) the stimuli's class labels, sorted into blocks.
        indices: (N,) their indices in their image set (for hover).
        method: the RDM method of the rows.
        class_names: the dataset's class names.
        model: the model's id (in the title).
    """
    nodes = list(rows)
    z = np.stack([np.asarray(rows[n], dtype=np.float32) for n in nodes])
    centres, texts, bounds = class_ticks(labels, class_names)
    names = np.asarray([class_names[int(v)] for v in labels], dtype=object)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            y=nodes,
            colorscale="Magma_r",
            colorbar={"title": {"text": "dissimilarity", "side": "right"}},
            customdata=np.stack([np.tile(np.asarray(indices), (len(nodes), 1)), np.tile(names, (len(nodes), 1))], axis=-1),
            hovertemplate="%{y}: to image #%{customdata[0]} (class %{customdata[1]})<br>dissimilarity %{z:.4g}<extra></extra>",
        )
    )
    line = {"color": "rgba(255,255,255,0.8)", "width": 1}
    shapes = [{"type": "line", "x0": b, "x1": b, "y0": -0.5, "y1": len(nodes) - 0.5, "xref": "x", "yref": "y", "line": line} for b in bounds]
    fig.update_layout(
        **base_layout(
            title=f"Your image's dissimilarity to each stimulus, node by node ({model})<br><sup>{METRIC_LABELS[method]}; the stimuli sorted by class</sup>",
            shapes=shapes,
            height=140 + 34 * len(nodes),
            xaxis={"title": {"text": "stimulus (by class)"}, "tickvals": centres, "ticktext": texts, "showgrid": False},
            yaxis={"title": {"text": "node"}, "autorange": "reversed", "type": "category"},
            margin={"l": 90, "r": 40, "t": 80, "b": 50},
        )
    )
    return fig
