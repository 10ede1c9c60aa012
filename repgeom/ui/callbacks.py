"""Callback wiring. Each callback parses what the browser sent, calls one view function, and returns.

::

    url.search ─┐                         ┌─► url.search (shareable link)
    controls ───┼─► sync ─► view store ───┼─► rdm figures      ┐
    ff-vs-rec ──┘        (validated View) ├─► embedding figures ├─ + selection store
                                          ├─► path figure       ┘
                                          ├─► models table + metrics
                                          └─► download (.npz)
    clicks on RDMs / points ─► selection store ─► pair figure, highlights
    hovers ─► hover panel (digit images)

The view store holds a validated :class:`~repgeom.ui.state.View` as a dict, but every
consumer parses it again: any client can post any JSON to any callback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from ..core.errors import RepgeomError
from ..export import ExportRequest, collect_export, export_bytes
from ..pipeline import Engine
from . import views
from .ids import CONTROL_IDS, GRAPH_IDS, ID
from .background import JobSlots
from .layout import IMAGE_FORMATS, graph_config
from .response_cache import do_not_replay
from .state import MAX_LIST, View, default_nodes

__all__ = ["register_callbacks"]

log = logging.getLogger(__name__)


def _alert(text: str, kind: str = "error") -> html.Div:
    return html.Div(text, className=f"message-box {kind}")


def _guarded(n_outputs: int, message_at: int) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Turn user errors into a message in the page and bugs into a generic one (logged)."""

    def deco(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> tuple:
            try:
                return fn(*args, **kwargs)
            except RepgeomError as exc:
                text = str(exc)
            except Exception:  # a bug: keep the traceback in the log, not in the page
                log.exception("callback %s failed", fn.__name__)
                do_not_replay()
                text = "Something went wrong while computing this view; the server log has the details."
            out: list[Any] = [no_update] * n_outputs
            out[message_at] = _alert(text)
            return tuple(out)

        return wrapper

    return deco


def _view(engine: Engine, data: Any) -> View | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise RepgeomError("the view settings must be an object")
    return View.parse(engine, data)


def _selection(data: Any) -> list[int]:
    if not isinstance(data, list) or len(data) > MAX_LIST:
        return []
    return [int(x) for x in data if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 10**6][-views.MAX_SELECTION :]


def register_callbacks(app: Dash, engine: Engine, slots: JobSlots | None = None) -> None:
    """Attach every callback to ``app``, closing over ``engine`` (no module state).

    Args:
        app: the Dash app (with a background-callback manager).
        engine: the engine every callback computes with.
        slots: the bound on background jobs computing at once (``None``: no bound here).
    """
    hold = slots.hold if slots is not None else _no_slots
    names = list(CONTROL_IDS)
    _register_image_format(app)

    @app.callback(
        [Output(ID.URL, "search"), Output(ID.VIEW, "data"), Output(ID.NODES, "options"), Output(ID.GLOBAL_MESSAGE, "children")]
        + [Output(CONTROL_IDS[n], "value") for n in names],
        [Input(ID.URL, "search"), Input(ID.FF_VS_REC, "n_clicks")] + [Input(CONTROL_IDS[n], "value") for n in names],
    )
    def sync(search: Any, _clicks: Any, *values: Any) -> tuple:
        """Keep controls, URL and the validated view in step (one callback, so no cycles)."""
        trigger = ctx.triggered_id
        keep = [no_update] * len(names)
        if trigger in (None, ID.URL):
            try:
                view, note = View.from_query(engine, search), None
            except RepgeomError as exc:
                view, note = View.default(engine), _alert(f"The link's settings were not used: {exc}", "warning")
            controls = view.controls()
            return (no_update, controls, _node_options(engine, view), note or "", *[controls[n] for n in names])
        raw = dict(zip(names, values))
        try:
            if trigger == ID.MODEL:
                model = engine.check_model(raw["model"] if isinstance(raw["model"], str) else type(raw["model"]).__name__)
                raw["nodes"] = list(default_nodes(engine, model))
            elif trigger == ID.FF_VS_REC:
                raw.update(path_models=["feedforward", "recurrent"], tab="paths")
            view = View.parse(engine, raw)
        except RepgeomError as exc:
            return (no_update, no_update, no_update, _alert(str(exc)), *keep)
        controls = view.controls()
        changed = [controls[n] if controls[n] != raw.get(n) or trigger in (ID.MODEL, ID.FF_VS_REC) else no_update for n in names]
        return (view.to_query(), controls, _node_options(engine, view), "", *changed)

    @app.callback(
        [Output(ID.RDM_GRID, "figure"), Output(ID.RDM_SLIDER, "figure"), Output(ID.RDM_MESSAGE, "children")],
        [Input(ID.VIEW, "data"), Input(ID.SELECTION, "data")],
    )
    @_guarded(3, 2)
    def rdm_figures(data: Any, selection: Any) -> tuple:
        view = _view(engine, data)
        if view is None or view.tab != "rdms":
            return no_update, no_update, no_update
        grid, slider = views.rdm_views(engine, view, _selection(selection))
        return grid, slider, ""

    @app.callback(Output(ID.EMBED_REQUEST, "data"), [Input(ID.VIEW, "data"), Input(ID.SELECTION, "data")])
    def embedding_request(data: Any, selection: Any) -> Any:
        """Start the embeddings job only when its tab shows (a cheap gate in front of a process)."""
        if not isinstance(data, Mapping) or data.get("tab") != "embeddings":
            return no_update
        try:  # only a valid view starts a process; the sync callback reports bad controls
            view = _view(engine, data)
        except RepgeomError:
            return no_update
        return {"view": view.controls(), "selection": _selection(selection)}

    @app.callback(
        [Output(ID.EMBED_GRID, "figure"), Output(ID.EMBED_ANIM, "figure"), Output(ID.EMBED_MESSAGE, "children")],
        Input(ID.EMBED_REQUEST, "data"),
        background=True,
        progress=[Output(ID.EMBED_PROGRESS, "value"), Output(ID.EMBED_PROGRESS, "max"), Output(ID.EMBED_PROGRESS_TEXT, "children")],
        progress_default=["0", "1", ""],
        running=[(Output(ID.EMBED_BUSY, "style"), {"display": "flex"}, {"display": "none"})],
        cancel=[Input(ID.EMBED_CANCEL, "n_clicks")],
        interval=500,
        prevent_initial_call=True,
    )
    @_guarded(3, 2)
    def embedding_figures(set_progress: Callable[[tuple[str, str, str]], None], request: Any) -> tuple:
        """A background job: t-SNE of many stimuli can take a while; the page shows progress and Cancel."""
        if not isinstance(request, Mapping):
            return no_update, no_update, no_update
        view = _view(engine, request.get("view"))
        if view is None or view.tab != "embeddings":
            return no_update, no_update, no_update

        def tell(value: tuple[str, str, str]) -> None:
            try:  # progress is a courtesy: a busy job store must not fail the job itself
                set_progress(value)
            except Exception as exc:  # noqa: BLE001 - a full disk, redis errors...
                log.warning("progress not recorded (%s)", type(exc).__name__)

        def progress(done: int, total: int, what: str) -> None:
            tell((str(done), str(total), f"{done}/{total} · {what}" if done < total else what))

        with hold(lambda: tell(("0", "1", "waiting for a free slot…"))):
            grid, anim = views.embedding_views(engine, view, _selection(request.get("selection")), progress)
        return grid, anim, ""

    @app.callback([Output(ID.PATH_GRAPH, "figure"), Output(ID.PATH_MESSAGE, "children")], Input(ID.VIEW, "data"))
    @_guarded(2, 1)
    def path_figure(data: Any) -> tuple:
        view = _view(engine, data)
        if view is None or view.tab != "paths":
            return no_update, no_update
        return views.path_view(engine, view), ""

    @app.callback(
        [Output(ID.MODELS_TABLE, "children"), Output(ID.METRICS_GRAPH, "figure"), Output(ID.MODELS_MESSAGE, "children")],
        Input(ID.VIEW, "data"),
    )
    @_guarded(3, 2)
    def models_panel(data: Any) -> tuple:
        view = _view(engine, data)
        if view is None or view.tab != "models":
            return no_update, no_update, no_update
        return _table(views.models_rows(engine)), views.metrics_view(engine, view), ""

    @app.callback(
        Output(ID.SELECTION, "data"),
        [Input(ID.RDM_GRID, "clickData"), Input(ID.RDM_SLIDER, "clickData"), Input(ID.EMBED_GRID, "clickData"),
         Input(ID.EMBED_ANIM, "clickData"), Input(ID.CLEAR_SELECTION, "n_clicks")],
        [State(ID.SELECTION, "data"), State(ID.VIEW, "data")],
        prevent_initial_call=True,
    )
    def select(rdm_click: Any, slider_click: Any, grid_click: Any, anim_click: Any, _clear: Any, current: Any, data: Any) -> Any:
        trigger = ctx.triggered_id
        if trigger == ID.CLEAR_SELECTION:
            return []
        try:
            view = _view(engine, data)
            if view is None:
                return no_update
            click = {ID.RDM_GRID: rdm_click, ID.RDM_SLIDER: slider_click, ID.EMBED_GRID: grid_click, ID.EMBED_ANIM: anim_click}.get(trigger)
            point = _first_point(click)
            if point is None:
                return no_update
            if trigger in (ID.RDM_GRID, ID.RDM_SLIDER):
                stim = engine.stimuli(view.spec(engine, view.n_rdm))
                rows = views.rdm_cell_rows(engine, view, _index(point.get("x"), stim.n), _index(point.get("y"), stim.n))
                return views.update_selection(_selection(current), [int(stim.indices[r]) for r in rows], pair=True)
            test_index = _index((point.get("customdata") or [None, None])[1], 10**6)
            return views.update_selection(_selection(current), [test_index], pair=False)
        except (RepgeomError, TypeError, ValueError, AttributeError, IndexError):
            return no_update

    @app.callback([Output(ID.PAIR_GRAPH, "figure"), Output(ID.PAIR_MESSAGE, "children")], [Input(ID.SELECTION, "data"), Input(ID.VIEW, "data")])
    @_guarded(2, 1)
    def pair(selection: Any, data: Any) -> tuple:
        view = _view(engine, data)
        if view is None:
            return no_update, no_update
        fig = views.pair_view(engine, view, _selection(selection))
        return (fig if fig is not None else _empty_pair()), ""

    @app.callback(
        Output(ID.HOVER_PANEL, "children"),
        [Input(ID.RDM_GRID, "hoverData"), Input(ID.RDM_SLIDER, "hoverData"), Input(ID.EMBED_GRID, "hoverData"), Input(ID.EMBED_ANIM, "hoverData")],
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    def hover(rdm_hover: Any, slider_hover: Any, grid_hover: Any, anim_hover: Any, data: Any) -> Any:
        trigger = ctx.triggered_id
        hovered = {ID.RDM_GRID: rdm_hover, ID.RDM_SLIDER: slider_hover, ID.EMBED_GRID: grid_hover, ID.EMBED_ANIM: anim_hover}.get(trigger)
        try:
            view = _view(engine, data)
            point = _first_point(hovered)
            if view is None or point is None:
                return no_update
            if trigger in (ID.RDM_GRID, ID.RDM_SLIDER):
                curve = point.get("curveNumber") if trigger == ID.RDM_GRID else None
                shown = point.get("z")
                info = views.rdm_hover(
                    engine, view, _index(point.get("x"), 10**6), _index(point.get("y"), 10**6),
                    curve if isinstance(curve, int) and not isinstance(curve, bool) else None,
                    float(shown) if isinstance(shown, (int, float)) and not isinstance(shown, bool) else None,
                )
            else:
                custom = point.get("customdata")
                test_index = _index(custom[1] if isinstance(custom, list) and len(custom) == 2 else None, 10**6)
                info = views.hover_info(engine, view, [test_index], "")
        except (RepgeomError, TypeError, ValueError, AttributeError, IndexError):
            return no_update
        return html.Div(
            [html.Div([html.Img(src=src, alt=cap, className="digit"), html.Div(cap, className="caption")], className="digit-card") for src, cap in zip(info.images, info.captions)]
            + [html.Div(info.summary, className="hover-summary")]
        )

    @app.callback(
        [Output(ID.DOWNLOAD, "data"), Output(ID.DOWNLOAD_MESSAGE, "children")],
        Input(ID.DOWNLOAD_BUTTON, "n_clicks"),
        State(ID.VIEW, "data"),
        prevent_initial_call=True,
    )
    @_guarded(2, 1)
    def download(_clicks: Any, data: Any) -> tuple:
        view = _view(engine, data)
        if view is None:
            return no_update, no_update
        n = view.n_rdm if view.tab == "rdms" else view.n_embed
        req = ExportRequest(
            models=list(dict.fromkeys([view.model, *view.path_models])),
            layers=None,
            spec=view.spec(engine, n),
            rdm_method=view.rdm_method,
            path_rdm_method=view.path_rdm,
            compare=view.compare,
            embed=list(view.embed_methods) if view.tab == "embeddings" else [],
            perplexity=view.perplexity,
            node_overrides={view.model: list(view.nodes)},
        )
        payload = export_bytes(collect_export(engine, req))
        return dcc.send_bytes(payload, f"repgeom-{view.model}-{n}pc-{view.condition}.npz"), ""


@contextlib.contextmanager
def _no_slots(waiting: Callable[[], None] | None = None) -> Iterator[int]:
    yield 0


def _register_image_format(app: Dash) -> None:
    @app.callback([Output(g, "config") for g in GRAPH_IDS], Input(ID.IMAGE_FORMAT, "value"), prevent_initial_call=True)
    def image_format(value: Any) -> tuple:
        """Every figure's camera button saves PNG or SVG."""
        if value not in IMAGE_FORMATS:
            return tuple(no_update for _ in GRAPH_IDS)
        return tuple(graph_config(value) for _ in GRAPH_IDS)


def _node_options(engine: Engine, view: View) -> list[dict[str, str]]:
    return [{"label": n, "value": n} for n in engine.nodes(view.model)]


def _first_point(event: Any) -> dict[str, Any] | None:
    if not isinstance(event, Mapping):
        return None
    points = event.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], Mapping):
        return None
    return dict(points[0])


def _index(value: Any, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() or not 0 <= value < upper:
        raise ValueError(f"not an index below {upper}")
    return int(value)


def _table(rows: list[dict[str, Any]]) -> html.Table:
    head = html.Thead(html.Tr([html.Th(k) for k in rows[0]])) if rows else None
    body = html.Tbody([html.Tr([html.Td(str(v)) for v in r.values()]) for r in rows])
    return html.Table([head, body] if head else [body], className="models-table")


def _empty_pair() -> dict[str, Any]:
    return {
        "data": [],
        "layout": {
            "height": 320,
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "annotations": [{"text": "no pair selected", "showarrow": False, "font": {"size": 14, "color": "#777"}}],
            "template": "plotly_white",
        },
    }
