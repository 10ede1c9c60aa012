"""The representational-paths tab."""

from __future__ import annotations

from typing import Any

from dash import no_update

from ...pipeline import Engine
from .. import views
from .common import guarded, parse_view

__all__ = ["path_figure"]


@guarded(2, 1)
def path_figure(engine: Engine, data: Any) -> tuple:
    """``(path figure, message)`` for the view store ``data``; nothing unless the paths tab shows."""
    view = parse_view(engine, data)
    if view is None or view.tab != "paths":
        return no_update, no_update
    return views.path_view(engine, view), ""
