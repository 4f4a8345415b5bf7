"""Activations by name, as Keras spells them, or any callable."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from seqcast.errors import SeqcastError


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.hardsigmoid(x)


_BY_NAME: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": _linear,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "swish": F.silu,
    "silu": F.silu,
    "hard_sigmoid": _hard_sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=-1),
}

NAMES = tuple(_BY_NAME)


def get(activation: str | Callable | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function for `activation`: a name from `NAMES`, None (linear) or a callable."""
    if activation is None:
        return _linear
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation in _BY_NAME:
        return _BY_NAME[activation]
    raise SeqcastError(
        f"unknown activation {activation!r}; expected one of {', '.join(NAMES)}, None or a callable"
    )


def name_of(activation: str | Callable | None) -> str | None:
    """The name to store in a config, or None for a callable that has no name here."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    for name, fn in _BY_NAME.items():
        if fn is activation:
            return name
    return None
