"""Callback wiring: each view's callbacks are plain functions in their own module; this binds them.

::

    url.search ─┐                         ┌─► url.search (shareable link), node options and hint
    controls ───┤                         ├─► rdms.rdm_figures        ┐
    presets ────┼─► sync ─► view store ───┼─► embeddings (gate → job)  ├─ + selection store
    hypothesis ─┘        (validated View) ├─► paths.path_figure (path, angle to labels, Shepard)
     editor's add   + hypotheses' options ├─► paths.survive_figure (side by side), rdms.difference_figure
                                          ├─► models.models_panel (table + every model's metrics)
                                          ├─► models.side_by_side (models' RDMs, one colour scale)
                                          └─► download.download (.npz)
    clicks on RDMs / points ─► selection.select ─► selection store ─► selection.pair, highlights
    clicks on points ─► selection.neighbours (k nearest in feature space and on the plot)
    hovers ─► selection.hover (the stimulus images)
    image format, view ─► download.graph_configs ─► configs store ─► (clientside) every graph's camera button
    canvas (assets/probe.js), upload ─► probe image store ─► probe.probe_figures (+ view; bounded per client)
    point search ─► selection.search ─► highlight store ─┐
    box / lasso, reset ─► selection.isolate ─► group ────┴─► embeddings request (rings, dimming)

A background callback is marked with :func:`~repgeom.ui.background.notices_to`: where its
page is told that its job was refused (the server is busy) or lost.

Each function takes the engine first, then the values Dash sends (already in the order
of its inputs and states); callbacks that several inputs trigger also take the id that
fired (``dash.ctx.triggered_id``). Tests call them directly; :func:`register` is the only
place that knows about Dash's ``Input``/``Output`` wiring.

The view store holds a validated :class:`~repgeom.ui.state.View` as a dict, but every
consumer parses it again: any client can post any JSON to any callback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, State, ctx
from flask import has_request_context, request

from ...pipeline import Engine
from ..background import notices_to
from ..ids import CONTROL_IDS, GRAPH_IDS, ID, preset_id
from . import download, embeddings, models, paths, probe, rdms, selection, sync

__all__ = ["register"]


def _bind(fn: Callable[..., Any], engine: Engine) -> Callable[..., Any]:
    """``fn`` with ``engine`` as its first argument (a closure, not a partial: Dash hashes a background callback's source)."""

    @functools.wraps(fn)
    def bound(*args: Any) -> Any:
        return fn(engine, *args)

    return bound


def register(app: Dash, engine: Engine) -> None:
    """Attach every callback to ``app``, computing with ``engine`` (no module state).

    Args:
        app: the Dash app (with a background-callback manager for the embeddings job).
        engine: the engine every callback computes with.
    """
    controls = [CONTROL_IDS[n] for n in sync.CONTROLS]
    presets = [preset_id(i) for i in range(len(engine.presets))]

    @app.callback(
        [
            Output(ID.URL, "search"),
            Output(ID.VIEW, "data"),
            Output(ID.NODES, "options"),
            Output(ID.NODES_HINT, "children"),
            Output(ID.GLOBAL_MESSAGE, "children"),
        ]
        + [Output(c, "value") for c in controls]
        + [Output(ID.HYPOTHESES, "options")],
        [Input(ID.URL, "search")]
        + [Input(p, "n_clicks") for p in presets]
        + [Input(ID.HYPOTHESIS_ADD, "n_clicks")]
        + [Input(c, "value") for c in controls],
        [State(ID.HYPOTHESIS_NAME, "value"), State(ID.HYPOTHESIS_GROUPS, "value")],
    )
    def sync_view(search: Any, *rest: Any) -> tuple:
        values = rest[len(presets) + 1 : len(presets) + 1 + len(controls)]
        name, groups = rest[-2:]
        return sync.sync(engine, ctx.triggered_id, search, dict(zip(sync.CONTROLS, values, strict=False)), (name, groups))

    app.callback(
        [Output(ID.RDM_GRID, "figure"), Output(ID.RDM_SLIDER, "figure"), Output(ID.RDM_MESSAGE, "children")],
        [Input(ID.VIEW, "data"), Input(ID.SELECTION, "data")],
    )(_bind(rdms.rdm_figures, engine))

    app.callback(
        Output(ID.EMBED_REQUEST, "data"),
        [Input(ID.VIEW, "data"), Input(ID.SELECTION, "data"), Input(ID.HIGHLIGHT, "data"), Input(ID.GROUP, "data")],
    )(_bind(embeddings.embedding_request, engine))
    app.callback(
        [Output(ID.DIFF_GRAPH, "figure"), Output(ID.DIFF_MESSAGE, "children")],
        Input(ID.VIEW, "data"),
    )(_bind(rdms.difference_figure, engine))

    app.callback(
        [Output(ID.EMBED_GRID, "figure"), Output(ID.EMBED_ANIM, "figure"), Output(ID.EMBED_SHEPARD, "figure"), Output(ID.EMBED_MESSAGE, "children")],
        Input(ID.EMBED_REQUEST, "data"),
        background=True,
        progress=[Output(ID.EMBED_PROGRESS, "value"), Output(ID.EMBED_PROGRESS, "max"), Output(ID.EMBED_PROGRESS_TEXT, "children")],
        progress_default=["0", "1", ""],
        running=[(Output(ID.EMBED_BUSY, "style"), {"display": "flex"}, {"display": "none"})],
        cancel=[Input(ID.EMBED_CANCEL, "n_clicks")],
        interval=500,
        prevent_initial_call=True,
    )(notices_to(_bind(embeddings.embedding_figures, engine), ID.EMBED_MESSAGE))

    app.callback(
        [
            Output(ID.PATH_GRAPH, "figure"),
            Output(ID.PATH_LABELS_GRAPH, "figure"),
            Output(ID.PATH_SHEPARD_GRAPH, "figure"),
            Output(ID.PATH_NOTE, "children"),
            Output(ID.PATH_MESSAGE, "children"),
        ],
        Input(ID.VIEW, "data"),
    )(_bind(paths.path_figure, engine))
    app.callback([Output(ID.SURVIVE_GRAPH, "figure"), Output(ID.SURVIVE_MESSAGE, "children")], Input(ID.VIEW, "data"))(_bind(paths.survive_figure, engine))

    app.callback(
        [Output(ID.MODELS_TABLE, "children"), Output(ID.METRICS_GRAPH, "figure"), Output(ID.MODELS_MESSAGE, "children")],
        Input(ID.VIEW, "data"),
    )(_bind(models.models_panel, engine))
    app.callback([Output(ID.SIDE_GRAPH, "figure"), Output(ID.SIDE_MESSAGE, "children")], Input(ID.VIEW, "data"))(_bind(models.side_by_side, engine))

    limiter = probe.RateLimit()  # per app, so per server worker

    app.callback([Output(ID.PROBE_IMAGE, "data"), Output(ID.PROBE_UPLOAD_MESSAGE, "children")], Input(ID.PROBE_UPLOAD, "contents"), prevent_initial_call=True)(
        _bind(probe.take_upload, engine)
    )

    @app.callback(
        [
            Output(ID.PROBE_SEEN, "src"),
            Output(ID.PROBE_NOTE, "children"),
            Output(ID.PROBE_PROBS, "figure"),
            Output(ID.PROBE_EMBED, "figure"),
            Output(ID.PROBE_ROWS, "figure"),
            Output(ID.PROBE_MESSAGE, "children"),
        ],
        [Input(ID.PROBE_IMAGE, "data"), Input(ID.VIEW, "data")],
    )
    def live_probe(image: Any, data: Any) -> tuple:
        client = (request.remote_addr or "") if has_request_context() else ""
        return probe.probe_figures(engine, image, data, client, limiter)

    @app.callback(
        Output(ID.SELECTION, "data"),
        [Input(g, "clickData") for g in selection.CLICKED] + [Input(ID.CLEAR_SELECTION, "n_clicks")],
        [State(ID.SELECTION, "data"), State(ID.VIEW, "data")],
        prevent_initial_call=True,
    )
    def select(*args: Any) -> Any:
        *clicks, _clear, current, data = args
        trigger = ctx.triggered_id
        event = dict(zip(selection.CLICKED, clicks, strict=False)).get(trigger)
        return selection.select(engine, trigger, event, current, data)

    app.callback([Output(ID.PAIR_GRAPH, "figure"), Output(ID.PAIR_MESSAGE, "children")], [Input(ID.SELECTION, "data"), Input(ID.VIEW, "data")])(
        _bind(selection.pair, engine)
    )

    @app.callback(
        Output(ID.HOVER_PANEL, "children"),
        [Input(g, "hoverData") for g in selection.HOVERED],
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    def hover(*args: Any) -> Any:
        *hovers, data = args
        trigger = ctx.triggered_id
        return selection.hover(engine, trigger, dict(zip(selection.HOVERED, hovers, strict=False)).get(trigger), data)

    @app.callback(
        Output(ID.NEIGHBOURS_PANEL, "children"),
        [Input(g, "clickData") for g in selection.POINT_GRAPHS],
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    def neighbours(*args: Any) -> Any:
        *clicks, data = args
        trigger = ctx.triggered_id
        return selection.neighbours(engine, trigger, dict(zip(selection.POINT_GRAPHS, clicks, strict=False)).get(trigger), data)

    app.callback(
        [Output(ID.HIGHLIGHT, "data"), Output(ID.POINT_SEARCH_MESSAGE, "children")],
        [Input(ID.POINT_SEARCH, "value"), Input(ID.VIEW, "data")],
    )(_bind(selection.search, engine))

    @app.callback(
        [Output(ID.GROUP, "data"), Output(ID.GROUP_MESSAGE, "children")],
        [Input(g, "selectedData") for g in selection.POINT_GRAPHS] + [Input(ID.GROUP_RESET, "n_clicks")],
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    def isolate(grid_selected: Any, anim_selected: Any, _reset: Any, data: Any) -> tuple:
        return selection.isolate(engine, ctx.triggered_id, grid_selected, anim_selected, data)

    @app.callback(
        [Output(ID.DOWNLOAD, "data"), Output(ID.DOWNLOAD_MESSAGE, "children")],
        Input(ID.DOWNLOAD_BUTTON, "n_clicks"),
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    def download_view(_clicks: Any, data: Any) -> tuple:
        return download.download(engine, data)

    app.callback(Output(ID.GRAPH_CONFIGS, "data"), [Input(ID.IMAGE_FORMAT, "value"), Input(ID.VIEW, "data")])(_bind(download.graph_configs, engine))
    app.clientside_callback(_APPLY_CONFIGS % json.dumps(list(GRAPH_IDS)), [Output(g, "config") for g in GRAPH_IDS], Input(ID.GRAPH_CONFIGS, "data"))


#: Puts each figure's new toolbar settings on its live plot (Plotly reads them when the camera
#: button is clicked; the graph would pass a new ``config`` on only at its next redraw),
#: relabels the camera button, and returns them as every graph's ``config`` for later redraws.
_APPLY_CONFIGS = """
function (configs) {
    const ids = %s;
    const skip = window.dash_clientside.no_update;
    if (!configs || typeof configs !== "object") { return ids.map(() => skip); }
    return ids.map(function (id) {
        const config = configs[id];
        if (!config || typeof config !== "object") { return skip; }
        const host = document.getElementById(id);
        const plot = host && host.querySelector(".js-plotly-plot");
        if (plot && plot._context) {
            plot._context.toImageButtonOptions = Object.assign({}, config.toImageButtonOptions);
            const camera = plot.querySelector(".modebar-btn[data-title^='Download plot']");
            if (camera) { camera.setAttribute("data-title", "Download plot as a " + String(config.toImageButtonOptions.format).toUpperCase()); }
        }
        return config;
    });
}
"""
