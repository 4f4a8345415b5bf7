"""`Layer`: a torch.nn.Module that builds its parameters from the first input shape it sees.

Keras builds a layer when it first learns its input shape; seqcast does the same so that
`LSTM(20)` needs no input size. `Sequential` builds every layer up front from `input_shape`,
so no lazy parameter remains by the time an optimiser is made.

Shapes are tuples whose unknown entries (batch, often time) are None.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from seqcast.errors import SeqcastError

Shape = tuple[int | None, ...]

_REGISTRY: dict[str, type[Layer]] = {}


class Layer(nn.Module):
    """Base of every seqcast layer.

    Subclasses implement `build(input_shape)` (create parameters, then call `super().build`),
    `compute_output_shape(input_shape)`, `forward` and `get_config()`.
    """

    #: True for layers that run a recurrence over time (what `Bidirectional` accepts).
    is_recurrent: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self) -> None:
        super().__init__()
        self.built = False
        self.input_shape: Shape | None = None

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape: Shape) -> None:
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.built:
            if not isinstance(x, torch.Tensor):
                raise SeqcastError(
                    f"{type(self).__name__}: expected a torch.Tensor input, got {type(x).__name__}"
                )
            self.build(tuple(x.shape))
            if x.is_floating_point():
                self.to(device=x.device, dtype=x.dtype)
        return super().__call__(x, *args, **kwargs)

    # -- introspection --------------------------------------------------------------------------
    def count_params(self) -> int:
        """Number of scalar parameters, as Keras counts them."""
        if not self.built:
            raise SeqcastError(
                f"{type(self).__name__} is not built yet, so its parameter count is unknown; "
                "call it on an input or put it in a Sequential with an input_shape"
            )
        return sum(p.numel() for p in self.parameters())

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values: `type(self)(**get_config())` rebuilds it."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)


def serialize(layer: Layer) -> dict[str, Any]:
    """`{"class_name", "config", "input_shape"}` for a layer; see `deserialize`."""
    return {
        "class_name": type(layer).__name__,
        "config": layer.get_config(),
        "input_shape": list(layer.input_shape) if layer.input_shape is not None else None,
    }


def deserialize(spec: dict[str, Any]) -> Layer:
    """Rebuild a layer from `serialize`'s output (built when the input shape was known)."""
    name = spec.get("class_name")
    if name not in _REGISTRY:
        raise SeqcastError(f"unknown layer class {name!r} in a model config")
    layer = _REGISTRY[name].from_config(dict(spec.get("config", {})))
    if spec.get("input_shape") is not None:
        layer.build(tuple(spec["input_shape"]))
    return layer
