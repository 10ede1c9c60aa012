"""Callback wiring: each view's callbacks are plain functions in their own module; this binds them.

::

    condition ─► sync.fgsm_disabled ─► epsilon and attacked model (off unless FGSM)
    url.search ─┐                         ┌─► url.search (shareable link, with the selected pair), node options and hint
    controls ───┤                         ├─► rdms (gate → job)                  ┐
    presets ────┼─► sync ─► view store ───┼─► embeddings (gate → job)             ├─ + selection store
    hypothesis ─┤        (validated View) ├─► paths (gate → job: path, angle to labels,
     editor's add   + hypotheses' options │          Shepard, side by side)
    selection ──┘   + a link's pair ──────┼─► selection store
                                          ├─► rdms difference (gate → job: a bootstrap)
                                          ├─► models.models_panel (the models table)
                                          ├─► models metrics (gate → job: every model's per-node metrics)
                                          ├─► models side by side (gate → job: models' RDMs, one colour scale)
                                          └─► download (gate → job, on the button's click: .npz)
    clicks on RDMs / points ─► selection.select ─► selection store ─► selection.pair (a pair, or a block of a block-mean map), highlights
    clicks on points ─► selection.neighbours (k nearest in feature space and on the plot)
    hovers ─► selection.hover (the stimulus images)
    url.search, window resize ─► (clientside) viewport store (window size, bucketed) ─► rdms, embeddings (grid columns, panel size)
    image format, view ─► download.graph_configs ─► configs store ─► (clientside) every graph's camera button
    canvas (assets/probe.js), upload ─► probe image store ─► probe.probe_figures (+ view; bounded per client)
    point search ─► selection.search ─► highlight store ─┐
    box / lasso, reset ─► selection.isolate ─► group ────┴─► embeddings request (rings, dimming)

A background callback is marked with :func:`~repgeom.ui.background.notices_to`: where its
page is told that its job was refused (the server is busy) or lost.

A view that may take more than about a second has a *gate* and a *job* (:func:`_job`)::

    gate inputs ─► gate ─┬─► the outputs themselves (cached or small) + abandon store ─► cancels a running job
     + "Compute again"   └─► request store ─► background job ─► the outputs (allow_duplicate)
                                                  │ progress bar, text, Cancel (busy panel)
    Cancel, request, abandon ─► jobs.notice ─► "Cancelled" + "Compute again" (shown / hidden)
    a job refused (busy) or lost ─► (notices_to) the view's message

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
from ..ids import CONTROL_IDS, DIFF_JOB, DOWNLOAD_JOB, EMBED_JOB, GRAPH_IDS, ID, METRICS_JOB, PATH_JOB, RDM_JOB, SIDE_JOB, JobIds, preset_id
from ..viewport import viewport_js
from . import download, embeddings, jobs, models, paths, probe, rdms, selection, sync

__all__ = ["register"]


def _bind(fn: Callable[..., Any], engine: Engine, **options: Any) -> Callable[..., Any]:
    """``fn`` with ``engine`` as its first argument (a closure, not a partial: Dash hashes a background callback's source)."""

    @functools.wraps(fn)
    def bound(*args: Any) -> Any:
        return fn(engine, *args, **options)

    return bound


def _job(app: Dash, job: JobIds, what: str, outputs: list[Output], message: str, compute: Callable[..., Any], gate: Callable[..., Any] | None,
         gate_inputs: list[Any], gate_state: list[Any] | None = None) -> None:
    """Wire one view's gate, background job and notice (see the diagram above).

    Args:
        app: the app.
        job: the job's component ids.
        what: the job's name in the notice ("path").
        outputs: the view's outputs, written by the job (and by the gate: ``allow_duplicate``).
        message: the view's message box, where the page is told that its job was refused or lost.
        compute: the job, ``(set_progress, request)`` -> outputs.
        gate: ``(*gate inputs, again clicks, *gate state)`` -> ``(*outputs, request, abandon)``;
            ``None`` when the caller wires its own gate into ``job.request``.
        gate_inputs: the gate's inputs ("Compute again" is added after them).
        gate_state: the gate's states.
    """
    shared = [Output(o.component_id, o.component_property, allow_duplicate=True) for o in outputs] if gate is not None else outputs
    if gate is not None:
        app.callback(
            [*shared, Output(job.request, "data"), Output(job.abandon, "data")],
            [*gate_inputs, Input(job.again, "n_clicks")],
            gate_state or [],
            prevent_initial_call=True,
        )(gate)
    app.callback(
        shared,
        Input(job.request, "data"),
        background=True,
        progress=[Output(job.progress, "value"), Output(job.progress, "max"), Output(job.text, "children")],
        progress_default=["0", "1", "starting…"],
        running=[(Output(job.busy, "style"), {"display": "flex"}, {"display": "none"})],
        cancel=[Input(job.cancel, "n_clicks"), Input(job.abandon, "data")],
        interval=500,
        prevent_initial_call=True,
    )(notices_to(compute, message))

    @app.callback(
        [Output(job.notice, "style"), Output(job.notice_text, "children")],
        [Input(job.cancel, "n_clicks"), Input(job.request, "data"), Input(job.abandon, "data")],
        prevent_initial_call=True,
    )
    def notice(clicks: Any, _request: Any, _abandon: Any) -> tuple:
        return jobs.notice(ctx.triggered_id, clicks, what)


def register(app: Dash, engine: Engine, max_answer_bytes: int = download.MAX_ANSWER_BYTES) -> None:
    """Attach every callback to ``app``, computing with ``engine`` (no module state).

    Args:
        app: the Dash app (with a background-callback manager for the jobs).
        engine: the engine every callback computes with.
        max_answer_bytes: the largest download sent; larger ones are refused with the command line.
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
        + [Output(ID.HYPOTHESES, "options"), Output(ID.SELECTION, "data")],
        [Input(ID.URL, "search")]
        + [Input(p, "n_clicks") for p in presets]
        + [Input(ID.HYPOTHESIS_ADD, "n_clicks")]
        + [Input(c, "value") for c in controls]
        + [Input(ID.SELECTION, "data")],
        [State(ID.HYPOTHESIS_NAME, "value"), State(ID.HYPOTHESIS_GROUPS, "value")],
    )
    def sync_view(search: Any, *rest: Any) -> tuple:
        values = rest[len(presets) + 1 : len(presets) + 1 + len(controls)]
        selected, name, groups = rest[-3:]
        return sync.sync(engine, ctx.triggered_id, search, dict(zip(sync.CONTROLS, values, strict=False)), (name, groups), selected)

    app.callback([Output(ID.EPSILON, "disabled"), Output(ID.ATTACK_MODEL, "disabled")], Input(ID.CONDITION, "value"))(sync.fgsm_disabled)

    _job(
        app, RDM_JOB, "RDM",
        [Output(ID.RDM_GRID, "figure"), Output(ID.RDM_SLIDER, "figure"), Output(ID.RDM_MESSAGE, "children")], ID.RDM_MESSAGE,
        _bind(rdms.rdm_job, engine), _bind(rdms.rdm_gate, engine), [Input(ID.VIEW, "data"), Input(ID.SELECTION, "data"), Input(ID.VIEWPORT, "data")],
    )

    app.callback(
        Output(EMBED_JOB.request, "data"),
        [
            Input(ID.VIEW, "data"),
            Input(ID.SELECTION, "data"),
            Input(ID.HIGHLIGHT, "data"),
            Input(ID.GROUP, "data"),
            Input(ID.VIEWPORT, "data"),
            Input(EMBED_JOB.again, "n_clicks"),
        ],
    )(_bind(embeddings.embedding_request, engine))
    _job(
        app, DIFF_JOB, "difference RDM", [Output(ID.DIFF_GRAPH, "figure"), Output(ID.DIFF_MESSAGE, "children")], ID.DIFF_MESSAGE,
        _bind(rdms.difference_job, engine), _bind(rdms.difference_gate, engine), [Input(ID.VIEW, "data")],
    )

    _job(
        app, EMBED_JOB, "embeddings",
        [Output(ID.EMBED_GRID, "figure"), Output(ID.EMBED_ANIM, "figure"), Output(ID.EMBED_SHEPARD, "figure"), Output(ID.EMBED_MESSAGE, "children")],
        ID.EMBED_MESSAGE, _bind(embeddings.embedding_figures, engine), None, [],
    )
    _job(
        app, PATH_JOB, "path",
        [
            Output(ID.PATH_GRAPH, "figure"),
            Output(ID.PATH_LABELS_GRAPH, "figure"),
            Output(ID.PATH_SHEPARD_GRAPH, "figure"),
            Output(ID.PATH_NOTE, "children"),
            Output(ID.PATH_MESSAGE, "children"),
            Output(ID.SURVIVE_GRAPH, "figure"),
            Output(ID.SURVIVE_MESSAGE, "children"),
        ],
        ID.PATH_MESSAGE, _bind(paths.path_job, engine), _bind(paths.path_gate, engine), [Input(ID.VIEW, "data")],
    )

    app.callback([Output(ID.MODELS_TABLE, "children"), Output(ID.MODELS_MESSAGE, "children")], Input(ID.VIEW, "data"))(_bind(models.models_panel, engine))
    _job(
        app, METRICS_JOB, "metrics", [Output(ID.METRICS_GRAPH, "figure"), Output(ID.METRICS_MESSAGE, "children")], ID.METRICS_MESSAGE,
        _bind(models.metrics_job, engine), _bind(models.metrics_gate, engine), [Input(ID.VIEW, "data")],
    )
    _job(
        app, SIDE_JOB, "side-by-side", [Output(ID.SIDE_GRAPH, "figure"), Output(ID.SIDE_MESSAGE, "children")], ID.SIDE_MESSAGE,
        _bind(models.side_by_side_job, engine), _bind(models.side_by_side_gate, engine), [Input(ID.VIEW, "data")],
    )

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
        Output(ID.SELECTION, "data", allow_duplicate=True),  # the sync callback sets it from a link
        [Input(g, "clickData") for g in selection.CLICKED] + [Input(ID.CLEAR_SELECTION, "n_clicks")],
        [State(ID.SELECTION, "data"), State(ID.VIEW, "data")],
        prevent_initial_call=True,
    )
    def select(*args: Any) -> Any:
        *clicks, _clear, current, data = args
        trigger = ctx.triggered_id
        event = dict(zip(selection.CLICKED, clicks, strict=False)).get(trigger)
        return selection.select(engine, trigger, event, current, data)

    app.callback(
        [Output(ID.PAIR_GRAPH, "figure"), Output(ID.PAIR_MESSAGE, "children"), Output(ID.PAIR_BLOCK, "children")],
        [Input(ID.SELECTION, "data"), Input(ID.VIEW, "data")],
    )(_bind(selection.pair, engine))

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

    def download_gate(clicks: Any, _again: Any, data: Any) -> tuple:
        return download.download_gate(engine, clicks, data, max_bytes=max_answer_bytes)

    _job(
        app, DOWNLOAD_JOB, "download",
        [Output(ID.DOWNLOAD, "data"), Output(ID.DOWNLOAD_MESSAGE, "children")], ID.DOWNLOAD_MESSAGE,
        _bind(download.download_job, engine, max_bytes=max_answer_bytes), download_gate,
        [Input(ID.DOWNLOAD_BUTTON, "n_clicks")], [State(ID.VIEW, "data")],
    )

    app.clientside_callback(viewport_js(ID.VIEWPORT), Output(ID.VIEWPORT, "data"), Input(ID.URL, "search"), State(ID.VIEWPORT, "data"))
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
