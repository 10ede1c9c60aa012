"""Shared look: class and model palettes, metric names, a base layout, and animation controls.

Design notes:
    Colours are picked here from counts and positions, never from names: a dataset's
    classes get :func:`class_colors` by label, a model gets its manifest colour or
    :func:`model_color` by its place among the loaded models.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLASS_COLORS",
    "COMPARE_LABELS",
    "CONTROLS_PAD",
    "DEFAULT_FIGURE_PX",
    "MAX_GRID_COLS",
    "MAX_PANEL_PX",
    "METRIC_LABELS",
    "MIN_FITTED_PX",
    "MIN_PANEL_PX",
    "MODEL_PALETTE",
    "STRESS_NAME",
    "GridFit",
    "base_layout",
    "class_colors",
    "frame_slider",
    "grid_fit",
    "grid_shape",
    "model_color",
    "model_colors",
    "path_basis",
    "play_menu",
    "title_pad",
    "wrap_label",
    "wrap_title",
]

#: Up to ten classes, colour-blind safe: Paul Tol's "muted" scheme (9 colours) plus a mid grey.
CLASS_COLORS = (
    "#332288",  # indigo
    "#88CCEE",  # cyan
    "#44AA99",  # teal
    "#117733",  # green
    "#999933",  # olive
    "#DDCC77",  # sand
    "#CC6677",  # rose
    "#882255",  # wine
    "#AA4499",  # purple
    "#777777",  # grey
)
#: More classes than that: evenly spaced samples of this continuous scale (its darkest and lightest ends left out).
_MANY_CLASSES_SCALE = "Turbo"

#: Model colours by position when the manifest gives none (colour-blind safe shades).
MODEL_PALETTE = ("#0077BB", "#EE9900", "#009944", "#33BBEE", "#EE3377", "#CC3311", "#555555", "#AA4499")


def class_colors(n: int) -> tuple[str, ...]:
    """One colour per class label ``0..n-1``.

    Up to ten classes get :data:`CLASS_COLORS`. More get ``n`` samples of a continuous
    scale, dealt out with a stride near ``n / 3`` so that neighbouring labels (adjacent
    blocks of an RDM, often related classes) get distant hues.

    Args:
        n: number of classes (at least 1).

    Returns:
        ``n`` CSS colours.
    """
    if n <= len(CLASS_COLORS):
        return CLASS_COLORS[: max(n, 0)]
    from plotly.colors import sample_colorscale

    samples = sample_colorscale(_MANY_CLASSES_SCALE, [0.05 + 0.9 * k / (n - 1) for k in range(n)])
    stride = next(s for s in range(max(2, round(n / 3)), n) if math.gcd(s, n) == 1)
    return tuple(samples[(k * stride) % n] for k in range(n))


def model_color(index: int, color: str | None = None) -> str:
    """``color`` (a model's manifest colour) when given, else the palette's colour at ``index``."""
    return color or MODEL_PALETTE[index % len(MODEL_PALETTE)]


def model_colors(models: Sequence[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour for each of ``models``: ``given[model]`` where present, else by the model's position."""
    given = given or {}
    return {m: model_color(k, given.get(m)) for k, m in enumerate(models)}


#: Colour-bar titles named after the real metric.
METRIC_LABELS = {
    "correlation": "correlation distance (1 − r)",
    "euclidean": "squared Euclidean distance / D",
    "cosine": "cosine distance (1 − cos)",
}


#: Short names of the path comparisons, each turned into an angle (the one-line definitions live in
#: :data:`repgeom.core.comparisons.COMPARISON_DEFINITIONS`).
COMPARE_LABELS = {
    "cosine": "cosine angle",
    "corr": "Pearson angle",
    "spearman": "Spearman angle",
    "cosine_cov": "whitened-cosine angle",
    "corr_cov": "whitened-correlation angle",
    "tau_a": "Kendall τ-a angle",
    "cka": "linear-CKA angle",
}
#: What every figure calls the misfit of a metric MDS.
STRESS_NAME = "Kruskal stress-1"


def path_basis(rdm_method: str, compare: str) -> str:
    """What a path's angles compare, in words: ``RDMs: <metric> · <comparison> (rad)``.

    Linear CKA compares the features' centred Gram matrices, not RDMs, so its RDM metric is not named.
    """
    what = "features' centred Gram matrices" if compare == "cka" else f"RDMs: {METRIC_LABELS.get(rdm_method, rdm_method)}"
    return f"{what} · {COMPARE_LABELS.get(compare, compare)} (rad)"


def base_layout(**overrides: Any) -> dict[str, Any]:
    """Layout defaults shared by every figure (white template, compact margins, readable fonts)."""
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "margin": {"l": 50, "r": 30, "t": 60, "b": 50},
        "font": {"size": 13},
        "hoverlabel": {"font": {"size": 13}},
    }
    layout.update(overrides)
    if isinstance(layout.get("title"), str):  # at the top of the figure, not centred in the margin, so subplot titles below it keep clear
        text = wrap_title(layout["title"])
        breaks = text.count("<br>")
        size = float(layout.get("font", {}).get("size", 13)) * TITLE_SCALE
        # Plotly lifts a multi-line title's first line by its cap height (0.7 em) above the anchor, out
        # of the figure (measured in Chromium: its box's top 5 px above the figure): pad it back down.
        pad = title_pad(size, breaks + 1)
        layout["title"] = {"text": text, "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": pad}}
        bottom = pad + round(1.2 * size) + breaks * round(1.25 * size)  # each further line is a <sup> line at about 0.7 em
        margin = dict(layout.get("margin") or {})
        margin["t"] = max(int(margin.get("t", 0)), bottom + TITLE_GAP_PX)
        layout["margin"] = margin
    return layout


