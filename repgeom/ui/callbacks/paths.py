"""The representational-paths tab: the path with its bootstrap and landmarks, and the side-by-side view."""

from __future__ import annotations

from typing import Any

from dash import html, no_update

from ...pipeline import Engine
from .. import views
from .common import guarded, parse_view

__all__ = ["path_figure", "survive_figure"]


@guarded(5, 4)
def path_figure(engine: Engine, data: Any) -> tuple:
    """``(path figure, angle-to-labels figure, Shepard figure, note, message)``; nothing unless the paths tab shows."""
    view = parse_view(engine, data)
    if view is None or view.tab != "paths":
        return (no_update,) * 5
    out = views.path_view(engine, view)
    return views.presented(view, out.path), views.presented(view, out.to_labels), views.presented(view, out.shepard), html.Span(out.note), ""


@guarded(2, 1)
def survive_figure(engine: Engine, data: Any) -> tuple:
    """``(side-by-side figure, message)``: the path under the view's two or three comparisons."""
    view = parse_view(engine, data)
    if view is None or view.tab != "paths":
        return no_update, no_update
    fig = views.survive_view(engine, view)
    if fig is None:
        return views.note_figure("Tick two or three comparisons under \"Side by side\" to see whether the path's shape survives."), ""
    return views.presented(view, fig), ""
