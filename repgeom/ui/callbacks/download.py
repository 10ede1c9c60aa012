"""Downloads: the view's arrays as ``.npz``, and every figure's camera button (image format and file name).

Design notes:
    An export computes every node's RDM of every chosen model, the path and maybe
    embeddings, so the download has a gate and a job: :func:`download_gate` refuses a
    file larger than the server's answer bound (with the ``python -m repgeom export``
    command line that writes it instead), answers at once when everything is cached, and
    otherwise sends :func:`download_job` a request, which runs as a background job with
    progress and Cancel.

    A ``dcc.Graph`` hands a new ``config`` to Plotly only when its figure is drawn again,
    so a changed image format would reach the camera button after the next redraw. The
    server therefore writes every figure's toolbar settings to one store
    (:func:`graph_configs`), and a clientside callback (wired in ``__init__.py``) puts
    them on each figure's live plot at once and on its ``config`` for later redraws.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from typing import Any

from dash import dcc, no_update

from ...core.errors import RepgeomError
from ...export import ExportRequest, collect_export, export_bytes
from ...pipeline import Engine, NotCached
from ...settings import Settings
from ..ids import GRAPH_IDS, ID
from ..layout import IMAGE_FORMATS, graph_config
from ..state import View
from .common import guarded, parse_view
from .jobs import reporter

__all__ = [
    "MAX_ANSWER_BYTES", "cli_command", "download", "download_gate", "download_job", "estimated_bytes", "export_request",
    "figure_filename", "graph_configs", "too_large",
]

#: A download's file name keeps at most this many characters (before the extension).
MAX_FILENAME = 120
#: The default bound on a download (the server's ``REPGEOM_MAX_ANSWER_BYTES``).
MAX_ANSWER_BYTES = Settings.max_answer_bytes


def export_request(engine: Engine, data: Any) -> tuple[ExportRequest, str] | None:
    """The export of the view store ``data`` and its file name (``None`` before the page set a view).

    The export holds the RDMs of the tab's stimulus set, the path of the chosen models with
    the view's landmarks and hypotheses, the embeddings when the embeddings tab shows, and
    the difference RDM (with its mask) when A and B are chosen.
    """
    view = parse_view(engine, data)
    if view is None:
        return None
    return _export_of(engine, view)


def _export_of(engine: Engine, view: View) -> tuple[ExportRequest, str]:
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
        landmarks=(view.landmark_spec(),),
        differences=(f"{view.diff_a},{view.diff_b}",) if view.diff_a and view.diff_b else (),
    )
    return req, f"repgeom-{view.model}-{n}pc-{view.condition}.npz"


def estimated_bytes(engine: Engine, req: ExportRequest) -> int:
    """The ``.npz`` size of ``req`` before computing it: its float64 RDMs and difference maps dominate.

    Args:
        engine: the engine (stimulus count, nodes).
        req: the export.

    Returns:
        Bytes, within a few per cent of the file (paths, embeddings and labels are small).
    """
    n = engine.stimuli(req.spec).n
    rdms = sum(len(req.node_overrides.get(m) or engine.select_nodes(m, req.layers)) for m in req.models)
    per_difference = 9 * n * n  # the float64 map and its boolean mask
    small = n * 64 + 2 * n * 8 * rdms * len(req.embed) + (1 << 16)
    return 8 * n * n * rdms + per_difference * len(req.differences) + small


def cli_command(req: ExportRequest, filename: str) -> str:
    """The ``python -m repgeom export`` command line that writes ``req`` to ``filename``.

    The command line takes one node list for every model: it is the view model's nodes
    when the export has one model, else ``all``.
    """
    spec = req.spec
    layers = ",".join(req.node_overrides.get(req.models[0]) or ["all"]) if len(req.models) == 1 else "all"
    args = [
        "python", "-m", "repgeom", "export", "--out", filename, "--models", ",".join(req.models), "--layers", layers,
        "--n-per-class", str(spec.n_per_class), "--condition", spec.condition,
    ]
    if spec.condition != "clean":
        args += ["--epsilon", f"{spec.epsilon:g}", "--attack-model", str(spec.attack_model)]
    args += ["--rdm", req.rdm_method, "--path-rdm", req.path_rdm_method, "--compare", req.compare]
    for marks in req.landmarks:
        if marks and marks != "labels":
            args += ["--landmarks", marks]
    for item in req.differences:
        args += ["--difference", item]
    if req.embed:
        args += ["--embed", ",".join(req.embed), "--perplexity", f"{req.perplexity:g}"]
    return shlex.join(args)


def too_large(size: int, bound: int, req: ExportRequest, filename: str) -> str:
    """The refusal of a download of ``size`` bytes above ``bound``, with the command line that writes it."""
    return (
        f"This download would be {size / 2**20:.0f} MiB, above the server's {bound / 2**20:.0f} MiB limit for answers "
        f"(REPGEOM_MAX_ANSWER_BYTES). Choose fewer images per class or fewer models, or write it with the command line: "
        f"{cli_command(req, filename)}"
    )


def _send(engine: Engine, req: ExportRequest, filename: str, max_bytes: int, progress: Any = None) -> tuple:
    step = None
    if progress is not None:
        steps = iter(range(1 << 30))
        total = 2 + sum(1 + len(req.node_overrides.get(m) or engine.select_nodes(m, req.layers)) for m in req.models) + len(req.differences)

        def step(what: str) -> None:
            progress(min(next(steps), total - 1), total, what)

    data = export_bytes(collect_export(engine, req, step))
    if len(data) > max_bytes:
        raise RepgeomError(too_large(len(data), max_bytes, req, filename))
    return dcc.send_bytes(data, filename), ""


@guarded(4, 1)
def download_gate(engine: Engine, _clicks: Any, data: Any, max_bytes: int = MAX_ANSWER_BYTES) -> tuple:
    """``(download, message, request, abandon)`` for a click on the download button.

    Refused with the equivalent command line above ``max_bytes`` (estimated before any
    work); sent at once when everything is cached; else a job request ``{"view"}`` for
    :func:`download_job`.
    """
    view = parse_view(engine, data)
    if view is None:
        return (no_update,) * 4
    req, filename = _export_of(engine, view)
    size = estimated_bytes(engine, req)
    if size > max_bytes:
        raise RepgeomError(too_large(size, max_bytes, req, filename))
    try:
        with engine.cached_only():
            sent, message = _send(engine, req, filename, max_bytes)
    except NotCached:
        return no_update, "", {"view": view.controls()}, no_update
    return sent, message, no_update, secrets.token_hex(8)


@guarded(2, 1)
def download_job(engine: Engine, set_progress: Any, request: Any, max_bytes: int = MAX_ANSWER_BYTES) -> tuple:
    """``(download, message)`` for a request of :func:`download_gate`, computed with progress (a background job)."""
    if not isinstance(request, Mapping):
        return no_update, no_update
    view = parse_view(engine, request.get("view"))
    if view is None:
        return no_update, no_update
    req, filename = _export_of(engine, view)
    return _send(engine, req, filename, max_bytes, reporter(set_progress))


@guarded(2, 1)
def download(engine: Engine, data: Any, max_bytes: int = MAX_ANSWER_BYTES) -> tuple:
    """``(dcc.Download data, message)``: the view's ``.npz`` export, computed here (refused above ``max_bytes``)."""
    made = export_request(engine, data)
    if made is None:
        return no_update, no_update
    req, filename = made
    size = estimated_bytes(engine, req)
    if size > max_bytes:
        raise RepgeomError(too_large(size, max_bytes, req, filename))
    return _send(engine, req, filename, max_bytes)


