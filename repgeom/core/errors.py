"""The one exception type that reaches users.

Design notes:
    Anything a user can get wrong (a model name, a node name, a number out of range,
    a bad checkpoint) raises :class:`RepgeomError` with a one-line message that says
    what was wrong and what is allowed. The CLI prints that line and exits 2; the
    dashboard shows it in the page. Everything else is a bug and keeps its traceback
    in the logs.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CheckpointError", "RepgeomError", "choice_error"]


class RepgeomError(ValueError):
    """A user-facing error: the message is one line saying what is allowed."""


class CheckpointError(RepgeomError):
    """A checkpoint was refused (hash mismatch, truncated, unsafe, wrong architecture)."""


def choice_error(what: str, got: object, allowed: Iterable[object]) -> RepgeomError:
    """Build the standard "unknown X; allowed: a, b, c" error.

    Args:
        what: the kind of thing chosen, e.g. ``"model"``.
        got: what the user gave.
        allowed: the valid choices, in the order to list them.

    Returns:
        A :class:`RepgeomError` to raise.
    """
    choices = ", ".join(str(a) for a in allowed)
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    return RepgeomError(f"unknown {what} {shown}; allowed: {choices}")
