"""Layer-normalised recurrent cells (Ba, Kiros & Hinton 2016).

Layer normalisation over the feature axis keeps the recurrent pre-activations at a steady
scale, which steadies gradients over long sequences without batch statistics. Each cell keeps
the weight layout of its plain counterpart in `cells.py` and adds, through `add_layer_norm`,
the gain and shift of each normalisation it applies (`norm_gain`, `norm_shift`, ...).
`epsilon` defaults to Keras' 1e-3.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqcast.errors import SeqcastError
from seqcast.layers import _compiled
from seqcast.layers.base import Layer, Shape
from seqcast.layers.cells import Activation, RecurrentCell, States


# -- the layer-norm helper the cells compose ---------------------------------------------------
def add_layer_norm(cell: Layer, name: str, width: int) -> None:
    """Give `cell` a layer normalisation over `width` features: the parameters `{name}_gain`
    (ones) and `{name}_shift` (zeros), kept on the cell under those names."""
    cell.register_parameter(f"{name}_gain", nn.Parameter(torch.ones(width)))
    cell.register_parameter(f"{name}_shift", nn.Parameter(torch.zeros(width)))


def reset_layer_norm(cell: Layer, name: str) -> None:
    nn.init.ones_(getattr(cell, f"{name}_gain"))
    nn.init.zeros_(getattr(cell, f"{name}_shift"))


def layer_norm(cell: Layer, name: str, x: Tensor, epsilon: float) -> Tensor:
    r"""`cell`'s normalisation `name` over the last axis of x:
    :math:`\gamma \odot (x - \mathrm{mean}(x)) / \sqrt{\mathrm{var}(x) + \epsilon} + \beta`."""
    gain, shift = getattr(cell, f"{name}_gain"), getattr(cell, f"{name}_shift")
    return F.layer_norm(x, x.shape[-1:], gain, shift, epsilon)


def _check_epsilon(epsilon: Any) -> float:
    value = float(epsilon)
    if not value > 0:
        raise SeqcastError(f"`epsilon` must be a positive number, got {epsilon!r}")
    return value


# -- the cells ------------------------------------------------------------------------------------
class LayerNormSimpleRNNCell(RecurrentCell):
    r"""The Hands-on ML `LNSimpleRNNCell`: a linear SimpleRNN step, layer norm, then the
    activation.

    .. math::  s_t = x_t W_{ih}^T + b + h_{t-1} W_{hh}^T, \quad
               h_t = \mathrm{act}(\gamma \odot \mathrm{LN}(s_t) + \beta)

    Parameters: F*H + H*H + H + 2H (the notes' count: SimpleRNNCell + LayerNormalization).
    """

    gates = 1

    def __init__(
        self,
        units: int,
        activation: Activation = "tanh",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__(units, activation, use_bias, dropout, recurrent_dropout)
        self.epsilon = _check_epsilon(epsilon)

    def kernel(self) -> str | None:
        name = self.activation_name
        return f"ln_simple_rnn_{name}" if name in _compiled.ACTIVATIONS else None

    def build(self, input_shape: Shape) -> None:
        add_layer_norm(self, "norm", self.units)
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        reset_layer_norm(self, "norm")

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        s = z + self._recurrent(states[0], rmask)
        h = self.activation(layer_norm(self, "norm", s, self.epsilon))
        return h, [h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


class LayerNormLSTMCell(RecurrentCell):
    r"""LSTM with the input and recurrent projections normalised separately, and the cell state
    normalised before it is carried (as TensorFlow Addons' `LayerNormLSTMCell`):

    .. math::
        z &= \mathrm{LN}_x(x_t W_{ih}^T) + \mathrm{LN}_h(h_{t-1} W_{hh}^T) + b \\
        c_t &= \mathrm{LN}_c(\sigma(z_f) \odot c_{t-1} + \sigma(z_i) \odot \mathrm{act}(z_g)) \\
        h_t &= \sigma(z_o) \odot \mathrm{act}(c_t)

    σ is `recurrent_activation` (sigmoid), act is `activation` (tanh). LN_x and LN_h act over
    all 4H features. Parameters: those of LSTMCell plus 2(4H + 4H + H). State: [h, c].
    """

    gates = 4

    def __init__(
        self,
        units: int,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__(
            units, activation, use_bias, dropout, recurrent_dropout, recurrent_activation
        )
        self.epsilon = _check_epsilon(epsilon)

    @property
    def state_size(self) -> tuple[int, int]:
        return (self.units, self.units)

    def build(self, input_shape: Shape) -> None:
        add_layer_norm(self, "input_norm", 4 * self.units)
        add_layer_norm(self, "recurrent_norm", 4 * self.units)
        add_layer_norm(self, "state_norm", self.units)
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data[self.units : 2 * self.units] = 1.0  # Keras' unit_forget_bias
        for name in ("input_norm", "recurrent_norm", "state_norm"):
            reset_layer_norm(self, name)

    def project_inputs(self, x: Tensor) -> Tensor:
        z = layer_norm(self, "input_norm", F.linear(x, self.weight_ih), self.epsilon)
        return z if self.bias is None else z + self.bias

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        act, gate = self.activation, self.recurrent_activation
        h, c = states
        z = z + layer_norm(self, "recurrent_norm", self._recurrent(h, rmask), self.epsilon)
        zi, zf, zg, zo = z.chunk(4, dim=-1)
        c = layer_norm(self, "state_norm", gate(zf) * c + gate(zi) * act(zg), self.epsilon)
        h = gate(zo) * act(c)
        return h, [h, c]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
        }


class LayerNormGRUCell(RecurrentCell):
    r"""GRU (reset_after form) with the input and recurrent projections normalised separately:

    .. math::
        x &= \mathrm{LN}_x(x_t W_{ih}^T) + b, \quad a = \mathrm{LN}_h(h_{t-1} W_{hh}^T) \\
        r &= \sigma(x_r + a_r), \quad z = \sigma(x_z + a_z),
        \quad n = \mathrm{act}(x_n + r \odot a_n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    σ is `recurrent_activation` (sigmoid), act is `activation` (tanh). LN_x and LN_h act over
    all 3H features; the recurrent norm's shift plays the part of GRUCell's b_hh, so there is
    one bias. Parameters: F*3H + H*3H + 3H + 2(3H + 3H).
    """

    gates = 3

    def __init__(
        self,
        units: int,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__(
            units, activation, use_bias, dropout, recurrent_dropout, recurrent_activation
        )
        self.epsilon = _check_epsilon(epsilon)

    def build(self, input_shape: Shape) -> None:
        add_layer_norm(self, "input_norm", 3 * self.units)
        add_layer_norm(self, "recurrent_norm", 3 * self.units)
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in ("input_norm", "recurrent_norm"):
            reset_layer_norm(self, name)

    def project_inputs(self, x: Tensor) -> Tensor:
        z = layer_norm(self, "input_norm", F.linear(x, self.weight_ih), self.epsilon)
        return z if self.bias is None else z + self.bias

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        act, gate = self.activation, self.recurrent_activation
        h = states[0]
        xr, xz, xn = z.chunk(3, dim=-1)
        a = layer_norm(self, "recurrent_norm", self._recurrent(h, rmask), self.epsilon)
        ar, az, an = a.chunk(3, dim=-1)
        r, u = gate(xr + ar), gate(xz + az)
        h = (1 - u) * act(xn + r * an) + u * h
        return h, [h]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
        }
