"""Per-node metric lines, and the selected pair's (or block's) dissimilarity across nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import METRIC_LABELS, base_layout, model_color, model_colors

if TYPE_CHECKING:
    from ..pipeline import NodeMetrics

__all__ = ["block_figure", "metrics_figure", "pair_figure"]


def metrics_figure(metrics: Sequence[NodeMetrics], colors: Mapping[str, str] | None = None, method: str = "correlation") -> go.Figure:
    """Block contrast and silhouette over nodes, one line per model, all models in one plot (two stacked panels).

    Models with the same nodes share an axis of node names. Models whose graphs differ
    are drawn against relative depth (a node's place in its model's graph order, 0 = the
    first chosen node, 1 = the last), with the node's name on hover and as the point's
    text, so every model's line spans the same axis.

    Args:
        metrics: one :class:`~repgeom.pipeline.NodeMetrics` per model.
        colors: model id -> colour (default: the palette, by position).
        method: the RDM method both were computed from (named in the title).
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False, vertical_spacing=0.18, subplot_titles=["class-block contrast", "silhouette by class"])
    palette = model_colors([m.model for m in metrics], colors)
    by_name = len({tuple(m.nodes) for m in metrics}) <= 1
    for m in metrics:
        color = palette[m.model]
        x = list(m.nodes) if by_name else [k / max(len(m.nodes) - 1, 1) for k in range(len(m.nodes))]
        hover = f"{m.model} · %{{text}}: %{{y:.3f}}<extra></extra>"
        for row, values in ((1, m.block_contrast), (2, m.silhouette)):
            fig.add_trace(
                go.Scatter(
                    x=x, y=values, text=list(m.nodes), mode="lines+markers", name=m.model, legendgroup=m.model, showlegend=row == 1,
                    line={"color": color}, hovertemplate=hover,
                ),
                row=row,
                col=1,
            )
    if by_name:
        fig.update_xaxes(tickangle=-45, tickfont={"size": 10}, title_text="node (graph order)")
    else:
        fig.update_xaxes(range=[-0.03, 1.03], title_text="relative depth (node's place in its model's graph order: 0 first, 1 last)")
    fig.update_yaxes(title_text="(between − within) / mean", row=1, col=1)
    fig.update_yaxes(title_text="mean silhouette", range=[-1, 1], row=2, col=1)
    metric = METRIC_LABELS.get(method, method)
    silhouette_on = "the Euclidean distance (√ of the RDM)" if method == "euclidean" else "the RDM's dissimilarities"
    fig.update_layout(
        **base_layout(
            title=f"Geometry across nodes<br><sup>RDMs: {metric} · silhouette on {silhouette_on}</sup>",
            height=620,
            margin={"l": 70, "r": 30, "t": 90, "b": 90},
        )
    )
    return fig


def pair_figure(
    model: str,
    nodes: Sequence[str],
    values: Sequence[float],
    pair: tuple[int, int],
    classes: tuple[str, str],
    method: str,
    color: str | None = None,
) -> go.Figure:
    """Dissimilarity of one stimulus pair at every node ("when do this 4 and this 9 separate?").

    Args:
        model: the model's id.
        nodes: its nodes, in graph order.
        values: the pair's dissimilarity at each node.
        pair: the two stimuli's indices in their image set.
        classes: the two stimuli's class names.
        method: the RDM method (for the axis title).
        color: the model's colour (default: the palette's first).
    """
    fig = go.Figure(
        go.Scatter(
            x=list(nodes),
            y=list(values),
            mode="lines+markers",
            line={"color": model_color(0, color)},
            name=model,
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    # one short line per stimulus, so the title is never cut off
    title = f"stimulus {pair[0]} (class {classes[0]})<br>vs {pair[1]} (class {classes[1]})<br><sup>in {model}</sup>"
    fig.update_layout(**_inspector_layout(title, method, top=90))
    return fig


def _inspector_layout(title: str, method: str, top: int, **extra: Any) -> dict[str, Any]:
    """The layout of a figure in the inspector (about 220 px wide): a left-aligned title, nodes along x."""
    return base_layout(
        title={"text": title, "font": {"size": 13}, "x": 0, "xref": "paper", "xanchor": "left", "y": 1, "yref": "container",
               "yanchor": "top", "pad": {"t": 16}},
        height=340,
        yaxis={"title": {"text": f"{method} dissimilarity"}},
        xaxis={"tickangle": -45, "tickfont": {"size": 10}, "title": {"text": "node (graph order)", "font": {"size": 11}}},
        margin={"l": 60, "r": 20, "t": top, "b": 110},
        **extra,
    )


def block_figure(
    model: str,
    nodes: Sequence[str],
    means: Sequence[float],
    sds: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    title: str,
    method: str,
    color: str | None = None,
) -> go.Figure:
    """Dissimilarity of one block of stimulus pairs at every node: its mean ± SD and its min–max range.

    Args:
        model: the model's id.
        nodes: its nodes, in graph order.
        means: the block's mean at each node (as the block-mean map shows it).
        sds: the standard deviation over the block's pairs at each node.
        lows: the smallest pair dissimilarity in the block at each node.
        highs: the largest pair dissimilarity in the block at each node.
        title: what the block is (short lines joined by ``<br>``: the inspector is narrow); a
            last line saying what the line, bars and band show is added.
        method: the RDM method (for the axis title).
        color: the model's colour (default: the palette's first).
    """
    line = model_color(0, color)
    x = list(nodes)
    fig = go.Figure(
        [
            go.Scatter(x=x, y=list(highs), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip", name="max"),
            go.Scatter(
                x=x, y=list(lows), mode="lines", line={"width": 0}, fill="tonexty", fillcolor="rgba(120,120,120,0.18)",
                name="min–max over the pairs", customdata=list(highs),
                hovertemplate="%{x}: pairs from %{y:.4g} to %{customdata:.4g}<extra></extra>",
            ),
            go.Scatter(
                x=x, y=list(means), mode="lines+markers", line={"color": line}, name="block mean ± SD",
                error_y={"type": "data", "array": list(sds), "visible": True, "color": line, "thickness": 1},
                customdata=list(sds), hovertemplate="%{x}: block mean %{y:.4g} ± %{customdata:.3g} (SD)<extra></extra>",
            ),
        ]
    )
    # the title's last line says what the line, bars and band are
    fig.update_layout(**_inspector_layout(f"{title}<br><sup>bars: ± SD · grey band: min–max</sup>", method, top=100, showlegend=False))
    return fig
