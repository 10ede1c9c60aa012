"""The embeddings tab: a cheap gate, then a background job with progress and Cancel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from dash import no_update

from ...core.errors import RepgeomError
from ...pipeline import Engine
from .. import views
from ..viewport import parse_viewport
from .common import guarded, parse_indices, parse_selection, parse_view
from .jobs import reporter

__all__ = ["embedding_figures", "embedding_request"]

log = logging.getLogger(__name__)

Progress = Callable[[tuple[str, str, str]], None]


def embedding_request(
    engine: Engine, data: Any, selection: Any, highlight: Any = None, group: Any = None, viewport: Any = None, _again: Any = None
) -> Any:
    """The embeddings job's request (``{"view", "selection", "highlight", "group", "viewport"}``), only when its tab shows and the view is valid.

    A job is a process: this gate keeps hidden tabs and bad views from starting one (the
    sync callback reports bad controls). "Compute again" (``_again``) sends the request again.

    Args:
        engine: the engine.
        data: the view store.
        selection: the selection store (the selected pair, ringed).
        highlight: the search's matches (image indices, ringed).
        group: the isolated group (image indices; ``None``: every point shown).
        viewport: the browser's window size store (the grid is laid out for it; malformed: the default).
    """
    if not isinstance(data, Mapping) or data.get("tab") != "embeddings":
        return no_update
    try:
        view = parse_view(engine, data)
    except RepgeomError:
        return no_update
    return {
        "view": view.controls(),
        "selection": parse_selection(selection),
        "highlight": parse_indices(highlight) or [],
        "group": parse_indices(group),
        "viewport": parse_viewport(viewport).as_data(),
    }


@guarded(4, 3)
def embedding_figures(engine: Engine, set_progress: Progress, request: Any) -> tuple:
    """``(grid figure, animation figure, Shepard figure, message)`` for an embeddings request.

    Args:
        engine: the engine.
        set_progress: called with ``(done, total, text)`` as strings for the progress bar.
        request: what :func:`embedding_request` made (parsed again: any client may post it).
    """
    if not isinstance(request, Mapping):
        return no_update, no_update, no_update, no_update
    view = parse_view(engine, request.get("view"))
    if view is None or view.tab != "embeddings":
        return no_update, no_update, no_update, no_update
    selection = parse_selection(request.get("selection"))
    highlight, group = parse_indices(request.get("highlight")) or [], parse_indices(request.get("group"))
    out = views.embedding_views(engine, view, selection, reporter(set_progress), highlight, group, parse_viewport(request.get("viewport")))
    return views.presented(view, out.grid, fitted=True), views.presented(view, out.animation), views.presented(view, out.shepard), ""
