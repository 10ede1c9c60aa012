"""Clicks select stimuli, the pair panel follows the selection, hovers show the images.

A cell of a block-mean RDM map (more stimuli than the map has cells) averages a block of
pairs, so a click on it selects that block (a :class:`~repgeom.ui.views.BlockSelection`),
not one of its pairs: the pair panel then gives the block's mean (the tooltip's value),
its spread and range at every node, and example images from both sides. A block is not
kept in the URL; a single pair is.

Embedding points carry ``[image index, node, method]`` (see
:data:`repgeom.figures.embedding.POINT_FIELDS`): a hover shows that image in that panel, a
click joins the selection and lists the point's nearest neighbours, a search rings the
points it names, and a box or lasso selection isolates its points in every panel.
"""

from __future__ import annotations

from typing import Any

from dash import html, no_update

from ...core.errors import RepgeomError
from ...pipeline import Engine
from .. import views
from ..ids import ID
from ..response_cache import do_not_replay
from .common import MAX_POINTS, alert, first_point, guarded, index, parse_block, parse_selection, parse_view, point_ref

__all__ = ["CLICKED", "HOVERED", "POINT_GRAPHS", "block_panel", "empty_pair", "hover", "isolate", "neighbours", "pair", "search", "select"]

#: The graphs whose clicks select stimuli and whose hovers fill the hover panel.
CLICKED = (ID.RDM_GRID, ID.RDM_SLIDER, ID.EMBED_GRID, ID.EMBED_ANIM)
HOVERED = CLICKED
#: The graphs of embedding points (clicks list neighbours, box and lasso selections isolate).
POINT_GRAPHS = (ID.EMBED_GRID, ID.EMBED_ANIM)
_HEATMAPS = (ID.RDM_GRID, ID.RDM_SLIDER)
#: Anything a malformed event can raise while it is read; such an event changes nothing.
_MALFORMED = (RepgeomError, TypeError, ValueError, AttributeError, IndexError)


def select(engine: Engine, trigger: Any, event: Any, current: Any, data: Any) -> Any:
    """The selection store after a click on graph ``trigger`` (or ``ID.CLEAR_SELECTION``).

    A heat-map cell replaces the selection with its two stimuli, or, when the map shows
    block means, with its block; a point joins the selection (the last two kept; a block
    is dropped).

    Args:
        engine: the engine.
        trigger: the id of the clicked graph, or ``ID.CLEAR_SELECTION``.
        event: that graph's ``clickData``.
        current: the selection store.
        data: the view store.

    Returns:
        A list of test-set indices, a block (:meth:`~repgeom.ui.views.BlockSelection.to_store`),
        or ``no_update`` for an event that cannot be read.
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
            x, y = index(point.get("x"), stim.n), index(point.get("y"), stim.n)
            curve = point.get("curveNumber") if trigger == ID.RDM_GRID else None
            panel = curve if isinstance(curve, int) and not isinstance(curve, bool) else None
            block = views.rdm_cell_block(engine, view, x, y, panel)
            if block is not None:
                return block.to_store()
            rows = views.rdm_cell_rows(engine, view, x, y)
            return views.update_selection(parse_selection(current), [int(stim.indices[r]) for r in rows], pair=True)
        test_index, _, _ = point_ref(point)
        return views.update_selection(parse_selection(current), [test_index], pair=False)
    except _MALFORMED:
        return no_update


@guarded(3, 1)
def pair(engine: Engine, selection: Any, data: Any) -> tuple:
    """``(pair figure, message, block panel)``: the selected pair's (or block's) dissimilarity at every node.

    Without a pair the figure is empty. The block panel is empty for a pair; for a block it
    says what the block holds (its mean, spread and range), how to pick single pairs, and
    shows example images of both sides.
    """
    view = parse_view(engine, data)
    if view is None:
        return no_update, no_update, no_update
    block = parse_block(selection)
    if block is not None:
        info = views.block_view(engine, view, block)
        return info.figure, "", block_panel(info)
    fig = views.pair_view(engine, view, parse_selection(selection))
    return (fig if fig is not None else empty_pair()), "", []


def block_panel(info: views.BlockInfo) -> html.Div:
    """The pair panel's text and images for a selected block."""
    cards = [
        html.Div([html.Img(src=src, alt=cap, className="stimulus-image"), html.Div(cap, className="caption")], className="stimulus-card")
        for src, cap in zip(info.images, info.captions, strict=True)
    ]
    return html.Div(
        [html.Div(info.summary, className="block-summary"), html.Div(info.hint, className="field-hint block-hint"), html.Div(cards, className="block-images")]
    )


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
            info = views.point_hover(engine, view, *point_ref(point))
    except _MALFORMED:
        return no_update
    cards = [
        html.Div([html.Img(src=src, alt=cap, className="stimulus-image"), html.Div(cap, className="caption")], className="stimulus-card")
        for src, cap in zip(info.images, info.captions, strict=False)
    ]
    return html.Div([*cards, html.Div(info.summary, className="hover-summary")])


