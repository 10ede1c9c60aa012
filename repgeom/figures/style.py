"""Shared look: a colour-blind-safe digit palette, model colours, and a base layout."""

from __future__ import annotations

from typing import Any

__all__ = ["DIGIT_COLORS", "METRIC_LABELS", "MODEL_COLORS", "base_layout", "frame_slider", "model_color", "play_menu"]

#: Ten digits, colour-blind safe: Paul Tol's "muted" scheme (9 colours) plus its pale grey's darker sibling.
DIGIT_COLORS = (
    "#332288",  # 0 indigo
    "#88CCEE",  # 1 cyan
    "#44AA99",  # 2 teal
    "#117733",  # 3 green
    "#999933",  # 4 olive
    "#DDCC77",  # 5 sand
    "#CC6677",  # 6 rose
    "#882255",  # 7 wine
    "#AA4499",  # 8 purple
    "#777777",  # 9 grey
)

#: The seed's model colours (feedforward blue, recurrent yellow, robust green, new seed cyan), colour-blind safe shades.
MODEL_COLORS = {
    "feedforward": "#0077BB",
    "recurrent": "#EE9900",
    "robust": "#009944",
    "feedforward_seed2": "#33BBEE",
}
_EXTRA = ("#EE3377", "#CC3311", "#555555", "#AA4499")

#: Colour-bar titles named after the real metric.
METRIC_LABELS = {
    "correlation": "correlation distance (1 − r)",
    "euclidean": "squared Euclidean distance / D",
    "cosine": "cosine distance (1 − cos)",
}


def model_color(model: str, index: int = 0) -> str:
    """A stable colour for ``model``."""
    return MODEL_COLORS.get(model, _EXTRA[index % len(_EXTRA)])


def base_layout(**overrides: Any) -> dict[str, Any]:
    """Layout defaults shared by every figure (white template, compact margins, readable fonts)."""
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "margin": {"l": 50, "r": 30, "t": 60, "b": 50},
        "font": {"size": 13},
        "hoverlabel": {"font": {"size": 13}},
    }
    layout.update(overrides)
    return layout


def play_menu(duration: int) -> dict:
    """Play/pause buttons for a figure's frames, placed left of a slider made by :func:`frame_slider`."""
    return {
        "type": "buttons",
        "direction": "left",
        "x": 0.0,
        "y": 0,
        "xanchor": "left",
        "yanchor": "top",
        "pad": {"r": 10, "t": 70},
        "showactive": False,
        "buttons": [
            {"label": "▶ play", "method": "animate", "args": [None, {"frame": {"duration": duration, "redraw": True}, "transition": {"duration": duration // 2}, "fromcurrent": True, "mode": "immediate"}]},
            {"label": "❚❚ pause", "method": "animate", "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]},
        ],
    }


def frame_slider(labels: list[str], active: int, prefix: str, redraw: bool = True, x: float = 0.0, length: float = 1.0, lead: float = 0.2) -> dict:
    """A slider with one step per frame name; its first ``lead`` of ``length`` is left to the play buttons."""
    steps = [
        {"label": label, "method": "animate", "args": [[label], {"mode": "immediate", "frame": {"duration": 0, "redraw": redraw}, "transition": {"duration": 0}}]}
        for label in labels
    ]
    return {"active": active, "steps": steps, "currentvalue": {"prefix": prefix}, "x": x + lead * length, "len": (1 - lead) * length, "y": 0, "yanchor": "top", "pad": {"t": 50, "b": 10}}
