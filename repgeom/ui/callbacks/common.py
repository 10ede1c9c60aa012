"""What every callback shares: the error guard, and parsers for what the browser sends.

Design notes:
    Any client can post any JSON to any callback, so every callback parses its inputs
    again here, whatever the page would have sent. A :class:`RepgeomError` is a user
    error and becomes a message in the page; anything else is a bug: its traceback goes
    to the log, the page gets a generic message, and the answer is kept out of the
    response cache.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dash import html, no_update

from ...core.errors import RepgeomError
from ...pipeline import Engine
from .. import views
from ..response_cache import do_not_replay
from ..state import MAX_LIST, View

__all__ = [
    "BUG_MESSAGE",
    "alert",
    "first_point",
    "guarded",
    "index",
    "marked_stimuli",
    "parse_block",
    "parse_indices",
    "parse_selection",
    "parse_view",
    "point_ref",
]

log = logging.getLogger(__name__)

#: What the page says when a callback hit a bug (the details go to the server log only).
BUG_MESSAGE = "Something went wrong while computing this view; the server log has the details."
#: Test-set indices above this are refused unread.
MAX_INDEX = 10**6
#: The most indices a highlight or group store, or a box selection, may hold.
MAX_POINTS = 100_000

F = TypeVar("F", bound=Callable[..., tuple])


def alert(text: str, kind: str = "error") -> html.Div:
    """A message box for the page (``kind``: ``"error"`` or ``"warning"``)."""
    return html.Div(text, className=f"message-box {kind}")


def guarded(n_outputs: int, message_at: int) -> Callable[[F], F]:
    """Turn user errors into a message in the page and bugs into a generic one (logged).

    Args:
        n_outputs: how many outputs the callback has.
        message_at: the position of its message output; the others are left as they are.

    Returns:
        A decorator for callbacks that return an ``n_outputs`` tuple.
    """

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> tuple:
            try:
                return fn(*args, **kwargs)
            except RepgeomError as exc:
                text = str(exc)
            except Exception:  # a bug: keep the traceback in the log, not in the page
                log.exception("callback %s failed", fn.__name__)
                do_not_replay()
                text = BUG_MESSAGE
            out: list[Any] = [no_update] * n_outputs
            out[message_at] = alert(text)
            return tuple(out)

        return wrapper  # type: ignore[return-value]

    return deco


def parse_view(engine: Engine, data: Any) -> View | None:
    """The validated view in a view store's ``data`` (``None`` before the page set one).

    Raises:
        RepgeomError: when ``data`` is not an object or holds a bad field.
    """
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise RepgeomError("the view settings must be an object")
    return View.parse(engine, data)


def parse_selection(data: Any) -> list[int]:
    """The selection store's test-set indices (the last two kept); anything malformed is an empty selection."""
    if not isinstance(data, list) or len(data) > MAX_LIST:
        return []
    kept = [int(x) for x in data if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < MAX_INDEX]
    return kept[-views.MAX_SELECTION :]


def parse_block(data: Any) -> views.BlockSelection | None:
    """The selected block in a selection store (see :class:`~repgeom.ui.views.BlockSelection`), or ``None``.

    Anything that is not such a block is ``None`` (a pair's list included): each side is a
    non-empty list of at most :data:`~repgeom.ui.views.MAX_BLOCK` whole numbers in
    ``[0, MAX_INDEX)`` (repeats dropped), and a node that is not a short string is dropped.
    """
    block = data.get("block") if isinstance(data, Mapping) else None
    if not isinstance(block, Mapping):
        return None
    sides = []
    for key in ("rows", "cols"):
        side = block.get(key)
        if not isinstance(side, list) or not 0 < len(side) <= views.MAX_BLOCK:
            return None
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < MAX_INDEX for x in side):
            return None
        sides.append(tuple(dict.fromkeys(side)))
    node = block.get("node")
    return views.BlockSelection(sides[0], sides[1], node if isinstance(node, str) and len(node) <= 200 else None)


def marked_stimuli(data: Any) -> list[int]:
    """The stimuli a selection store marks on the RDM maps: a pair, or one stimulus of each side of a block (which marks the block)."""
    block = parse_block(data)
    return [block.rows[0], block.cols[0]] if block is not None else parse_selection(data)


def parse_indices(data: Any, limit: int = MAX_POINTS) -> list[int] | None:
    """A store of image indices (a search's matches, an isolated group); ``None`` for anything else.

    Whole numbers in ``[0, MAX_INDEX)`` are kept, anything else in the list is dropped; a
    list longer than ``limit`` is refused unread.
    """
    if not isinstance(data, list) or len(data) > limit:
        return None
    return [int(x) for x in data if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < MAX_INDEX]


def point_ref(point: Mapping[str, Any]) -> tuple[int, str, str]:
    """``(image index, node, method)`` of an embedding point event (its ``customdata``).

    Raises:
        ValueError: when the point carries no such triple.
    """
    custom = point.get("customdata")
    if not isinstance(custom, list) or len(custom) != 3:
        raise ValueError("an embedding point carries [image index, node, method]")
    node, method = custom[1], custom[2]
    if not isinstance(node, str) or not isinstance(method, str) or len(node) > 200 or len(method) > 20:
        raise ValueError("an embedding point's node and method are short strings")
    return index(custom[0]), node, method


def first_point(event: Any) -> dict[str, Any] | None:
    """The first point of a Plotly click or hover event, or ``None`` for anything else."""
    if not isinstance(event, Mapping):
        return None
    points = event.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], Mapping):
        return None
    return dict(points[0])


def index(value: Any, upper: int = MAX_INDEX) -> int:
    """``value`` as an index in ``[0, upper)``.

    Raises:
        ValueError: for anything that is not a whole number in range (booleans included).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() or not 0 <= value < upper:
        raise ValueError(f"not an index below {upper}")
    return int(value)
