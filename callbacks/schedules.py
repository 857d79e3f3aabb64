"""Open-loop schedules: pure `schedule(epoch) -> float` functions, and their string specs.

Specs (what `run-mnist --strength` accepts besides `adaptive` and `off`):

- `constant:X`
- `linear:START:END:EPOCHS` (ramp from START to END over EPOCHS, then hold)
- `cosine:START:END:EPOCHS` (half cosine from START to END, then hold)
- `step:V1,V2,...:EVERY` (V1 for EVERY epochs, then V2, ...; the last holds)

Example:

>>> schedule = parse_schedule("linear:0.1:0.8:20")
>>> round(schedule(0), 3), round(schedule(10), 3), schedule(30)
(0.1, 0.45, 0.8)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from augpipe.validation import check_int


class Schedule:
    """A pure function of the epoch, with the spec that rebuilds it."""

    def __init__(self, fn: Callable[[int], float], spec: str):
        self._fn = fn
        self.spec = spec

    def __call__(self, epoch: int) -> float:
        return float(self._fn(int(epoch)))

    def __repr__(self):
        return f"Schedule({self.spec!r})"


def _check_epochs(epochs, what="epochs"):
    return check_int(what, epochs)


def constant(value: float) -> Schedule:
    value = float(value)
    return Schedule(lambda epoch: value, f"constant:{value:g}")


def linear(start: float, end: float, epochs: int) -> Schedule:
    """Linear ramp from `start` (epoch 0) to `end` (epoch `epochs`), then hold."""
    _check_epochs(epochs)
    start, end = float(start), float(end)
    return Schedule(
        lambda epoch: start + (end - start) * min(epoch, epochs) / epochs,
        f"linear:{start:g}:{end:g}:{epochs}",
    )


def cosine(start: float, end: float, epochs: int) -> Schedule:
    """Half-cosine from `start` to `end` over `epochs`, then hold."""
    _check_epochs(epochs)
    start, end = float(start), float(end)
    return Schedule(
        lambda epoch: end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)),
        f"cosine:{start:g}:{end:g}:{epochs}",
    )


def step(values: Sequence[float], every: int) -> Schedule:
    """`values[0]` for `every` epochs, then `values[1]`, ...; the last value holds."""
    _check_epochs(every, "every")
    values = [float(v) for v in values]
    if not values:
        raise ValueError("Received: values=[]. Expected at least one value.")
    return Schedule(
        lambda epoch: values[min(epoch // every, len(values) - 1)],
        f"step:{','.join(f'{v:g}' for v in values)}:{every}",
    )


SPEC_HELP = "constant:X, linear:START:END:EPOCHS, cosine:START:END:EPOCHS or step:V1,V2,...:EVERY"


def parse_schedule(spec: str, *, value_range=(0.0, 1.0)) -> Schedule:
    """Parses a schedule spec and checks every value lies in `value_range`."""
    if not isinstance(spec, str):
        raise ValueError(f"Received: spec={spec!r}. Expected a string like {SPEC_HELP}.")
    kind, _, rest = spec.strip().partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "constant" and len(parts) == 1:
            schedule, values = constant(float(parts[0])), [float(parts[0])]
        elif kind in ("linear", "cosine") and len(parts) == 3:
            start, end, epochs = float(parts[0]), float(parts[1]), int(parts[2])
            builder = linear if kind == "linear" else cosine
            schedule, values = builder(start, end, epochs), [start, end]
        elif kind == "step" and len(parts) == 2:
            values = [float(v) for v in parts[0].split(",")]
            schedule = step(values, int(parts[1]))
        else:
            raise ValueError("wrong shape")
    except ValueError as error:
        detail = "" if str(error) == "wrong shape" else f" ({error})"
        raise ValueError(
            f"Invalid schedule spec {spec!r}{detail}. Expected {SPEC_HELP}."
        ) from None
    low, high = value_range
    for value in values:
        if not low <= value <= high:
            raise ValueError(
                f"Invalid schedule spec {spec!r}: value {value:g} is outside [{low:g}, {high:g}]."
            )
    return schedule
