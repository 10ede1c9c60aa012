"""Per-node metric lines and the selected pair's dissimilarity across nodes."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..pipeline import NodeMetrics
from .style import base_layout, model_color

__all__ = ["metrics_figure", "pair_figure"]


def metrics_figure(metrics: Sequence[NodeMetrics]) -> go.Figure:
    """Block contrast and silhouette over nodes, one line per model (two stacked panels)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False, vertical_spacing=0.18, subplot_titles=["class-block contrast", "silhouette by digit"])
    for k, m in enumerate(metrics):
        color = model_color(m.model, k)
        fig.add_trace(go.Scatter(x=m.nodes, y=m.block_contrast, mode="lines+markers", name=m.model, legendgroup=m.model, line={"color": color}), row=1, col=1)
        fig.add_trace(go.Scatter(x=m.nodes, y=m.silhouette, mode="lines+markers", name=m.model, legendgroup=m.model, showlegend=False, line={"color": color}), row=2, col=1)
    fig.update_xaxes(tickangle=-45, tickfont={"size": 10})
    fig.update_layout(**base_layout(title="Geometry across nodes", height=560))
    return fig


def pair_figure(model: str, nodes: Sequence[str], values: Sequence[float], pair: tuple[int, int], digits: tuple[int, int], method: str) -> go.Figure:
    """Dissimilarity of one stimulus pair at every node ("when do this 4 and this 9 separate?")."""
    fig = go.Figure(
        go.Scatter(x=list(nodes), y=list(values), mode="lines+markers", line={"color": model_color(model)}, name=model,
                   hovertemplate="%{x}: %{y:.4g}<extra></extra>")
    )
    fig.update_layout(
        **base_layout(
            title=f"stimulus {pair[0]} (digit {digits[0]}) vs {pair[1]} (digit {digits[1]}) in {model}",
            height=320,
            yaxis={"title": {"text": f"{method} dissimilarity"}},
            xaxis={"tickangle": -45, "tickfont": {"size": 10}},
            margin={"l": 60, "r": 20, "t": 60, "b": 90},
        )
    )
    return fig
