"""Clicks select stimuli, the pair panel follows the selection, hovers show the images."""

from __future__ import annotations

from typing import Any

from dash import html, no_update

from ...core.errors import RepgeomError
from ...pipeline import Engine
from .. import views
from ..ids import ID
from .common import first_point, guarded, index, parse_selection, parse_view

__all__ = ["CLICKED", "HOVERED", "empty_pair", "hover", "pair", "select"]

#: The graphs whose clicks select stimuli and whose hovers fill the hover panel.
CLICKED = (ID.RDM_GRID, ID.RDM_SLIDER, ID.EMBED_GRID, ID.EMBED_ANIM)
HOVERED = CLICKED
_HEATMAPS = (ID.RDM_GRID, ID.RDM_SLIDER)
#: Anything a malformed event can raise while it is read; such an event changes nothing.
_MALFORMED = (RepgeomError, TypeError, ValueError, AttributeError, IndexError)


def select(engine: Engine, trigger: Any, event: Any, current: Any, data: Any) -> Any:
    """The selection store after a click on graph ``trigger`` (or ``ID.CLEAR_SELECTION``).

    A heat-map cell replaces the selection with its two stimuli (the first of each block
    when the map shows block means); a point joins the selection (the last two kept).

    Args:
        engine: the engine.
        trigger: the id of the clicked graph, or ``ID.CLEAR_SELECTION``.
        event: that graph's ``clickData``.
        current: the selection store.
        data: the view store.

    Returns:
        A list of test-set indices, or ``no_update`` for an event that cannot be read.
    """
    if trigger == ID.CLEAR_SELECTION:
        return []
    try:
        view = parse_view(engine, data)
        point = first_point(event)
        if view is None or point is None or trigger not in CLICKED:
            return no_update
        if trigger in _HEATMAPS:
            stim = engine.stimuli(view.spec(engine, view.n_rdm))
            rows = views.rdm_cell_rows(engine, view, index(point.get("x"), stim.n), index(point.get("y"), stim.n))
            return views.update_selection(parse_selection(current), [int(stim.indices[r]) for r in rows], pair=True)
        test_index = index((point.get("customdata") or [None, None])[1])
        return views.update_selection(parse_selection(current), [test_index], pair=False)
    except _MALFORMED:
        return no_update


@guarded(2, 1)
def pair(engine: Engine, selection: Any, data: Any) -> tuple:
    """``(pair figure, message)``: the selected pair's dissimilarity at every node (an empty figure without a pair)."""
    view = parse_view(engine, data)
    if view is None:
        return no_update, no_update
    fig = views.pair_view(engine, view, parse_selection(selection))
    return (fig if fig is not None else empty_pair()), ""


def hover(engine: Engine, trigger: Any, event: Any, data: Any) -> Any:
    """The hover panel's children for a hover on graph ``trigger``: the images and what they are.

    Returns:
        Image cards and a summary line, or ``no_update`` for an event that cannot be read.
    """
    try:
        view = parse_view(engine, data)
        point = first_point(event)
        if view is None or point is None or trigger not in HOVERED:
            return no_update
        if trigger in _HEATMAPS:
            curve = point.get("curveNumber") if trigger == ID.RDM_GRID else None
            shown = point.get("z")
            info = views.rdm_hover(
                engine,
                view,
                index(point.get("x")),
                index(point.get("y")),
                curve if isinstance(curve, int) and not isinstance(curve, bool) else None,
                float(shown) if isinstance(shown, (int, float)) and not isinstance(shown, bool) else None,
            )
        else:
            custom = point.get("customdata")
            test_index = index(custom[1] if isinstance(custom, list) and len(custom) in (2, 3) else None)
            info = views.hover_info(engine, view, [test_index], "")
    except _MALFORMED:
        return no_update
    cards = [
        html.Div([html.Img(src=src, alt=cap, className="stimulus-image"), html.Div(cap, className="caption")], className="stimulus-card")
        for src, cap in zip(info.images, info.captions, strict=False)
    ]
    return html.Div([*cards, html.Div(info.summary, className="hover-summary")])


def empty_pair() -> dict[str, Any]:
    """The pair panel's figure when no pair is selected."""
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