#: Plotly's title font is the layout font times this.
TITLE_SCALE = 1.4
#: Pixels from the figure's top to its title's first line.
TITLE_PAD_PX = 12
#: Pixels between a title's last line and the plot area (or the panel titles above it).
TITLE_GAP_PX = 8
#: Most characters a title's line holds: at the title's 18 px a 720 px wide plot area (a 1366 px
#: window's main column, less the margins) holds about 70 of DejaVu Sans, Chromium's sans-serif on Linux.
TITLE_CHARS = 64
#: Most characters of a title's ``<sup>`` line (about 13 px; as many as a projected title line, where small print is full size).
SUP_CHARS = 80

_SUP = re.compile(r"<sup>([^<]*)</sup>")


def title_pad(size: float, lines: int) -> int:
    """Pixels from the figure's top to a title's anchor: Plotly lifts a multi-line title's first line by 0.7 em, padded back down."""
    return TITLE_PAD_PX + (round(0.7 * size) if lines > 1 else 0)


def wrap_title(text: str, chars: int = TITLE_CHARS, sup_chars: int = SUP_CHARS) -> str:
    """``text`` with each line broken (``<br>``) at spaces to at most ``chars`` characters (``sup_chars`` for a ``<sup>`` line).

    Plotly never wraps a title: a long one runs out of the figure, cut off on the right.
    A line holding other markup is left whole (a break must not fall inside a tag).
    """
    out = []
    for line in text.split("<br>"):
        small = _SUP.fullmatch(line)
        body, width = (small.group(1), sup_chars) if small else (line, chars)
        if "<" in body or len(body) <= width:
            out.append(line)
            continue
        parts = _pack(body, width)
        out += [f"<sup>{p}</sup>" for p in parts] if small else parts
    return "<br>".join(out)


def _pack(body: str, width: int) -> list[str]:
    """``body`` in lines of at most ``width`` characters, broken between its `` · `` parts where it can, else at spaces."""
    lines: list[str] = []
    for part in body.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines += textwrap.wrap(part, width, break_long_words=False, break_on_hyphens=False) or [part]
    return lines


#: Pixels below the plot area to the play buttons' row, and to the slider's row under it
#: (room for the x-axis tick labels and title above them): the buttons never cover the slider.
CONTROLS_PAD = (45, 95)
#: The smallest readable side of a grid panel, in CSS px: ten class names fit down it at 11 px,
#: and a panel title of 18 characters at 14 px fits across it. A grid has as many columns as
#: the width it is drawn in allows at this side (a narrow screen 2, 1366 px 3).
MIN_PANEL_PX = 180
#: The largest side of a grid panel while exploring (one or two nodes on a wide screen).
MAX_PANEL_PX = 440
#: Most panels a row while exploring: a wider screen gives larger panels instead (1920 px: 4).
MAX_GRID_COLS = 4
#: The width (CSS px) a grid is laid out for when none is given: the main column of a 1366 px
#: window, between the sidebar and the inspector, less a scroll bar.
DEFAULT_FIGURE_PX = 798
#: The smallest panel side of a grid fitted into a screen's height: a grid whose panels would be
#: smaller (an embedding grid of many nodes, three methods each) scrolls as when exploring.
MIN_FITTED_PX = 100


