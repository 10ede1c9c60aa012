"""The representational-paths tab: the path with its bootstrap and landmarks, and the side-by-side view.

A path takes seconds to tens of seconds (every node's RDM of every chosen model, MDS,
bootstrap samples), so the tab has a gate and a job: :func:`path_gate` answers at once
what the engine has cached and otherwise sends :func:`path_job` a request, which runs
as a background job with progress and Cancel.
"""

from __future__ import annotations

from typing import Any

from dash import html, no_update

from ...core.errors import RepgeomError
from ...pipeline import Engine
from .. import views
from ..state import View
from .common import alert, guarded, parse_view
from .jobs import cached_or_request, reporter, request_view

__all__ = ["SURVIVE_HINT", "path_figure", "path_gate", "path_job", "path_tab", "survive_figure"]

#: What the side-by-side figure says until two or three comparisons are ticked.
SURVIVE_HINT = "Tick two or three comparisons under \"Side by side\" to see whether the path's shape survives."
#: The tab's outputs, in order: path, angle to labels, Shepard, note, message, side by side, its message.
N_OUTPUTS = 7


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
        return views.note_figure(SURVIVE_HINT), ""
    return views.presented(view, fig), ""


def path_tab(engine: Engine, view: View, progress: views.Progress | None = None) -> tuple:
    """The tab's :data:`N_OUTPUTS` outputs for a validated view; ``progress`` hears of each step of both figures.

    Raises:
        RepgeomError: the path's own errors (the side-by-side figure's become its message).
    """
    first = views.path_steps(engine, view)
    total = first + len(view.survive)

    def part(offset: int) -> views.Progress | None:
        if progress is None:
            return None
        return lambda done, _total, what: progress(offset + done, total, what)

    out = views.path_view(engine, view, progress=part(0))
    try:
        survive, survive_message = views.survive_view(engine, view, progress=part(first)), ""
    except RepgeomError as exc:
        survive, survive_message = no_update, alert(str(exc))
    if survive is None:
        survive = views.note_figure(SURVIVE_HINT)
    elif survive is not no_update:
        survive = views.presented(view, survive)
    if progress is not None:
        progress(total, total, "drawing")
    shown = [views.presented(view, f) for f in (out.path, out.to_labels, out.shepard)]
    return (*shown, html.Span(out.note), "", survive, survive_message)


@guarded(N_OUTPUTS + 2, 4)
def path_gate(engine: Engine, data: Any, _again: Any = None) -> tuple:
    """The tab's outputs at once when the engine has them cached, else a job request.

    Returns:
        ``(*outputs, request, abandon)``: the :data:`N_OUTPUTS` outputs and a fresh
        ``abandon`` token (which cancels a job still running for an older view), or
        unchanged outputs (the message cleared) and ``{"view": ...}`` for
        :func:`path_job`. Nothing unless the paths tab shows.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "paths":
        return (no_update,) * (N_OUTPUTS + 2)
    return cached_or_request(engine, view, lambda: path_tab(engine, view), N_OUTPUTS, 4)


@guarded(N_OUTPUTS, 4)
def path_job(engine: Engine, set_progress: Any, request: Any) -> tuple:
    """The tab's outputs for a request of :func:`path_gate`, computed with progress (a background job).

    Args:
        engine: the engine.
        set_progress: Dash's progress setter (``(value, max, text)``); Cancel stops the job there.
        request: ``{"view": ...}`` (parsed again: any client may post it).
    """
    view = request_view(engine, request, "paths")
    if view is None:
        return (no_update,) * N_OUTPUTS
    return path_tab(engine, view, reporter(set_progress))
