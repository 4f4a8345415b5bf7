"""Layer-normalised recurrent cells (Ba, Kiros & Hinton 2016).

Layer normalisation over the feature axis keeps the recurrent pre-activations at a steady
scale, which steadies gradients over long sequences without batch statistics. Each cell keeps
the weight layout of its plain counterpart in `cells.py` and adds the normalisation's gain and
shift. `epsilon` defaults to Keras' 1e-3.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqcast.layers import _compiled
from seqcast.layers.base import Shape
from seqcast.layers.cells import GRUCell, LSTMCell, RecurrentCell, SimpleRNNCell, States


def _layer_norm(x: Tensor, gain: Tensor, shift: Tensor, eps: float) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], gain, shift, eps)


class _NormParams:
    """Mixin: gain/shift pairs for `count` normalised vectors of `width` features each."""

    def _add_norms(self: Any, names: tuple[str, ...], width: int) -> None:
        for name in names:
            self.register_parameter(f"{name}_gain", nn.Parameter(torch.ones(width)))
            self.register_parameter(f"{name}_shift", nn.Parameter(torch.zeros(width)))

    def _norm(self: Any, name: str, x: Tensor) -> Tensor:
        gain, shift = getattr(self, f"{name}_gain"), getattr(self, f"{name}_shift")
        return _layer_norm(x, gain, shift, self.epsilon)

    def run_compiled_steps(self, x: Tensor, states: Any, rmask: Tensor | None) -> None:
        return None  # the normalised cells' kernels (where they have one) take the projection


class LayerNormSimpleRNNCell(_NormParams, SimpleRNNCell):
    r"""The Hands-on ML `LNSimpleRNNCell`: a linear SimpleRNN step, layer norm, then the
    activation.

    .. math::  s_t = x_t W_{ih}^T + b + h_{t-1} W_{hh}^T, \quad
               h_t = \mathrm{act}(\gamma \odot \mathrm{LN}(s_t) + \beta)

    Parameters: F*H + H*H + H + 2H (the notes' count: SimpleRNNCell + LayerNormalization).
    """

    def __init__(self, units: int, activation: Any = "tanh", epsilon: float = 1e-3, **kw: Any):
        super().__init__(units, activation=activation, **kw)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Shape) -> None:
        super().build(input_shape)
        self._add_norms(("norm",), self.units)

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h = self.activation(self._norm("norm", z + self._recurrent(states[0], rmask)))
        return h, [h]

    def run_compiled(self, z, states, rmask):
        if self.activation_name not in ("tanh", "relu", "sigmoid", "linear"):
            return None
        out, h = _compiled.ln_simple_rnn_sequence(
            z,
            self.weight_hh,
            states[0],
            self.norm_gain,
            self.norm_shift,
            self.epsilon,
            self.activation_name,
            rmask,
        )
        return out, [h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


class LayerNormLSTMCell(_NormParams, LSTMCell):
    r"""LSTM with the input and recurrent projections normalised separately, and the cell state
    normalised before it is carried (as TensorFlow Addons' `LayerNormLSTMCell`):

    .. math::
        z &= \mathrm{LN}_x(x_t W_{ih}^T) + \mathrm{LN}_h(h_{t-1} W_{hh}^T) + b \\
        c_t &= \mathrm{LN}_c(\sigma(z_f) \odot c_{t-1} + \sigma(z_i) \odot \tanh(z_g)) \\
        h_t &= \sigma(z_o) \odot \tanh(c_t)

    LN_x and LN_h act over all 4H features. Parameters: those of LSTMCell plus 2(4H + 4H + H).
    """

    def __init__(self, units: int, epsilon: float = 1e-3, **kw: Any) -> None:
        super().__init__(units, peephole=False, **kw)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Shape) -> None:
        super().build(input_shape)
        self._add_norms(("input_norm", "recurrent_norm"), 4 * self.units)
        self._add_norms(("state_norm",), self.units)

    def project_inputs(self, x: Tensor) -> Tensor:
        z = self._norm("input_norm", F.linear(x, self.weight_ih))
        return z if self.bias is None else z + self.bias

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h, c = states
        z = z + self._norm("recurrent_norm", self._recurrent(h, rmask))
        zi, zf, zg, zo = z.chunk(4, dim=-1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        c = self._norm("state_norm", c)
        h = torch.sigmoid(zo) * torch.tanh(c)
        return h, [h, c]

    def run_compiled(self, z, states, rmask):
        return None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["peephole"]
        return {**config, "epsilon": self.epsilon}


class LayerNormGRUCell(_NormParams, GRUCell):
    r"""GRU (reset_after form) with the input and recurrent projections normalised separately:

    .. math::
        x &= \mathrm{LN}_x(x_t W_{ih}^T) + b, \quad a = \mathrm{LN}_h(h_{t-1} W_{hh}^T) \\
        r &= \sigma(x_r + a_r), \quad z = \sigma(x_z + a_z), \quad n = \tanh(x_n + r \odot a_n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    LN_x and LN_h act over all 3H features. Parameters: F*3H + H*3H + 3H + 2(3H + 3H).
    """

    def __init__(self, units: int, epsilon: float = 1e-3, **kw: Any) -> None:
        super().__init__(units, reset_after=True, **kw)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Shape) -> None:
        self.bias_hh = None  # one bias only: the recurrent norm's shift plays b_hh's part
        RecurrentCell.build(self, input_shape)
        self._add_norms(("input_norm", "recurrent_norm"), 3 * self.units)

    def project_inputs(self, x: Tensor) -> Tensor:
        z = self._norm("input_norm", F.linear(x, self.weight_ih))
        return z if self.bias is None else z + self.bias

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h = states[0]
        xr, xz, xn = z.chunk(3, dim=-1)
        ar, az, an = self._norm("recurrent_norm", self._recurrent(h, rmask)).chunk(3, dim=-1)
        r, u = torch.sigmoid(xr + ar), torch.sigmoid(xz + az)
        h = (1 - u) * torch.tanh(xn + r * an) + u * h
        return h, [h]

    def run_compiled(self, z, states, rmask):
        return None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["reset_after"]
        return {**config, "epsilon": self.epsilon}
