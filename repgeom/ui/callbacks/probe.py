"""The live probe tab: a drawn or uploaded image through the chosen model, bounded per client.

Design notes:
    The canvas (``assets/probe.js``) writes a PNG data URL into the probe image store
    when a stroke ends; an upload reaches the same store through :func:`take_upload`.
    :func:`probe_figures` then reads the image as untrusted bytes (PNG/JPEG only, bounded
    in bytes, sides and pixels before decoding: :mod:`repgeom.core.probe`), prepares it
    like the dataset's images and passes it through the view's model.

    Each image costs a decode and a forward pass, so a client may send only so many:
    :class:`RateLimit` is a token bucket per client address (``burst`` at once, then
    ``per_second``), one per app and so per server worker, holding at most
    ``max_clients`` addresses. A refusal is a message in the page and is kept out of the
    response cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from dash import no_update

from ...core.errors import RepgeomError
from ...core.probe import decode_data_url, prepare_image, read_image
from ...pipeline import Engine
from .. import views
from ..layout import PROBE_LIMITS
from ..response_cache import do_not_replay
from .common import guarded, parse_view

__all__ = ["DRAW_HINT", "RateLimit", "probe_figures", "take_upload"]

#: What the probe's figures say before an image arrives.
DRAW_HINT = "Draw a digit on the canvas (or upload a PNG/JPEG) to see it pass through the model."


class RateLimit:
    """A token bucket per client: ``burst`` requests at once, refilled at ``per_second``.

    Args:
        per_second: tokens added per second.
        burst: the bucket's size.
        max_clients: clients remembered (the least recently seen are forgotten first).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, per_second: float = 1.0, burst: int = 6, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = float(per_second)
        self.burst = int(burst)
        self._max = int(max_clients)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one token for ``client``; ``False`` when its bucket is empty."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return allowed

    def refusal(self) -> str:
        """The one-line message for a refused request."""
        return f"too many images from your address: at most {self.burst} at once, then {self.per_second:g} a second; wait a moment and draw again"


@guarded(2, 1)
def take_upload(engine: Engine, contents: Any) -> tuple:
    """``(probe image store, message)``: an upload's data URL, if it is a PNG or JPEG within the size bound.

    Only the data URL's header and length are checked here (cheaply); :func:`probe_figures`
    reads the image itself as untrusted bytes.
    """
    del engine  # every callback takes the engine first; an upload needs none
    if contents is None:
        return no_update, no_update
    decode_data_url(contents, PROBE_LIMITS)
    return contents, ""


@guarded(6, 5)
def probe_figures(engine: Engine, image: Any, data: Any, client: str = "", limiter: RateLimit | None = None) -> tuple:
    """``(image seen, note, probabilities, embedding, dissimilarity rows, message)`` for the probe image store and view.

    Args:
        engine: the engine.
        image: the probe image store: a PNG/JPEG data URL, or ``None`` before one is drawn.
        data: the view store.
        client: who sent it (the client's address), for ``limiter``.
        limiter: the per-client bound (``None``: unbounded, for tests and scripts).
    """
    view = parse_view(engine, data)
    if view is None or view.tab != "probe":
        return (no_update,) * 6
    if image is None:
        hint = views.note_figure(DRAW_HINT)
        return "", views.probe_note(engine, view.model), hint, views.note_figure(DRAW_HINT, 120), views.note_figure(DRAW_HINT, 120), ""
    if limiter is not None and not limiter.allow(client):
        do_not_replay()
        raise RepgeomError(limiter.refusal())
    pixels = prepare_image(read_image(decode_data_url(image, PROBE_LIMITS), PROBE_LIMITS), engine.dataset_of(view.model))
    out = views.probe_views(engine, view, pixels)
    return out.seen, out.note, *(views.presented(view, f) for f in (out.probabilities, out.embedding, out.rows)), ""