def grid_shape(k: int, max_cols: int = 3) -> tuple[int, int]:
    """``(rows, cols)`` for ``k`` panels wrapped into rows of at most ``max_cols``, as even as possible.

    Args:
        k: number of panels (at least 1).
        max_cols: most panels per row.

    Returns:
        The fewest rows that hold ``k`` panels, and the fewest columns that fill them
        (5 panels in rows of 3: 2 rows of 3 and 2; 22 panels: 8 rows of 3).
    """
    k = max(int(k), 1)
    rows = -(-k // max(int(max_cols), 1))
    return rows, -(-k // rows)


@dataclass(frozen=True)
class GridFit:
    """How a grid of panels is laid out.

    Attributes:
        rows: rows of blocks (a block is ``rows_per_block`` rows of panels, one per method).
        cols: panels per row.
        side: each panel's side in CSS px (the row height; the panels are square).
    """

    rows: int
    cols: int
    side: int


def grid_fit(
    k: int,
    width: int,
    chrome_x: int,
    gap_x: int,
    height: int | None = None,
    chrome_y: int = 0,
    gap_y: int = 0,
    rows_per_block: int = 1,
) -> GridFit:
    """Columns and panel side for ``k`` panels (or blocks of panels) drawn ``width`` px wide.

    Without ``height`` (exploring; the page scrolls): the most columns, up to
    :data:`MAX_GRID_COLS`, whose panels keep :data:`MIN_PANEL_PX` (at least one), each panel
    as wide as its column, up to :data:`MAX_PANEL_PX`. With ``height`` (a projector): the
    columns whose panels are largest while every row fits into ``height``, unless those
    panels would be under :data:`MIN_FITTED_PX` (then as without ``height``).

    Args:
        k: panels in the grid (nodes, for a grid of blocks).
        width: the figure's width in CSS px.
        chrome_x: px of the width that are not panels or gaps (margins, colour bar).
        gap_x: px between two columns.
        height: the figure's whole height in CSS px, or ``None`` when it may grow.
        chrome_y: px of the height that are not panels or gaps (title, legend, margins).
        gap_y: px between two rows of panels (room for titles).
        rows_per_block: rows of panels per row of blocks.

    Returns:
        The :class:`GridFit`; its rows are as even as :func:`grid_shape` makes them.
    """
    k = max(int(k), 1)
    usable = max(int(width) - chrome_x, 1)

    def across(cols: int) -> float:
        return (usable - (cols - 1) * gap_x) / cols

    if height is not None:
        best = GridFit(k, 1, 0)
        for c in range(1, k + 1):
            rows, cols = grid_shape(k, c)
            lines = rows * rows_per_block
            side = int(min(across(cols), (height - chrome_y - (lines - 1) * gap_y) / lines))
            if side > best.side:
                best = GridFit(rows, cols, side)
        if best.side >= MIN_FITTED_PX:
            return best
    cols = max([c for c in range(1, min(k, MAX_GRID_COLS) + 1) if across(c) >= MIN_PANEL_PX] or [1])
    rows, cols = grid_shape(k, cols)
    return GridFit(rows, cols, max(int(min(MAX_PANEL_PX, across(cols))), 1))


def wrap_label(text: str, width: int = 18) -> str:
    """``text`` broken into lines (``<br>``) of about ``width`` characters at ``.``, ``_``, space or ``/``.

    Node names such as ``readout.flatten`` stay whole up to ``width``; longer ones are
    broken after a separator (or, with none, every ``width`` characters) so that a panel
    title never runs into its neighbour's.
    """
    if len(text) <= width:
        return text
    lines: list[str] = []
    rest = text
    while len(rest) > width:
        cut = max(rest.rfind(sep, 1, width) for sep in "._ /")
        cut = cut + 1 if cut > 0 else width
        lines.append(rest[:cut])
        rest = rest[cut:]
    return "<br>".join([*lines, rest] if rest else lines)


def play_menu(duration: int, transition: int | None = None, x: float = 0.0, pad_top: int = 70, redraw: bool = True) -> dict:
    """Play/pause buttons for a figure's frames, placed left of a slider made by :func:`frame_slider`.

    Args:
        duration: milliseconds per frame.
        transition: milliseconds of the tween between frames (default half a frame). Use 0
            for figures with heat maps: Plotly tweens only scatter traces and leaves every
            other trace blank while a tween runs.
        x: the buttons' left edge (paper fraction).
        pad_top: pixels between the plot area's bottom and the buttons.
        redraw: whether each frame redraws the whole figure (needed when frames change a heat map).
    """
    tween = duration // 2 if transition is None else transition
    return {
        "type": "buttons",
        "direction": "left",
        "x": x,
        "y": 0,
        "xanchor": "left",
        "yanchor": "top",
        "pad": {"r": 10, "t": pad_top},
        "font": {"size": 13},
        "showactive": False,
        "buttons": [
            {
                "label": "▶ play",
                "method": "animate",
                "args": [
                    None,
                    {"frame": {"duration": duration, "redraw": redraw}, "transition": {"duration": tween}, "fromcurrent": True, "mode": "immediate"},
                ],
            },
            {"label": "❚❚ pause", "method": "animate", "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]},
        ],
    }


def frame_slider(
    labels: list[str], active: int, prefix: str, redraw: bool = True, x: float = 0.0, length: float = 1.0, lead: float = 0.2, pad_top: int = 50
) -> dict:
    """A slider with one step per frame name; its first ``lead`` of ``length`` is left to the play buttons.

    With ``lead=0`` the slider spans ``length`` and ``pad_top`` (pixels below the plot area)
    should put it under the buttons of :func:`play_menu`, in a row of its own.
    """
    steps = [
        {
            "label": label,
            "method": "animate",
            "args": [[label], {"mode": "immediate", "frame": {"duration": 0, "redraw": redraw}, "transition": {"duration": 0}}],
        }
        for label in labels
    ]
    return {
        "active": active,
        "steps": steps,
        "currentvalue": {"prefix": prefix, "font": {"size": 13}},
        "font": {"size": 12},
        "x": x + lead * length,
        "len": (1 - lead) * length,
        "y": 0,
        "yanchor": "top",
        "pad": {"t": pad_top, "b": 10},
    }
