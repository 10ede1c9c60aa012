"""The browser's window size, as the page reports it: bucketed, validated, and turned into a figure's size.

Design notes:
    A clientside callback (:func:`viewport_js`, run when the page loads and whenever the
    address changes) and a resize listener it installs write the window's size into the
    ``ID.VIEWPORT`` store, snapped down to one of a few :data:`WIDTHS` and :data:`HEIGHTS`.
    The grid views take that store as an input, so the size is part of every key that
    caches their answers (the response cache hashes the request body; a background job's
    request carries it) while a few buckets keep those caches small; a resize inside one
    bucket sends nothing. The server snaps again and gives anything malformed the
    :data:`DEFAULT` (any client may post any JSON): a bad size is never an error.

    The width of the main column is worked out here from the window's, mirroring
    ``assets/style.css`` (the sidebar and inspector columns, the breakpoint that moves the
    inspector below, presentation mode's single column): a figure builder gets plain pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT", "HEIGHTS", "MAX_SIDE_PX", "PRESENT_CHROME_PX", "WIDTHS", "Viewport", "parse_viewport", "viewport_js"]

#: Window widths the page reports (CSS px): its own width snapped down to one of these.
WIDTHS = (800, 1024, 1280, 1366, 1440, 1600, 1920, 2560, 3840)
#: Window heights the page reports, likewise.
HEIGHTS = (600, 720, 768, 900, 1080, 1200, 1440, 2160)
#: The largest side the server accepts; a larger (or non-integer) one gives the default.
MAX_SIDE_PX = 16_384

# What assets/style.css gives the columns around the main one (CSS px).
_SIDEBAR_PX = 270
_INSPECTOR_PX = 250
_NARROW_SIDEBAR_PX = 260  # below the breakpoint the inspector moves under the page
_BREAKPOINT_PX = 1100
_MAIN_PADDING_PX = 32  # .main: 1rem each side
_PRESENT_PADDING_PX = 16  # presentation mode: 0.5rem each side
_SCROLLBAR_PX = 16
#: Presentation mode: CSS px of the window above a view's first figure (header, tabs, the
#: figure's note) and below it, which a figure fitted to the screen leaves free.
PRESENT_CHROME_PX = 150


@dataclass(frozen=True)
class Viewport:
    """A browser window's size in CSS px (one of :data:`WIDTHS` × :data:`HEIGHTS`)."""

    width: int
    height: int

    def figure_width(self, mode: str) -> int:
        """The width of the main column's figures in display ``mode`` (``"explore"`` or ``"present"``)."""
        inner = self.width - _SCROLLBAR_PX
        if mode == "present":
            return inner - _PRESENT_PADDING_PX
        beside = _SIDEBAR_PX + _INSPECTOR_PX if self.width > _BREAKPOINT_PX else _NARROW_SIDEBAR_PX
        return max(inner - beside - _MAIN_PADDING_PX, 200)

    def figure_height(self, mode: str) -> int | None:
        """The height a grid must fit into: in presentation mode the window less the page above and below it, else ``None`` (the page scrolls)."""
        return max(self.height - PRESENT_CHROME_PX, 240) if mode == "present" else None

    def as_data(self) -> dict[str, int]:
        """The store's value for this size."""
        return {"width": self.width, "height": self.height}


#: The size assumed until the page reports one, and for anything malformed.
DEFAULT = Viewport(1366, 768)


def _snap(value: int, buckets: tuple[int, ...]) -> int:
    below = [b for b in buckets if b <= value]
    return below[-1] if below else buckets[0]


def parse_viewport(data: Any) -> Viewport:
    """The :class:`Viewport` in the store's ``data`` (``{"width", "height"}``, whole CSS px), snapped to the buckets.

    Anything else (missing, not whole numbers, booleans, below 1 or above
    :data:`MAX_SIDE_PX`) gives :data:`DEFAULT`.
    """
    if not isinstance(data, Mapping):
        return DEFAULT
    width, height = data.get("width"), data.get("height")
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE_PX:
            return DEFAULT
    return Viewport(_snap(width, WIDTHS), _snap(height, HEIGHTS))


#: The clientside callback ``(search, current) -> store`` (and, once, the resize listener
#: that writes the store with ``dash_clientside.set_props``); ``%(store)s`` is the store's id.
_JS = """
function (_search, current) {
    const widths = %(widths)s, heights = %(heights)s;
    const snap = (v, xs) => xs.reduce((got, x) => (v >= x ? x : got), xs[0]);
    const measure = () => ({ width: snap(window.innerWidth, widths), height: snap(window.innerHeight, heights) });
    const same = (a, b) => Boolean(a && b && a.width === b.width && a.height === b.height);
    if (!window.repgeomViewport) {
        window.repgeomViewport = { last: null, timer: null };
        window.addEventListener("resize", function () {
            const state = window.repgeomViewport;
            clearTimeout(state.timer);
            state.timer = setTimeout(function () {
                const now = measure();
                if (!same(now, state.last)) {
                    state.last = now;
                    window.dash_clientside.set_props(%(store)s, { data: now });
                }
            }, 250);
        });
    }
    const now = measure();
    window.repgeomViewport.last = now;
    return same(now, current) ? window.dash_clientside.no_update : now;
}
"""


def viewport_js(store_id: str) -> str:
    """:data:`_JS` for the store ``store_id``, with the buckets written in."""
    return _JS % {"widths": json.dumps(WIDTHS), "heights": json.dumps(HEIGHTS), "store": json.dumps(store_id)}

