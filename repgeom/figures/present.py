"""Any figure made ready for a projector: large type, no small print, a colour-blind-safe palette.

Design notes:
    Presentation mode restyles finished figures instead of threading a theme through every
    builder: type sizes are raised to at least :data:`MIN_FONT_PX` wherever a figure sets
    one (layout, titles, annotations, axes, colour bars, legend, sliders, buttons), ``<sup>``
    small print is written at full size, and the colours the builders take from
    :data:`~.style.CLASS_COLORS` and :data:`~.style.MODEL_PALETTE` are swapped for the
    Okabe-Ito palette (plus a marker shape per class, so classes differ by more than hue).
    A model's own manifest colour is kept. Figures up to :data:`FILL_MAX_PX` tall drop their
    height, so the page can stretch them over the screen; a grid already fitted to the screen
    (``keep_height``) keeps its height, its larger margins taken from its panels.
"""

from __future__ import annotations

import copy
from typing import Any

import plotly.graph_objects as go

from .style import CLASS_COLORS, MODEL_PALETTE, TITLE_GAP_PX, title_pad, wrap_title

__all__ = ["CLASS_SYMBOLS", "FILL_MAX_PX", "MIN_FONT_PX", "OKABE_ITO", "for_projector"]

#: The smallest type on a projected figure, in px (at 1920 × 1080).
MIN_FONT_PX = 18
#: Okabe & Ito's colour-blind-safe palette (yellow left out: too pale on white), then two dark greys.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#8C6D00", "#555555", "#999999")
#: A marker shape per class, so that classes also differ by shape.
CLASS_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "star", "pentagon", "hexagon")
#: Figures at most this tall fill the screen in presentation mode; taller ones (grids of many rows) keep their height.
FILL_MAX_PX = 900

# a colour in both palettes takes its class's swap, so ten classes keep ten colours
_COLOURS = {c.lower(): OKABE_ITO[k] for k, c in enumerate(MODEL_PALETTE)} | {c.lower(): OKABE_ITO[k] for k, c in enumerate(CLASS_COLORS)}
_SYMBOLS = {c.lower(): CLASS_SYMBOLS[k] for k, c in enumerate(CLASS_COLORS)}


def _big(font: Any, at_least: int = MIN_FONT_PX) -> dict[str, Any]:
    out = dict(font or {})
    out["size"] = max(int(out.get("size") or 0), at_least)
    return out


def _plain(text: Any) -> Any:
    return text.replace("<sup>", "").replace("</sup>", "") if isinstance(text, str) else text


def _title(title: Any, at_least: int) -> Any:
    if title is None:
        return None
    out = dict(title) if isinstance(title, dict) else {"text": title}
    out["text"] = _plain(out.get("text"))
    out["font"] = _big(out.get("font"), at_least)
    return out


#: A line of text is this many times its font size tall.
_LINE = 1.3
#: Most characters of a projected title's line: its 24 px type across a 1366 px screen's figure.
PRESENT_TITLE_CHARS = 80


def _rows(layout: dict[str, Any]) -> int:
    """How many rows of panels the layout's y axes stand in."""
    starts = {round(float(v["domain"][0]), 3) for k, v in layout.items() if k.startswith("yaxis") and isinstance(v, dict) and v.get("domain")}
    return max(len(starts), 1)


def _top_panel_titles(annotations: list[dict[str, Any]]) -> int:
    """Pixels the top row's panel titles (``make_subplots``' titles: above y = 1 of the plot area) take, at their projected size."""
    tall = [
        (str(a.get("text", "")).count("<br>") + 1) * _LINE * max(int((a.get("font") or {}).get("size") or 0), MIN_FONT_PX)
        for a in annotations
        if a.get("yref") == "paper" and a.get("yanchor") == "bottom" and float(a.get("y", 0)) >= 0.999
    ]
    return round(max(tall, default=0))


