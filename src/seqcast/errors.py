"""One exception family for every user error, and the helpers that word its messages.

Each message names the offending thing, what was expected, and (where there is one) the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "SeqcastError",
    "NotFittedError",
    "check_positive_int",
    "check_rate",
    "check_choice",
    "check_input_3d",
    "format_shape",
    "caller_stacklevel",
]

_LIBRARY = ("seqcast", "torch")


class SeqcastError(ValueError):
    """Bad input: a shape, value, file or option seqcast cannot use as given."""


class NotFittedError(SeqcastError):
    """An estimator was used before `fit`."""


def check_positive_int(name: str, value: Any) -> int:
    """`value` as an int, or a SeqcastError "`units` must be a positive integer, got 0"."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SeqcastError(f"`{name}` must be a positive integer, got {value!r}")
    return value


def check_rate(name: str, value: Any) -> float:
    """A dropout-like rate in [0, 1)."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise SeqcastError(f"`{name}` must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= rate < 1.0:
        raise SeqcastError(f"`{name}` must be in [0, 1), got {value!r}")
    return rate


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise SeqcastError(f"unknown {name} {value!r}; expected one of {listed}")
    return value


def check_input_3d(shape: tuple, features: int | None = None, layer: str = "layer") -> None:
    """Validate a (batch, time, features) input shape against a built feature count."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise SeqcastError(
            f"{layer}: expected input of shape (batch, time, features), got {format_shape(shape)}"
        )
    if shape[1] == 0:
        raise SeqcastError(
            f"{layer}: the time axis is empty (input shape {format_shape(shape)}); "
            "give at least one time step"
        )
    if features is not None and shape[2] is not None and shape[2] != features:
        raise SeqcastError(
            f"{layer}: expected {features} input features (the size it was built for), "
            f"got {shape[2]} in input of shape {format_shape(shape)}"
        )


def format_shape(shape: tuple) -> str:
    """`(None, 20, 1)` for a shape tuple: the one way every seqcast message prints a shape."""
    inner = ", ".join("None" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


class TrainingDivergedError(SeqcastError):
    """Training stopped because its loss (or its gradients) became non-finite or exploded far
    past the loss it started from; the model keeps the weights of its last good epoch. The
    CLI exits with code 3 for it."""


class CheckpointError(SeqcastError):
    """A training checkpoint is missing, unreadable, or was written by a different run (another
    model, other data or settings that shape the trajectory)."""


def caller_stacklevel() -> int:
    """The `stacklevel` for a `warnings.warn` made by the function calling this one that points
    at the first frame outside seqcast and torch (whose `nn.Module.__call__` runs layers): the
    user's line, however deep inside the library the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARY:
        frame, level = frame.f_back, level + 1
    return level
