"""What every view's background job shares: progress reports and the notice after Cancel.

Design notes:
    A view whose answer is not ready is computed by a background job (a gate callback
    decides; see :func:`repgeom.pipeline.Engine.cached_only`). While the job runs, its
    panel shows a progress bar, what is being computed and a Cancel button. After Cancel
    the panel's notice says so and offers "Compute again", which makes the gate send the
    same request again. The notice goes away as soon as a new request is sent or the gate
    answers directly. A job refused by the server's bounds, or lost with its process, is
    reported in the view's message by the job manager (see
    :func:`repgeom.ui.background.notices_to`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from dash import no_update

from ...pipeline import Engine, NotCached
from ..state import View
from ..views import Progress
from .common import parse_view

__all__ = ["HIDDEN", "SHOWN", "cancelled_text", "cached_or_request", "notice", "reporter", "request_view"]

log = logging.getLogger(__name__)

#: The notice's style while hidden and while shown.
HIDDEN = {"display": "none"}
SHOWN = {"display": "flex"}


def reporter(set_progress: Callable[[tuple[str, str, str]], None]) -> Progress:
    """A :data:`~repgeom.ui.views.Progress` that feeds Dash's ``set_progress`` (value, max, text as strings).

    A progress update that cannot be stored (a full disk, a Redis error) is logged and the
    job goes on; Cancel, which the manager raises from inside ``set_progress`` as a
    ``BaseException``, still stops it.
    """

    def progress(done: int, total: int, what: str) -> None:
        try:
            set_progress((str(done), str(total), f"{done}/{total} · {what}" if done < total else what))
        except Exception as exc:  # noqa: BLE001 - progress is a courtesy: it must not fail the job
            log.warning("progress not recorded (%s)", type(exc).__name__)

    return progress


def cancelled_text(what: str) -> str:
    """The notice after Cancel."""
    return f"Cancelled: the {what} computation stopped before it finished."


def notice(trigger: Any, cancel_clicks: Any, what: str) -> tuple[dict[str, str], str]:
    """``(notice style, notice text)``: shown after a click on Cancel, hidden when a new request is sent or answered.

    Args:
        trigger: the id that fired (the Cancel button, the request store or the abandon store).
        cancel_clicks: the Cancel button's ``n_clicks``.
        what: the job's name as the notice says it ("path").
    """
    if trigger is not None and str(trigger).endswith("-cancel") and isinstance(cancel_clicks, int) and cancel_clicks > 0:
        return SHOWN, cancelled_text(what)
    return HIDDEN, ""


def cached_or_request(engine: Engine, view: View, compute: Callable[[], tuple], n_outputs: int, message_at: int) -> tuple:
    """A gate's answer: ``(*outputs, request, abandon)``.

    The view's outputs at once when ``compute`` finds everything cached, with a fresh
    ``abandon`` token (which cancels a job still running for an older view); else unchanged
    outputs with the message cleared and ``{"view": ...}``, the job's request.
    """
    try:
        with engine.cached_only():
            outputs = compute()
    except NotCached:
        waiting = [no_update] * n_outputs
        waiting[message_at] = ""
        return (*waiting, {"view": view.controls()}, no_update)
    return (*outputs, no_update, secrets.token_hex(8))


def request_view(engine: Engine, request: Any, tab: str) -> View | None:
    """The view a job's request names (parsed again: any client may post it), ``None`` unless it is ``tab``'s."""
    if not isinstance(request, Mapping):
        return None
    view = parse_view(engine, request.get("view"))
    return view if view is not None and view.tab == tab else None