def neighbours(engine: Engine, trigger: Any, event: Any, data: Any) -> Any:
    """The neighbours panel after a click on an embedding point: its nearest neighbours in feature space and on the plot.

    Returns:
        The panel's children (a message for a point that cannot be listed), or
        ``no_update`` for an event that cannot be read.
    """
    try:
        view = parse_view(engine, data)
        point = first_point(event)
        if view is None or point is None or trigger not in POINT_GRAPHS:
            return no_update
        ref = point_ref(point)
    except _MALFORMED:
        return no_update
    try:
        info = views.neighbours_view(engine, view, *ref)
    except RepgeomError as exc:
        do_not_replay()  # "not computed yet" holds only until the embeddings job has run
        return alert(str(exc), "warning")

    def cards(items: list[views.NeighbourCard], feature: bool) -> html.Div:
        out = []
        for c in items:
            if feature:
                said = f"lost on the plot: rank {c.plot_rank}" if c.lost else f"rank {c.plot_rank} on the plot"
            else:
                said = "not a feature neighbour" if c.lost else "a feature neighbour"
            cap = f"#{c.index} ({c.class_name}) · {c.distance:.3g} · {said}"
            out.append(
                html.Div(
                    [html.Img(src=c.image, alt=cap, className="stimulus-image"), html.Div(cap, className="caption")],
                    className="stimulus-card neighbour" + (" lost" if c.lost else ""),
                )
            )
        return html.Div(out, className="neighbour-list")

    return html.Div(
        [
            html.Div(
                [html.Img(src=info.image, alt=info.title, className="stimulus-image"), html.Div(info.title, className="caption")],
                className="neighbour-query",
            ),
            html.H4("Nearest in feature space (Euclidean distance of the node's features)"),
            cards(info.feature, True),
            html.H4("Nearest on the plot (2-D distance)"),
            cards(info.plot, False),
            html.Div(info.summary, className="hover-summary"),
        ]
    )


@guarded(2, 1)
def search(engine: Engine, text: Any, data: Any) -> tuple:
    """``(matches store, message)``: the embedded stimuli a search box names (class names or ``#index``).

    Args:
        engine: the engine.
        text: the search box's value.
        data: the view store.
    """
    view = parse_view(engine, data)
    if view is None:
        return no_update, no_update
    if text is None:
        return [], ""
    if not isinstance(text, str):
        raise RepgeomError("the search must be text: class names or #image indices, separated by commas")
    found, message = views.search_points(engine, view, text)
    return found, message


@guarded(2, 1)
def isolate(engine: Engine, trigger: Any, grid_selected: Any, anim_selected: Any, data: Any) -> tuple:
    """``(group store, message)`` after a box or lasso selection on an embedding panel, or the reset button.

    A selection's points become the group shown in every panel (the others dimmed);
    ``ID.GROUP_RESET`` shows every point again. A cleared or empty selection (a double
    click, or Plotly's own event when the job redraws the figure) changes nothing: the
    reset button is the one way back.

    Args:
        engine: the engine.
        trigger: the graph that reported the selection, or ``ID.GROUP_RESET``.
        grid_selected: the grid's ``selectedData``.
        anim_selected: the animation's ``selectedData``.
        data: the view store.
    """
    if trigger == ID.GROUP_RESET:
        return None, ""
    view = parse_view(engine, data)
    event = {ID.EMBED_GRID: grid_selected, ID.EMBED_ANIM: anim_selected}.get(trigger)
    if view is None or not isinstance(event, dict) or not isinstance(event.get("points"), list):
        return no_update, no_update
    points = event["points"]
    if len(points) > MAX_POINTS:
        raise RepgeomError(f"a selection holds at most {MAX_POINTS} points, got {len(points)}")
    refs = []
    for p in points:
        try:
            refs.append(point_ref(p) if isinstance(p, dict) else None)
        except _MALFORMED:
            refs.append(None)  # a ring around a point, or a forged point: not a stimulus
    found = [r for r in refs if r is not None]
    group = views.group_indices(engine, view, [r[0] for r in found])
    if not group:  # an empty box, or Plotly clearing its selection as the job redraws: nothing to isolate
        return no_update, no_update
    where = f" on the {views.METHOD_NAMES.get(found[0][2], found[0][2])} of {found[0][1]}"
    return group, f"{len(group)} points isolated{where}, shown in every panel; the others are dimmed."


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
