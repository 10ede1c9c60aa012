"""The models tab: a table of the loaded models, models' RDMs side by side, and per-node metrics of every model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
from dash import html, no_update

from ...pipeline import Engine
from .. import views
from ..state import View
from ..views import Progress
from .common import guarded, parse_view
from .jobs import cached_or_request, reporter, request_view

__all__ = ["metrics_gate", "metrics_job", "models_panel", "models_table", "side_by_side_gate", "side_by_side_job"]


def models_table(rows: list[dict[str, Any]]) -> html.Div:
    """An HTML table with one row per dict (the first dict's keys are the header), in a box that scrolls sideways when narrow."""
    head = html.Thead(html.Tr([html.Th(k) for k in rows[0]])) if rows else None
    body = html.Tbody([html.Tr([html.Td(str(v)) for v in r.values()]) for r in rows])
    table = html.Table([head, body] if head else [body], className="models-table")
    return html.Div(table, className="table-scroll")  # a narrow window scrolls the table, not the page


@guarded(2, 1)
def models_panel(engine: Engine, data: Any) -> tuple:
    """``(models table, message)``; nothing unless the models tab shows."""
    view = parse_view(engine, data)
    if view is None or view.tab != "models":
        return no_update, no_update
    return models_table(views.models_rows(engine)), ""


@guarded(4, 1)
def metrics_gate(engine: Engine, data: Any, _again: Any = None) -> tuple:
    """``(metrics figure, message, request, abandon)``: every model's per-node metrics at once when cached, else a job request.

    They need every node's RDM of every model of the dataset (seconds at many stimuli),
    so uncached metrics go to :func:`metrics_job` (``{"view": ...}``). A direct answer
    comes with a fresh ``abandon`` token (which cancels a job still running for an older
    view). Nothing unless the models tab shows.
    """
    return _gate(engine, data, views.metrics_view)


@guarded(2, 1)
def metrics_job(engine: Engine, set_progress: Any, request: Any) -> tuple:
    """``(metrics figure, message)`` for a request of :func:`metrics_gate`, model by model with progress (a background job)."""
    return _job(engine, set_progress, request, views.metrics_view)


@guarded(4, 1)
def side_by_side_gate(engine: Engine, data: Any, _again: Any = None) -> tuple:
    """``(side-by-side RDM figure, message, request, abandon)``: the view's model and the other path models on one colour scale.

    At once when their RDMs are cached, else a request for :func:`side_by_side_job` (up to
    four models' features and RDMs: seconds at many stimuli or under attack). Nothing
    unless the models tab shows.
    """
    return _gate(engine, data, views.side_by_side_view)


@guarded(2, 1)
def side_by_side_job(engine: Engine, set_progress: Any, request: Any) -> tuple:
    """``(side-by-side RDM figure, message)`` for a request of :func:`side_by_side_gate`, model by model with progress (a background job)."""
    return _job(engine, set_progress, request, views.side_by_side_view)


#: A models-tab figure: ``(engine, view, progress)`` -> figure.
_Draw = Callable[[Engine, View, Progress | None], go.Figure]


def _gate(engine: Engine, data: Any, draw: _Draw) -> tuple:
    """``(figure, message, request, abandon)``: ``draw``'s figure at once when cached, else a job request; nothing off the models tab."""
    view = parse_view(engine, data)
    if view is None or view.tab != "models":
        return (no_update,) * 4
    return cached_or_request(engine, view, lambda: (views.presented(view, draw(engine, view, None)), ""), 2, 1)


def _job(engine: Engine, set_progress: Any, request: Any, draw: _Draw) -> tuple:
    """``(figure, message)``: ``draw``'s figure for a gate's request, with progress."""
    view = request_view(engine, request, "models")
    if view is None:
        return no_update, no_update
    return views.presented(view, draw(engine, view, reporter(set_progress))), ""