#: Pixels of a projected legend entry besides its text (the symbol and the gap to the next entry).
_ENTRY_PX = 50
#: The width a projected top legend's line holds: a 1366 px screen's figure, less its margins.
_LEGEND_LINE_PX = 1150
#: Pixels of one line of a projected horizontal legend (18 px type, its symbols and gaps).
_LEGEND_ROW_PX = 34


def _entries(data: list[dict[str, Any]]) -> list[str]:
    """The names a figure's legend lists: one per shown trace, or per legend group."""
    seen: dict[str, str] = {}
    for trace in data:
        if trace.get("showlegend") is False or (trace.get("showlegend") is None and len(data) < 2):
            continue
        name = str(trace.get("name") or "")
        seen.setdefault(str(trace.get("legendgroup") or name), name)
    return list(seen.values())


def _top_legend(layout: dict[str, Any], data: list[dict[str, Any]]) -> int:
    """Move a legend at Plotly's default place (a column right of the plot) into lines at the figure's top; its height in px.

    A filled screen's plot is as short as 290 px at 1366 × 768, where a column of ten
    classes at projected type needs a scrollbar; lines across the top need none. The title
    is padded down below them. Nothing moves (0) for a legend the builder placed itself,
    or one that is hidden.
    """
    legend = layout.get("legend", {})
    names = _entries(data)
    if layout.get("showlegend") is False or not names or any(k in legend for k in ("x", "y", "orientation")):
        return 0
    title = legend.get("title", {}).get("text") if isinstance(legend.get("title"), dict) else None
    width = sum(_ENTRY_PX + 0.6 * MIN_FONT_PX * len(n) for n in names) + (0.6 * MIN_FONT_PX * len(str(title)) + 10 if title else 0)
    rows = -(-int(width) // _LEGEND_LINE_PX)
    layout["legend"] = {**legend, "orientation": "h", "x": 0, "xanchor": "left", "xref": "paper", "y": 1, "yanchor": "top", "yref": "container"}
    return TITLE_GAP_PX + rows * _LEGEND_ROW_PX


def _colorbar(bar: dict[str, Any]) -> dict[str, Any]:
    bar = dict(bar)
    bar["tickfont"] = _big(bar.get("tickfont"))
    if "title" in bar:
        bar["title"] = _title(bar["title"], MIN_FONT_PX)
    return bar


def _trace(trace: dict[str, Any]) -> dict[str, Any]:
    trace = copy.deepcopy(trace)
    for part in ("marker", "line"):
        style = trace.get(part)
        colour = style.get("color") if isinstance(style, dict) else None
        if isinstance(colour, str) and colour.lower() in _COLOURS:
            if part == "marker" and colour.lower() in _SYMBOLS and "symbol" not in style:
                style["symbol"] = _SYMBOLS[colour.lower()]
            style["color"] = _COLOURS[colour.lower()]
            if part == "marker" and isinstance(style.get("size"), (int, float)):
                style["size"] = max(style["size"], 9)
    for key in ("textfont", "insidetextfont", "outsidetextfont"):
        if key in trace:
            trace[key] = _big(trace[key])
    if isinstance(trace.get("colorbar"), dict):
        trace["colorbar"] = _colorbar(trace["colorbar"])
    if trace.get("type") == "heatmap" or "colorbar" in trace:
        trace.setdefault("colorbar", {})
        trace["colorbar"] = _colorbar(trace["colorbar"])
    if "hoverlabel" in trace:
        trace["hoverlabel"] = {**trace["hoverlabel"], "font": _big(trace["hoverlabel"].get("font"))}
    return trace


def _layout(layout: dict[str, Any], data: list[dict[str, Any]], keep_height: bool = False) -> dict[str, Any]:
    layout = copy.deepcopy(layout)
    layout["font"] = _big(layout.get("font"))
    top = None  # the top margin the title and the top row's panel titles need, when the title is at the figure's top
    if "title" in layout:
        layout["title"] = _title(layout["title"], MIN_FONT_PX + 6)
        if isinstance(layout["title"].get("text"), str):  # its small print is now full size: break it again to the screen's width
            layout["title"]["text"] = wrap_title(layout["title"]["text"], PRESENT_TITLE_CHARS)
        if layout["title"].get("yref") == "container":
            size = layout["title"]["font"]["size"]
            lines = str(layout["title"].get("text")).count("<br>") + 1
            legend_px = _top_legend(layout, data)  # a default-placed legend moves into lines above the title
            pad = title_pad(size, lines) + legend_px
            layout["title"]["pad"] = {"t": pad}
            top = pad + round(_LINE * size * lines) + TITLE_GAP_PX + _top_panel_titles(layout.get("annotations", []))
    layout["hoverlabel"] = {**layout.get("hoverlabel", {}), "font": _big(layout.get("hoverlabel", {}).get("font"))}
    layout["legend"] = {**layout.get("legend", {}), "font": _big(layout.get("legend", {}).get("font"))}
    if isinstance(layout["legend"].get("title"), dict):
        layout["legend"]["title"] = _title(layout["legend"]["title"], MIN_FONT_PX)
    for key, value in list(layout.items()):
        if key.startswith(("xaxis", "yaxis")) and isinstance(value, dict):
            value["tickfont"] = _big(value.get("tickfont"))
            if "title" in value:
                value["title"] = _title(value["title"], MIN_FONT_PX)
        elif key.startswith("coloraxis") and isinstance(value, dict) and isinstance(value.get("colorbar"), dict):
            value["colorbar"] = _colorbar(value["colorbar"])
    for note in layout.get("annotations", []):
        note["text"] = _plain(note.get("text"))
        note["font"] = _big(note.get("font"))
    for slider in layout.get("sliders", []):
        slider["font"] = _big(slider.get("font"))
        slider["currentvalue"] = {**slider.get("currentvalue", {}), "font": _big(slider.get("currentvalue", {}).get("font"))}
    for menu in layout.get("updatemenus", []):
        menu["font"] = _big(menu.get("font"))
    margin = layout.get("margin")
    if isinstance(margin, dict):  # room for the larger type
        layout["margin"] = {k: int(v * 1.3) if isinstance(v, (int, float)) else v for k, v in margin.items()}
    if top is not None:
        layout["margin"] = {**layout.get("margin", {}), "t": max(int(layout.get("margin", {}).get("t", 0)), top)}
    height = layout.get("height")
    if isinstance(height, (int, float)) and not keep_height:
        if height <= FILL_MAX_PX and _rows(layout) == 1:  # rows of panels squeezed into a short screen would run into each other
            layout.pop("height")
            layout["autosize"] = True
        else:
            layout["height"] = int(height * 1.3)
    return layout


def for_projector(fig: go.Figure, keep_height: bool = False) -> go.Figure:
    """``fig`` restyled for a projector (a new figure; ``fig`` is left as it is).

    Args:
        fig: any figure the dashboard draws.
        keep_height: keep the figure's height as it is (a grid laid out to fit the screen's
            height), instead of filling the screen or growing with the larger type.

    Returns:
        The same traces and frames with every font at least :data:`MIN_FONT_PX` px,
        ``<sup>`` small print at full size, palette colours swapped for :data:`OKABE_ITO`
        (class markers also get a shape from :data:`CLASS_SYMBOLS`), and no fixed height for
        a figure up to :data:`FILL_MAX_PX` px tall (unless ``keep_height``).
    """
    spec = fig.to_plotly_json()
    frames = [
        {
            **f,
            "data": [_trace(t) for t in f.get("data", [])],
            **({"layout": {**f["layout"], "title": _title(f["layout"]["title"], MIN_FONT_PX + 6)}} if "title" in f.get("layout", {}) else {}),
        }
        for f in spec.get("frames", [])
    ]
    return go.Figure(data=[_trace(t) for t in spec["data"]], layout=_layout(spec["layout"], spec["data"], keep_height), frames=frames, skip_invalid=False)