def _nodes(nodes: tuple[str, ...]) -> str:
    return nodes[0] if len(nodes) == 1 else f"{nodes[0]}-to-{nodes[-1]}-{len(nodes)}nodes"


def figure_filename(view: View | None, graph_id: str) -> str:
    """The camera button's file name (no extension) for figure ``graph_id`` of ``view``: the view, model, nodes and method.

    Args:
        view: a validated view (``None`` before the page set one: the figure's name alone).
        graph_id: one of ``ids.GRAPH_IDS``.

    Returns:
        Letters, digits, ``_``, ``-`` and ``.`` only, at most :data:`MAX_FILENAME` characters.
    """
    what = graph_id.removesuffix("-graph")
    if view is None:
        parts = ["repgeom", what]
    else:
        models = "-".join(view.path_models) if view.path_mode == "models" else f"{view.model}-training"
        nodes = _nodes(view.nodes)
        by_graph = {
            ID.RDM_GRID: ["rdms", view.model, nodes, view.rdm_method],
            ID.RDM_SLIDER: ["rdm-slider", view.model, nodes, view.rdm_method],
            ID.DIFF_GRAPH: ["difference", view.diff_a or "A", "minus", view.diff_b or "B", view.rdm_method],
            ID.EMBED_GRID: ["embeddings", view.model, nodes, "-".join(view.embed_methods)],
            ID.EMBED_ANIM: ["embedding-animation", view.model, nodes, view.anim_method],
            ID.EMBED_SHEPARD: ["shepard", view.model, nodes, "mds"],
            ID.PATH_GRAPH: ["path", models, view.path_rdm, view.compare],
            ID.PATH_LABELS_GRAPH: ["angle-to-labels", models, view.path_rdm, view.compare],
            ID.PATH_SHEPARD_GRAPH: ["path-shepard", models, view.path_rdm, view.compare],
            ID.SURVIVE_GRAPH: ["path-comparisons", models, view.path_rdm, "-".join(view.survive)],
            ID.METRICS_GRAPH: ["metrics", view.model, view.rdm_method],
            ID.SIDE_GRAPH: ["side-by-side", "-".join(dict.fromkeys([view.model, *view.path_models])), view.rdm_method],
            ID.PAIR_GRAPH: ["pair", view.model, view.rdm_method],
        }
        parts = ["repgeom", *by_graph.get(graph_id, [what, view.model])]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-.")
    return name[:MAX_FILENAME]


def graph_configs(engine: Engine, value: Any, data: Any) -> Any:
    """Every figure's toolbar settings for camera-button format ``value`` and the view store ``data``.

    Returns:
        ``{graph id: config}`` (see :func:`~repgeom.ui.layout.graph_config`), each file
        named by :func:`figure_filename`; ``no_update`` for a format other than PNG or SVG
        or a view store that does not parse.
    """
    if not isinstance(value, str) or value not in IMAGE_FORMATS:
        return no_update
    try:
        view = parse_view(engine, data)
    except RepgeomError:
        return no_update
    return {g: graph_config(value, figure_filename(view, g)) for g in GRAPH_IDS}
