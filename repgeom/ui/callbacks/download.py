"""Downloads: the view's arrays as ``.npz``, and the image format of every figure's camera button."""

from __future__ import annotations

from typing import Any

from dash import dcc, no_update

from ...export import ExportRequest, collect_export, export_bytes
from ...pipeline import Engine
from ..ids import GRAPH_IDS
from ..layout import IMAGE_FORMATS, graph_config
from .common import guarded, parse_view

__all__ = ["download", "export_request", "image_format"]


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


def image_format(value: Any) -> tuple:
    """Every figure's toolbar config for camera-button format ``value`` (PNG or SVG; anything else: no change)."""
    if value not in IMAGE_FORMATS:
        return tuple(no_update for _ in GRAPH_IDS)
    return tuple(graph_config(value) for _ in GRAPH_IDS)
