"""The one set of validators for untrusted values: browser payloads, flags, environment variables, manifests.

Each returns the value in its proper type or raises :class:`~repgeom.core.errors.RepgeomError`
with a one-line message naming the field and what is allowed. Values are never echoed in
full: a long string or a big list is described, not repeated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import RepgeomError, choice_error

__all__ = ["check_choice", "check_float", "check_int", "shown"]


def shown(value: Any) -> str:
    """A short description of an untrusted value for a message (never the repr of a huge one)."""
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    return repr(value)[:40]


def check_int(what: str, value: Any, lo: int, hi: int, unit: str = "") -> int:
    """A whole number in ``[lo, hi]``.

    Accepts ints (numpy's too), floats with no fractional part, and strings of digits
    (from flags, the environment or a URL); rejects booleans.

    Args:
        what: the field's name, for the message.
        value: the untrusted value.
        lo: smallest allowed.
        hi: largest allowed.
        unit: words after "whole number" in the message, e.g. ``"of seconds"``.

    Raises:
        RepgeomError: "WHAT must be a whole number [UNIT] from LO to HI, got ...".
    """
    given = value
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    elif hasattr(value, "__index__") and not isinstance(value, (bool, int)):
        try:
            value = int(value.__index__())
        except TypeError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        kind = f"whole number {unit}" if unit else "whole number"
        raise RepgeomError(f"{what} must be a {kind} from {lo} to {hi}, got {shown(given)}")
    return value


def check_float(what: str, value: Any, lo: float, hi: float) -> float:
    """A finite number in ``[lo, hi]`` (strings of a number accepted; booleans rejected).

    Raises:
        RepgeomError: "WHAT must be a number from LO to HI, got ...".
    """
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RepgeomError(f"{what} must be a number from {lo:g} to {hi:g}, got {shown(value)}") from None
    if isinstance(value, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise RepgeomError(f"{what} must be a number from {lo:g} to {hi:g}, got {shown(value)}")
    return v


def check_choice(what: str, value: Any, allowed: Sequence[str]) -> str:
    """One of ``allowed``.

    Raises:
        RepgeomError: "unknown WHAT ...; allowed: a, b, c".
    """
    if not isinstance(value, str) or value not in allowed:
        raise choice_error(what, value if isinstance(value, str) else type(value).__name__, allowed)
    return value
