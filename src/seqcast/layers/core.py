"""Core layers with Keras semantics: Dense, Flatten, Dropout, LayerNormalization, RepeatVector,
Masking.

Weights use Keras' layout (`Dense.kernel` is (in_features, units)) and Keras' default
initialisers (glorot_uniform kernels, zero biases, ones/zeros for layer-norm gamma/beta), so
weights copied from a Keras model give the same outputs and parameter counts match Keras'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqcast.errors import SeqcastError, check_positive_int, check_rate, format_shape
from seqcast.layers import activations
from seqcast.layers.base import Layer, Shape, with_mask

__all__ = ["Dense", "Flatten", "Dropout", "LayerNormalization", "RepeatVector", "Masking"]


# -- helpers shared with conv.py ----------------------------------------------------------------
def glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    """Keras' glorot_uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)), in place."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-limit, limit)


def activation_name(activation: str | Callable | None, layer: str) -> str:
    """The activation's name for a config, or a SeqcastError for an unnamed callable."""
    name = activations.name_of(activation)
    if name is None:
        raise SeqcastError(
            f"{layer}: activation {activation!r} has no name, so it cannot be stored in a config; "
            f"pass one of {', '.join(activations.NAMES)} to make the layer saveable"
        )
    return name


def known_features(shape: Shape, layer: str) -> int:
    """The last axis of `shape`, which must be known to create weights."""
    if len(shape) < 2:
        raise SeqcastError(
            f"{layer}: expected input with a batch axis and a feature axis, "
            f"got {format_shape(shape)}"
        )
    if shape[-1] is None:
        raise SeqcastError(
            f"{layer}: the feature count (last axis) must be known to build, "
            f"got input shape {format_shape(shape)}"
        )
    return int(shape[-1])


def check_features(shape: Shape, expected: int | None, layer: str) -> None:
    """Raise when the last axis of `shape` is not the feature count the layer was built for."""
    if expected is not None and shape[-1] is not None and shape[-1] != expected:
        raise SeqcastError(
            f"{layer}: expected {expected} input features (the size it was built for), "
            f"got {shape[-1]} in input of shape {format_shape(shape)}"
        )


# -- layers -------------------------------------------------------------------------------------
class Dense(Layer):
    """Fully connected layer on the last axis: `activation(x @ kernel + bias)`.

    Like Keras' `Dense`, it acts on the last axis of an input of any rank >= 2, so
    (B, F) -> (B, units) and (B, T, F) -> (B, T, units) (the same weights at every time step).

    Parameters: `kernel` (F, units), glorot_uniform; `bias` (units,), zeros. Count F*units + units
    (Dense(10) on 20 features: 210).
    """

    #: Acts on each time step separately (see `seqcast.layers.conv.receptive_field`).
    receptive_field: ClassVar[int] = 1
    causal = True
    supports_masking = True

    def __init__(
        self, units: int, activation: str | Callable | None = None, use_bias: bool = True
    ) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.in_features: int | None = None
        self.register_parameter("kernel", None)
        self.register_parameter("bias", None)

    def build(self, input_shape: Shape) -> None:
        self.in_features = known_features(tuple(input_shape), "Dense")
        self.kernel = nn.Parameter(torch.empty(self.in_features, self.units))
        glorot_uniform_(self.kernel, self.in_features, self.units)
        if self.use_bias:
            self.bias = nn.Parameter(torch.zeros(self.units))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        known_features(shape, "Dense")
        check_features(shape, self.in_features, "Dense")
        return shape[:-1] + (self.units,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(tuple(x.shape), self.in_features, "Dense")
        if x.dim() == 3 and not x.is_contiguous() and x.permute(1, 2, 0).is_contiguous():
            return self._act(self._step_major(x))
        return self._act(F.linear(x, self.kernel.t(), self.bias))  # (..., F) -> (..., units)

    def _step_major(self, x: torch.Tensor) -> torch.Tensor:
        """x: a (B, T, F) view of (T, F, B) memory, as a compiled LSTM returns. One batched
        product in that layout, kernel^T (units, F) @ x_t (F, B) for every t, instead of a
        transposing copy to (B*T, F) rows (and another for the gradient); the output is a
        (B, T, units) view of (T, units, B) memory."""
        xs = x.permute(1, 2, 0)
        w = self.kernel.t().expand(xs.shape[0], -1, -1)
        if self.bias is None:
            y = torch.bmm(w, xs)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), w, xs)
        return y.permute(2, 0, 1)

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "activation": activation_name(self.activation, "Dense"),
            "use_bias": self.use_bias,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, units={self.units}, "
            f"activation={activations.name_of(self.activation)!r}, use_bias={self.use_bias}"
        )


