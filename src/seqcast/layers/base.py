"""`Layer`: a torch.nn.Module that builds its parameters from the first input shape it sees.

Keras builds a layer when it first learns its input shape; seqcast does the same so that
`LSTM(20)` needs no input size. `Sequential` builds every layer up front from `input_shape`,
so no lazy parameter remains by the time an optimiser is made.

Shapes are tuples whose unknown entries (batch, often time) are None.

Every concrete layer class is registered by name, so a saved model can be loaded from its
config (`serialize` / `deserialize`). seqcast's own classes come first: a class defined
elsewhere may not take the name of one of them.

Masks travel as in Keras: `Masking` attaches a (batch, time) boolean mask to the tensor it
returns (`mask_of`), layers that support masking pass it on to their output (`compute_mask`),
and the recurrent layers skip the masked steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError

Shape = tuple[int | None, ...]

_BUILTIN: dict[str, type[Layer]] = {}  # seqcast's own layer classes, by name
_CUSTOM: dict[str, type[Layer]] = {}  # layer classes defined outside seqcast, by name

_MASK_ATTRIBUTE = "_seqcast_mask"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_builtin(cls: type) -> bool:
    return cls.__module__ == "seqcast" or cls.__module__.startswith("seqcast.")


def _register(cls: type[Layer]) -> None:
    name = cls.__name__
    builtin = _BUILTIN.get(name)
    same = builtin is not None and _qualified(builtin) == _qualified(cls)  # a module reloaded
    if builtin is not None and not same:
        kind = "another seqcast layer" if _is_builtin(cls) else "seqcast's built-in layer"
        raise SeqcastError(
            f"layer class {_qualified(cls)} has the name of {kind} {_qualified(builtin)}; "
            "loading a saved model finds layers by class name, so give it another name"
        )
    (_BUILTIN if _is_builtin(cls) else _CUSTOM)[name] = cls


def registered_layers() -> dict[str, type[Layer]]:
    """seqcast's own concrete layer classes by name (those imported so far)."""
    return dict(_BUILTIN)


def mask_of(x: Any) -> Tensor | None:
    """The (batch, time) boolean mask attached to `x` by `Masking` (or passed on by the layers
    after it), or None."""
    return getattr(x, _MASK_ATTRIBUTE, None) if isinstance(x, Tensor) else None


def with_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """`x` with `mask` attached (see `mask_of`); x itself when mask is None."""
    if mask is not None:
        setattr(x, _MASK_ATTRIBUTE, mask)
    return x


class Layer(nn.Module):
    """Base of every seqcast layer.

    Subclasses implement `build(input_shape)` (create parameters, then call `super().build`),
    `compute_output_shape(input_shape)`, `forward` and `get_config()`, and declare what they
    guarantee: `causal`, `deterministic`, `supports_masking`. A base class that is not a layer
    of its own is declared with `class Base(Layer, abstract=True)` and is not registered.
    """

    #: True for layers that run a recurrence over time (what `Bidirectional` accepts).
    is_recurrent: ClassVar[bool] = False
    #: Whether output step t depends on input steps <= t only (one output step per input step;
    #: False for layers whose output has no time axis).
    causal: bool = False
    #: Whether the layer honours a mask on its input; see `compute_mask` for what it passes on.
    supports_masking: bool = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not abstract:
            _register(cls)

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
        out = super().__call__(x, *args, **kwargs)
        mask = mask_of(x)
        if mask is not None:
            if not self.supports_masking:
                warnings.warn(
                    f"{type(self).__name__} got an input with a mask (from Masking) but does "
                    "not support masking: the layers after it see no mask",
                    stacklevel=2,
                )
            elif isinstance(out, Tensor) and mask_of(out) is None:
                with_mask(out, self.compute_mask(x, mask))
        return out

    def compute_mask(self, x: Tensor, mask: Tensor) -> Tensor | None:
        """The mask of the output, given the input's: the same by default (per-step layers)."""
        return mask

    # -- introspection --------------------------------------------------------------------------
    @property
    def deterministic(self) -> bool:
        """Whether the same input and weights give the same output in training mode as well
        (no dropout draw): true when every sublayer is."""
        return all(layer.deterministic for layer in _sublayers(self))

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


def _sublayers(module: nn.Module) -> Iterator[Layer]:
    """The outermost layers inside `module`, through plain containers such as ModuleList."""
    for child in module.children():
        if isinstance(child, Layer):
            yield child
        else:
            yield from _sublayers(child)


def serialize(layer: Layer) -> dict[str, Any]:
    """`{"class_name", "config", "input_shape"}` for a layer; see `deserialize`."""
    return {
        "class_name": type(layer).__name__,
        "config": layer.get_config(),
        "input_shape": list(layer.input_shape) if layer.input_shape is not None else None,
    }


def deserialize(spec: dict[str, Any]) -> Layer:
    """Rebuild a layer from `serialize`'s output (built when the input shape was known).
    seqcast's own classes are looked up first, then classes defined elsewhere."""
    name = spec.get("class_name")
    cls = _BUILTIN.get(name) or _CUSTOM.get(name)
    if cls is None:
        raise SeqcastError(
            f"unknown layer class {name!r} in a model config; a layer class defined outside "
            "seqcast must be imported before the model is loaded"
        )
    layer = cls.from_config(dict(spec.get("config", {})))
    if spec.get("input_shape") is not None:
        layer.build(tuple(spec["input_shape"]))
    return layer
