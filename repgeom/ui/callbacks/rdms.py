"""The RDM tab: a row of heat maps and one large map with a node slider."""

from __future__ import annotations

from typing import Any

from dash import no_update

from ...pipeline import Engine
from .. import views
from .common import guarded, parse_selection, parse_view

__all__ = ["difference_figure", "rdm_figures"]


@guarded(3, 2)
def rdm_figures(engine: Engine, data: Any, selection: Any) -> tuple:
    """``(grid figure, slider figure, message)`` for the view store ``data``, the selection ringed.

    Nothing is computed unless the RDM tab shows.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return no_update, no_update, no_update
    grid, slider = views.rdm_views(engine, view, parse_selection(selection))
    return views.presented(view, grid), views.presented(view, slider), ""


@guarded(2, 1)
def difference_figure(engine: Engine, data: Any) -> tuple:
    """``(difference RDM figure, message)`` for the view's A and B; a hint until both are chosen."""
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return no_update, no_update
    fig = views.difference_view(engine, view)
    if fig is None:
        return views.note_figure("Choose A and B (model / node) to see where their RDMs differ reliably."), ""
    return views.presented(view, fig), ""