class Flatten(Layer):
    """Flattens every non-batch axis: (B, d1, d2, ...) -> (B, d1*d2*...), as Keras' `Flatten`.

    On a window (B, T, F) this gives (B, T*F), so the output size depends on T: the number of time
    steps must be fixed (known when the model is built) and the same at every call.
    """

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        if len(shape) < 1:
            raise SeqcastError("Flatten: expected input with a batch axis, got shape ()")
        if any(s is None for s in shape[1:]):
            raise SeqcastError(
                f"Flatten: cannot compute the output size of input shape {format_shape(shape)}: "
                "Flatten needs a fixed number of time steps (and features); "
                "give input_shape=(window, features) instead of (None, features)"
            )
        return (shape[0], math.prod(shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        built = self.input_shape
        if built is not None and None not in built[1:] and tuple(x.shape[1:]) != built[1:]:
            raise SeqcastError(
                f"Flatten: built for input shape {format_shape((None, *built[1:]))}, "
                f"got {format_shape(tuple(x.shape))}; Flatten needs the same number of time steps "
                "at every call (the layer after it was sized for it)"
            )
        return x.reshape(x.shape[0], -1)  # (B, d1, d2, ...) -> (B, d1*d2*...)


class Dropout(Layer):
    """Inverted dropout, as Keras' `Dropout`: in training, zero each entry with probability `rate`
    and scale the rest by 1 / (1 - rate); in eval mode, the identity. Any shape in, same shape out.
    """

    receptive_field: ClassVar[int] = 1
    causal = True
    supports_masking = True

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = check_rate("rate", rate)

    @property
    def deterministic(self) -> bool:
        return self.rate == 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        return F.dropout(x, p=self.rate, training=True)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate}

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class LayerNormalization(Layer):
    """Layer normalisation over the last axis, as Keras' `LayerNormalization(axis=-1)`.

    `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, with mean and (biased) variance over
    the last axis of each position. Keras' default epsilon is 1e-3 (PyTorch's is 1e-5).
    Parameters: `gamma` (F,) ones when `scale`, `beta` (F,) zeros when `center`; 2*F with both.
    Any shape (..., F) in, same shape out.
    """

    receptive_field: ClassVar[int] = 1
    causal = True
    supports_masking = True

    def __init__(self, epsilon: float = 1e-3, center: bool = True, scale: bool = True) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        if not self.epsilon > 0:
            raise SeqcastError(f"`epsilon` must be a positive number, got {epsilon!r}")
        self.center = bool(center)
        self.scale = bool(scale)
        self.features: int | None = None
        self.register_parameter("gamma", None)
        self.register_parameter("beta", None)

    def build(self, input_shape: Shape) -> None:
        self.features = known_features(tuple(input_shape), "LayerNormalization")
        if self.scale:
            self.gamma = nn.Parameter(torch.ones(self.features))
        if self.center:
            self.beta = nn.Parameter(torch.zeros(self.features))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        check_features(shape, self.features, "LayerNormalization")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(tuple(x.shape), self.features, "LayerNormalization")
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale}

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, epsilon={self.epsilon}, "
            f"center={self.center}, scale={self.scale}"
        )


class RepeatVector(Layer):
    """Repeats a vector `n` times along a new time axis: (B, F) -> (B, n, F), as Keras'
    `RepeatVector`; the bridge from an encoder's final state to a decoder's input sequence.
    The output is a broadcast view of the input (no copy).
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = check_positive_int("n", n)

    def _check(self, shape: Shape) -> None:
        if len(shape) != 2:
            raise SeqcastError(
                "RepeatVector: expected input of shape (batch, features), "
                f"got {format_shape(shape)}; "
                "use return_sequences=False on the layer before it"
            )

    def build(self, input_shape: Shape) -> None:
        self._check(tuple(input_shape))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        self._check(shape)
        return (shape[0], self.n, shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(tuple(x.shape))
        return x.unsqueeze(1).expand(-1, self.n, -1)  # (B, F) -> (B, n, F)

    def get_config(self) -> dict[str, Any]:
        return {"n": self.n}

    def extra_repr(self) -> str:
        return f"n={self.n}"


class Masking(Layer):
    """Marks the time steps to skip, as Keras' `Masking`: a step whose features all equal
    `mask_value` is masked. (B, T, F) -> (B, T, F), the input with masked steps zeroed
    (x * mask), carrying the (B, T) boolean mask (True: the step counts) to the layers after
    it; the recurrent layers then skip the masked steps (see `seqcast.layers.RNN`).
    """

    receptive_field: ClassVar[int] = 1
    causal = True
    supports_masking = True

    def __init__(self, mask_value: float = 0.0) -> None:
        super().__init__()
        try:
            self.mask_value = float(mask_value)
        except (TypeError, ValueError):
            raise SeqcastError(f"`mask_value` must be a number, got {mask_value!r}") from None

    def _check(self, shape: Shape) -> None:
        if len(shape) != 3:
            raise SeqcastError(
                f"Masking: expected input of shape (batch, time, features), "
                f"got {format_shape(shape)}"
            )

    def build(self, input_shape: Shape) -> None:
        self._check(tuple(input_shape))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        self._check(tuple(input_shape))
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(tuple(x.shape))
        keep = (x != self.mask_value).any(dim=-1)  # (B, T)
        return with_mask(x * keep.unsqueeze(-1).to(x.dtype), keep)

    def get_config(self) -> dict[str, Any]:
        return {"mask_value": self.mask_value}

    def extra_repr(self) -> str:
        return f"mask_value={self.mask_value}"
