"""The RDM tab: a row of heat maps and one large map with a node slider.

Large stimulus sets with many nodes take seconds, so the tab has a gate and a job:
:func:`rdm_gate` answers at once what is cached or small (:data:`DIRECT_CELLS`), and
otherwise sends :func:`rdm_job` a request, which runs as a background job with progress
and Cancel. The difference RDM below them (a bootstrap) has its own gate and job
(:func:`difference_gate`, :func:`difference_job`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from dash import no_update

from ...pipeline import Engine, NotCached
from .. import views
from ..state import View
from ..viewport import parse_viewport
from .common import guarded, marked_stimuli, parse_view
from .jobs import cached_or_request, reporter, request_view

__all__ = ["DIRECT_CELLS", "difference_gate", "difference_job", "rdm_figures", "rdm_gate", "rdm_job"]

#: RDM cells (stimuli² × nodes) the gate computes in the request itself: 6 nodes of 1,000
#: stimuli take under a second; more goes to a background job.
DIRECT_CELLS = 6 * 1000**2


def _shown(view: View, grid: Any, slider: Any) -> tuple:
    """The grid (laid out for the window, kept at its height on a projector) and the slider, as the display mode shows them."""
    return views.presented(view, grid, fitted=True), views.presented(view, slider)


@guarded(3, 2)
def rdm_figures(engine: Engine, data: Any, selection: Any, viewport: Any = None) -> tuple:
    """``(grid figure, slider figure, message)`` for the view store ``data``, the selection ringed.

    Nothing is computed unless the RDM tab shows. ``viewport`` is the browser's window
    size store (see :mod:`repgeom.ui.viewport`), which the grid is laid out for.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return no_update, no_update, no_update
    grid, slider = views.rdm_views(engine, view, marked_stimuli(selection), parse_viewport(viewport))
    return (*_shown(view, grid, slider), "")


def _small(engine: Engine, view: View, direct_cells: int) -> bool:
    n = engine.stimuli(view.spec(engine, view.n_rdm)).n
    return n * n * len(view.nodes) <= direct_cells


@guarded(5, 2)
def rdm_gate(engine: Engine, data: Any, selection: Any, viewport: Any = None, _again: Any = None, direct_cells: int = DIRECT_CELLS) -> tuple:
    """``(grid, slider, message, request, abandon)``: the figures at once when cached or small, else a job request.

    Nothing unless the RDM tab shows. A direct answer comes with a fresh ``abandon``
    token (which cancels a job still running for an older view); a job request is
    ``{"view", "selection", "viewport"}`` for :func:`rdm_job`. Views of at most ``direct_cells``
    RDM cells (stimuli² × nodes) are computed here.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return (no_update,) * 5
    chosen = marked_stimuli(selection)
    window = parse_viewport(viewport)
    try:
        if _small(engine, view, direct_cells):
            grid, slider = views.rdm_views(engine, view, chosen, window)
        else:
            with engine.cached_only():
                grid, slider = views.rdm_views(engine, view, chosen, window)
    except NotCached:
        return no_update, no_update, "", {"view": view.controls(), "selection": chosen, "viewport": window.as_data()}, no_update
    return (*_shown(view, grid, slider), "", no_update, secrets.token_hex(8))


@guarded(3, 2)
def rdm_job(engine: Engine, set_progress: Any, request: Any) -> tuple:
    """``(grid, slider, message)`` for a request of :func:`rdm_gate`, node by node with progress (a background job)."""
    if not isinstance(request, Mapping):
        return no_update, no_update, no_update
    view = parse_view(engine, request.get("view"))
    if view is None or view.tab != "rdms":
        return no_update, no_update, no_update
    progress = reporter(set_progress)
    spec = view.spec(engine, view.n_rdm)
    nodes = list(view.nodes)
    progress(0, len(nodes) + 1, f"features of {len(nodes)} nodes")
    engine.prefetch_features(view.model, nodes, spec)
    for k, node in enumerate(nodes):
        progress(k + 1, len(nodes) + 1, f"RDM of {node}")
        engine.rdm(view.model, node, spec, view.rdm_method)
    progress(len(nodes) + 1, len(nodes) + 1, "drawing")
    grid, slider = views.rdm_views(engine, view, marked_stimuli(request.get("selection")), parse_viewport(request.get("viewport")))
    return (*_shown(view, grid, slider), "")


def _difference(engine: Engine, view: View, progress: views.Progress | None = None) -> tuple:
    """``(figure, message)`` of the view's difference RDM; a hint until A and B are chosen."""
    fig = views.difference_view(engine, view, progress)
    if fig is None:
        return views.note_figure("Choose A and B (model / node) to see where their RDMs differ reliably."), ""
    return views.presented(view, fig), ""


@guarded(4, 1)
def difference_gate(engine: Engine, data: Any, _again: Any = None) -> tuple:
    """``(figure, message, request, abandon)``: the difference RDM at once when cached, else a job request.

    Its bootstrap takes seconds, so an uncached difference goes to :func:`difference_job`
    (``{"view": ...}``); a direct answer comes with a fresh ``abandon`` token (which
    cancels a job still running for an older view). Nothing unless the RDM tab shows.
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "rdms":
        return (no_update,) * 4
    if view.diff_a and view.diff_b:
        views.difference_stimuli(engine, view)  # too many stimuli is said at once, not after a job
    return cached_or_request(engine, view, lambda: _difference(engine, view), 2, 1)


@guarded(2, 1)
def difference_job(engine: Engine, set_progress: Any, request: Any) -> tuple:
    """``(figure, message)`` for a request of :func:`difference_gate`, with progress (a background job)."""
    view = request_view(engine, request, "rdms")
    if view is None:
        return no_update, no_update
    return _difference(engine, view, reporter(set_progress))
