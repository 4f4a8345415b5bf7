"""1-D convolutions over time with Keras semantics: Conv1D, WaveNet, receptive_field.

Inputs are batch-first (B, T, F); kernels use Keras' layout (kernel_size, in_features, filters).
Output lengths follow Keras (TensorFlow) exactly:

    valid:  floor((T - d*(k-1) - 1) / s) + 1
    same:   ceil(T / s)        (zeros split as TF does: the extra one goes on the right)
    causal: ceil(T / s)        (d*(k-1) zeros on the left, then a valid convolution)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqcast.errors import (
    SeqcastError,
    check_choice,
    check_input_3d,
    check_positive_int,
    format_shape,
)
from seqcast.layers import activations
from seqcast.layers.base import Layer, Shape
from seqcast.layers.core import activation_name, glorot_uniform_

__all__ = ["Conv1D", "WaveNet", "receptive_field", "conv_output_length"]

PADDINGS = ("valid", "same", "causal")


def conv_output_length(
    length: int | None, kernel_size: int, strides: int, padding: str, dilation_rate: int
) -> int | None:
    """Number of output steps of a Keras Conv1D on `length` input steps (None stays None)."""
    if length is None:
        return None
    if padding == "valid":
        return (length - dilation_rate * (kernel_size - 1) - 1) // strides + 1
    return -(-length // strides)  # same, causal: ceil(T / s)


class Conv1D(Layer):
    """1-D convolution over time, as Keras' `Conv1D`: (B, T, F) -> (B, T', filters).

    `y[t'] = activation(bias + sum_i x_padded[t'*s + i*d] @ kernel[i])` for i in 0..k-1, where
    k = `kernel_size`, s = `strides`, d = `dilation_rate`, and `x_padded` is the input padded
    with zeros as `padding` says (see the module docstring for T'). With `padding="causal"` the
    output at step t depends only on inputs at steps <= t (WaveNet's building block).

    Parameters: `kernel` (k, F, filters), glorot_uniform; `bias` (filters,), zeros.
    Count k*F*filters + filters (Conv1D(20, 4) on 1 feature: 100).

    `receptive_field` is d*(k-1) + 1: the number of input steps one output step sees.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: str = "valid",
        dilation_rate: int = 1,
        activation: str | Callable | None = None,
        use_bias: bool = True,
    ) -> None:
        super().__init__()
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.dilation_rate = check_positive_int("dilation_rate", dilation_rate)
        if self.strides > 1 and self.dilation_rate > 1:
            raise SeqcastError(
                f"Conv1D: strides > 1 together with dilation_rate > 1 is not supported "
                f"(Keras rejects it too), got strides={strides}, dilation_rate={dilation_rate}; "
                "use strides=1 with dilation, or dilation_rate=1 with strides"
            )
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.in_features: int | None = None
        self.register_parameter("kernel", None)
        self.register_parameter("bias", None)

    @property
    def receptive_field(self) -> int:
        return self.dilation_rate * (self.kernel_size - 1) + 1

    @property
    def causal(self) -> bool:
        return self.padding == "causal" and self.strides == 1

    # -- shapes ---------------------------------------------------------------------------------
    def _check_input(self, shape: Shape) -> None:
        check_input_3d(shape, self.in_features, "Conv1D")
        steps = shape[1]
        if self.padding == "valid" and steps is not None and steps < self.receptive_field:
            raise SeqcastError(
                f"Conv1D: input has {steps} time steps but Conv1D(kernel_size={self.kernel_size}, "
                f"dilation_rate={self.dilation_rate}) with padding='valid' needs at least "
                f"{self.receptive_field}; give longer windows or use padding='same' or 'causal'"
            )

    def _pads(self, steps: int) -> tuple[int, int]:
        """Zeros to add on the (left, right) of `steps` input steps."""
        span = self.receptive_field
        if self.padding == "causal":
            return span - 1, 0
        if self.padding == "valid":
            return 0, 0
        out = -(-steps // self.strides)
        total = max((out - 1) * self.strides + span - steps, 0)
        return total // 2, total - total // 2

    def build(self, input_shape: Shape) -> None:
        shape = tuple(input_shape)
        self._check_input(shape)
        if shape[2] is None:
            raise SeqcastError(
                f"Conv1D: the feature count (last axis) must be known to build, "
                f"got input shape {format_shape(shape)}"
            )
        self.in_features = int(shape[2])
        k, f_in, f_out = self.kernel_size, self.in_features, self.filters
        self.kernel = nn.Parameter(torch.empty(k, f_in, f_out))
        glorot_uniform_(self.kernel, k * f_in, k * f_out)
        if self.use_bias:
            self.bias = nn.Parameter(torch.zeros(f_out))
        super().build(shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        self._check_input(shape)
        steps = conv_output_length(
            shape[1], self.kernel_size, self.strides, self.padding, self.dilation_rate
        )
        return (shape[0], steps, self.filters)

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(tuple(x.shape))
        left, right = self._pads(x.shape[1])
        x = x.transpose(1, 2)  # (B, T, F) -> (B, F, T)
        if left or right:
            x = F.pad(x, (left, right))
        weight = self.kernel.permute(2, 1, 0)  # (k, F, filters) -> (filters, F, k)
        y = F.conv1d(x, weight, self.bias, stride=self.strides, dilation=self.dilation_rate)
        return self._act(y.transpose(1, 2))  # (B, filters, T') -> (B, T', filters)

    def get_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": activation_name(self.activation, "Conv1D"),
            "use_bias": self.use_bias,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, filters={self.filters}, "
            f"kernel_size={self.kernel_size}, strides={self.strides}, padding={self.padding!r}, "
            f"dilation_rate={self.dilation_rate}, "
            f"activation={activations.name_of(self.activation)!r}, use_bias={self.use_bias}"
        )


def _check_rates(rates: Iterable[int]) -> tuple[int, ...]:
    rates = tuple(rates)
    bad = [r for r in rates if isinstance(r, bool) or not isinstance(r, int) or r <= 0]
    if not rates or bad:
        raise SeqcastError(
            f"`dilation_rates` must be a non-empty list of positive integers, got {list(rates)}"
        )
    return rates


class WaveNet(Layer):
    """Causal dilated convolutions (van den Oord et al. 2016): (B, T, F) -> (B, T, filters).

    Plain (the default; Hands-on ML chapter 15): one `Conv1D(filters, kernel_size,
    padding="causal", activation=activation, dilation_rate=rate)` per rate, in sequence; the
    first takes the F input features. Keras' equivalent is that list of Conv1D layers, with the
    same parameter count (WaveNet(20) on 1 feature: 5,800).

    `gated=True`: each block computes `tanh(conv_f(x)) * sigmoid(conv_g(x))` (two causal dilated
    convolutions; `activation` is not used). Both run as one Conv1D of 2*filters channels whose
    first half is the filter and second half the gate.

    `residual=True`: the input is first projected to `filters` channels by a 1x1 Conv1D (only
    when F != filters); each block's output z adds a 1x1 projection of itself to the block input
    (`x = x + res(z)`) and a separate 1x1 projection to a skip sum; the output is the skip sum.
    The last block has no residual projection (nothing would use it).

    Every output step t depends only on inputs at steps <= t; `receptive_field` is
    1 + sum(rate * (kernel_size - 1)) (WaveNet(20) with (1, 2, 4, 8) * 2: 31).
    """

    causal = True

    def __init__(
        self,
        filters: int,
        kernel_size: int = 2,
        dilation_rates: Sequence[int] = (1, 2, 4, 8) * 2,
        activation: str | Callable | None = "relu",
        gated: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.dilation_rates = _check_rates(dilation_rates)
        self.activation = activation
        activations.get(activation)  # validate the name now
        self.gated = bool(gated)
        self.residual = bool(residual)
        self.in_features: int | None = None
        width = 2 * filters if self.gated else filters
        act = None if self.gated else activation
        self.convs = nn.ModuleList(
            Conv1D(width, kernel_size, padding="causal", activation=act, dilation_rate=rate)
            for rate in self.dilation_rates
        )
        self.register_module("input_proj", None)  # a 1x1 Conv1D, made in build when needed
        n_skip = len(self.dilation_rates) if self.residual else 0
        self.res_convs = nn.ModuleList(Conv1D(filters, 1) for _ in range(max(n_skip - 1, 0)))
        self.skip_convs = nn.ModuleList(Conv1D(filters, 1) for _ in range(n_skip))

    @property
    def receptive_field(self) -> int:
        return 1 + sum(rate * (self.kernel_size - 1) for rate in self.dilation_rates)

    def _check_input(self, shape: Shape) -> None:
        check_input_3d(shape, self.in_features, "WaveNet")

    def build(self, input_shape: Shape) -> None:
        shape = tuple(input_shape)
        self._check_input(shape)
        if shape[2] is None:
            raise SeqcastError(
                f"WaveNet: the feature count (last axis) must be known to build, "
                f"got input shape {format_shape(shape)}"
            )
        self.in_features = int(shape[2])
        batch, steps = shape[0], shape[1]
        inner = (batch, steps, self.filters)
        first = shape
        if self.residual and self.in_features != self.filters:
            self.input_proj = Conv1D(self.filters, 1)
            self.input_proj.build(shape)
            first = inner
        for i, conv in enumerate(self.convs):
            conv.build(first if i == 0 else inner)
        for proj in (*self.res_convs, *self.skip_convs):
            proj.build(inner)
        super().build(shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        self._check_input(shape)
        return (shape[0], shape[1], self.filters)

    def _block(self, conv: Conv1D, x: torch.Tensor) -> torch.Tensor:
        y = conv(x)
        if not self.gated:
            return y
        f, g = y.chunk(2, dim=-1)  # (B, T, 2*filters) -> 2 x (B, T, filters)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(tuple(x.shape))
        if not self.residual:
            for conv in self.convs:
                x = self._block(conv, x)
            return x
        if self.input_proj is not None:
            x = self.input_proj(x)  # (B, T, F) -> (B, T, filters)
        skips = None
        for i, conv in enumerate(self.convs):
            z = self._block(conv, x)
            skip = self.skip_convs[i](z)
            skips = skip if skips is None else skips + skip
            if i < len(self.res_convs):
                x = x + self.res_convs[i](z)
        return skips

    def get_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rates": list(self.dilation_rates),
            "activation": activation_name(self.activation, "WaveNet"),
            "gated": self.gated,
            "residual": self.residual,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, filters={self.filters}, "
            f"kernel_size={self.kernel_size}, dilation_rates={self.dilation_rates}, "
            f"activation={activations.name_of(self.activation)!r}, gated={self.gated}, "
            f"residual={self.residual}, receptive_field={self.receptive_field}"
        )


def receptive_field(layers: Iterable[Any]) -> int:
    """Input steps seen by one output step of `layers` applied in sequence.

    `1 + sum_i (rf_i - 1) * prod(strides of the layers before i)`, where rf_i is each layer's
    `receptive_field` (Conv1D, WaveNet; 1 for per-step layers such as Dense and Dropout).
    Conv1D(kernel_size=4, strides=2) then Conv1D(kernel_size=3): 1 + 3 + 2*2 = 8.
    """
    total, jump = 1, 1
    for layer in layers:
        field = getattr(layer, "receptive_field", None)
        if not isinstance(field, int):
            raise SeqcastError(
                f"receptive_field: {type(layer).__name__} has no receptive field over time; "
                "pass only Conv1D, WaveNet and per-step layers (Dense, Dropout, LayerNormalization)"
            )
        total += (field - 1) * jump
        jump *= getattr(layer, "strides", 1)
    return total
