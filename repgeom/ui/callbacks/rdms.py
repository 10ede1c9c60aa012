"""The RDM tab: a row of heat maps and one large map with a node slider."""

from __future__ import annotations

from typing import Any

from dash import no_update

from ...pipeline import Engine
from .. import views
from .common import guarded, parse_selection, parse_view

__all__ = ["rdm_figures"]


@guarded(3, 2)
def rdm_figures(engine: Engine, data: Any, selection: Any) -> tuple:
    """``(grid figure, slider figure, message)`` for the view store ``data``, the selection ringed.

    Nothing is computed unless the RDM tab shows.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return no_update, no_update, no_update
    grid, slider = views.rdm_views(engine, view, parse_selection(selection))
    return grid, slider, ""
