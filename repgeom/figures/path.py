"""The representational path: RDM-distance matrix beside the animated 2-D path (seed's ``rep_path``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import base_layout, frame_slider, model_colors, play_menu

if TYPE_CHECKING:
    from ..core.paths import RepPath

__all__ = ["LABELS_COLOR", "path_figure"]

LABELS_COLOR = "#CC00CC"  # the seed's magenta 'm'
_COMPARE_NAMES = {"cosine": "angle (arccos cosine)", "corr": "angle (arccos Pearson r)", "spearman": "angle (arccos Spearman ρ)"}


def _model_order(path: RepPath) -> list[str]:
    seen: list[str] = []
    for m in path.models[:-1]:
        if m not in seen:
            seen.append(m)
    return seen


def _path_traces(path: RepPath, upto: int, colors: Mapping[str, str]) -> list[go.Scatter]:
    traces = []
    for model in _model_order(path):
        rows = path.rows_of(model)[:upto]
        traces.append(
            go.Scatter(
                x=path.coords[rows, 0],
                y=path.coords[rows, 1],
                mode="lines+markers",
                line={"color": colors[model], "width": 2},
                marker={"size": 7},
                name=model,
                customdata=np.stack([np.asarray(path.nodes)[rows], path.to_labels[rows]], axis=1) if len(rows) else None,
                hovertemplate=f"{model} · %{{customdata[0]}}<br>to labels: %{{customdata[1]:.3f}} rad<extra></extra>",
                xaxis="x2",
                yaxis="y2",
            )
        )
    return traces


def path_figure(path: RepPath, title: str | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """Two panels: the RDM-to-RDM distance matrix and the 2-D path, animated step by step.

    The left matrix shows the display rows (duplicate ``input`` rows dropped, as the seed
    does); tick labels are node names in model colours. On the right each model's path
    runs from its ``input`` (black square) through its nodes; the ``labels`` RDM is a
    magenta star. Frame k shows the first k nodes of every model.

    Args:
        path: the computed path.
        title: figure title (default: the models and the MDS stress).
        colors: model id -> colour (default: the palette, by the model's place in the path).
    """
    rows = path.display_rows
    names = [path.names[i] for i in rows]
    models = [path.models[i] for i in rows]
    order = _model_order(path)
    colors = model_colors(order, colors) | {"labels": LABELS_COLOR}
    ticktext = [
        f'<span style="color:{"#000000" if path.nodes[i] == "input" else colors[m]}">{path.nodes[i]}</span>' for i, m in zip(rows, models, strict=True)
    ]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.5, 0.5],
        horizontal_spacing=0.24,
        subplot_titles=["Dissimilarity between layer RDMs", "Representational geometry path"],
    )
    sub = path.distances[np.ix_(rows, rows)]
    fig.add_trace(
        go.Heatmap(
            z=sub,
            x=list(range(len(rows))),
            y=list(range(len(rows))),
            colorscale="Viridis_r",
            colorbar={"x": 0.39, "len": 0.8, "thickness": 14, "title": {"text": _COMPARE_NAMES[path.compare], "side": "right"}},
            customdata=np.array([[f"{a} ↔ {b}" for b in names] for a in names], dtype=object),
            hovertemplate="%{customdata}<br>%{z:.3f} rad<extra></extra>",
        ),
        row=1,
        col=1,
    )
    tick = {"tickvals": list(range(len(rows))), "ticktext": ticktext, "tickfont": {"size": 9}, "showgrid": False}
    fig.update_xaxes(**tick, tickangle=-83, row=1, col=1)
    fig.update_yaxes(**tick, autorange="reversed", scaleanchor="x", row=1, col=1)
    longest = max(len(path.rows_of(m)) for m in order)
    statics = [
        go.Scatter(
            x=[path.coords[0, 0]],
            y=[path.coords[0, 1]],
            mode="markers",
            name="input",
            marker={"symbol": "square", "size": 13, "color": "black"},
            hovertemplate="input<extra></extra>",
            xaxis="x2",
            yaxis="y2",
        ),
        go.Scatter(
            x=[path.coords[-1, 0]],
            y=[path.coords[-1, 1]],
            mode="markers",
            name="labels",
            marker={"symbol": "star", "size": 18, "color": LABELS_COLOR},
            hovertemplate="labels<extra></extra>",
            xaxis="x2",
            yaxis="y2",
        ),
    ]
    for t in _path_traces(path, longest, colors) + statics:
        fig.add_trace(t)
    n_dynamic = len(order)
    fig.frames = [go.Frame(name=str(k), data=_path_traces(path, k, colors), traces=list(range(1, 1 + n_dynamic))) for k in range(1, longest + 1)]
    lo, hi = float(path.coords.min()), float(path.coords.max())
    c, h = (lo + hi) / 2, max(hi - lo, 1e-9) * 5 / 8
    fig.update_xaxes(range=[c - h, c + h], title_text="dim 1", zeroline=False, row=1, col=2)
    fig.update_yaxes(range=[c - h, c + h], title_text="dim 2", zeroline=False, scaleanchor="x2", row=1, col=2)
    fig.update_layout(
        **base_layout(
            title=title or f"Representational path · {', '.join(order)} · MDS stress {path.stress:.3f}",
            height=640,
            legend={"x": 1.02, "y": 1, "font": {"size": 11}},
            sliders=[frame_slider([str(k) for k in range(1, longest + 1)], longest - 1, "steps shown: ", redraw=False, x=0.6, length=0.4, lead=0.45)],
            updatemenus=[{**play_menu(350), "x": 0.6}],
            margin={"l": 110, "r": 30, "t": 80, "b": 120},
        )
    )
    return fig
