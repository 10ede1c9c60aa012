"""Downloads: the view's arrays as ``.npz``, and every figure's camera button (image format and file name).

Design notes:
    A ``dcc.Graph`` hands a new ``config`` to Plotly only when its figure is drawn again,
    so a changed image format would reach the camera button after the next redraw. The
    server therefore writes every figure's toolbar settings to one store
    (:func:`graph_configs`), and a clientside callback (wired in ``__init__.py``) puts
    them on each figure's live plot at once and on its ``config`` for later redraws.
"""

from __future__ import annotations

import re
from typing import Any

from dash import dcc, no_update

from ...core.errors import RepgeomError
from ...export import ExportRequest, collect_export, export_bytes
from ...pipeline import Engine
from ..ids import GRAPH_IDS, ID
from ..layout import IMAGE_FORMATS, graph_config
from ..state import View
from .common import guarded, parse_view

__all__ = ["download", "export_request", "figure_filename", "graph_configs"]

#: A download's file name keeps at most this many characters (before the extension).
MAX_FILENAME = 120


def export_request(engine: Engine, data: Any) -> tuple[ExportRequest, str] | None:
    """The export of the view store ``data`` and its file name (``None`` before the page set a view).

    The export holds the RDMs of the tab's stimulus set, the path of the chosen models with
    the view's landmarks and hypotheses, the embeddings when the embeddings tab shows, and
    the difference RDM (with its mask) when A and B are chosen.
    """
    view = parse_view(engine, data)
    if view is None:
        return None
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


@guarded(2, 1)
def download(engine: Engine, data: Any) -> tuple:
    """``(dcc.Download data, message)``: the view's ``.npz`` export."""
    made = export_request(engine, data)
    if made is None:
        return no_update, no_update
    req, filename = made
    return dcc.send_bytes(export_bytes(collect_export(engine, req)), filename), ""


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
