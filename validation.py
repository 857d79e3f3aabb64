"""Argument checks shared by every augpipe library: one message style, one place.

Each check returns the validated value and raises ``ValueError`` in Keras'
style: what was received, what was expected.

>>> check_int("epochs", 3)
3
>>> check_unit("strength", 0.25)
0.25
>>> did_you_mean("mnst", ["mnist", "none"])
" Did you mean 'mnist'?"
"""

from __future__ import annotations

import difflib
import numbers
from typing import Iterable, Optional


def did_you_mean(value, choices: Iterable[str]) -> str:
    """A " Did you mean 'x'?" hint for the closest valid name, or an empty string."""
    guess = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" Did you mean {guess[0]!r}?" if guess else ""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1, maximum: Optional[int] = None) -> int:
    """Validates an integer in ``[minimum, maximum]`` (bools are refused) and returns it as an int."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        expected = f"an int in [{minimum}, {maximum}]" if maximum is not None else f"an int >= {minimum}"
        raise ValueError(f"Received: {name}={value!r}. Expected {expected}.")
    return int(value)


def _as_float(value) -> float:
    if isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def check_unit(name: str, value) -> float:
    """Validates a float in [0, 1] (a strength, a probability) and returns it."""
    number = _as_float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"Received: {name}={value!r}. Expected a float in [0, 1].")
    return number


def check_nonnegative(name: str, value) -> float:
    """Validates a finite or infinite float >= 0 and returns it."""
    number = _as_float(value)
    if not number >= 0.0:
        raise ValueError(f"Received: {name}={value!r}. Expected a float >= 0.")
    return number
