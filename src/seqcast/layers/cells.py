"""Recurrent cells: the math of one time step, written once.

A cell does one step and declares `state_size`; `seqcast.layers.RNN` owns the loop over time,
the direction and `return_*` (the Keras split). Every built-in cell splits its step in two so
the loop can hoist the input side out of the time loop:

    z_t = project_inputs(x)[:, t]         # one matmul over all time steps, before the loop
    y_t, states_t = step(z_t, states_{t-1}, rmask)

`forward(x_t, states)` is the plain Keras cell call, `step(project_inputs(x_t), states)`.

Weights use PyTorch's layout and gate order (`weight_ih` (G*H, F), `weight_hh` (G*H, H),
one `bias` (G*H,) as Keras counts it), so the fused `torch.nn` kernels take them unchanged.
Initialisation follows Keras: glorot-uniform input kernel, orthogonal recurrent kernel, zero
bias (LSTM: forget-gate bias 1).

`rmask` is the recurrent-dropout mask, one per sequence, (batch, units) or None: only the
recurrent product sees `h * rmask`; the carried state is never masked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqcast.errors import SeqcastError, check_positive_int, check_rate
from seqcast.layers import _compiled, activations
from seqcast.layers.base import Layer, Shape

States = list[Tensor]


class RecurrentCell(Layer):
    """Shared parameters and plumbing of the built-in cells (`gates` blocks of `units`)."""

    gates: ClassVar[int] = 1

    def __init__(
        self,
        units: int,
        activation: str | Callable | None = "tanh",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.activation_name = activations.name_of(activation)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def state_size(self) -> int | tuple[int, ...]:
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    @property
    def input_size(self) -> int | None:
        return None if self.input_shape is None else self.input_shape[-1]

    def build(self, input_shape: Shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise SeqcastError(f"{type(self).__name__}: the number of input features is unknown")
        size = self.gates * self.units
        self.weight_ih = nn.Parameter(torch.empty(size, features))
        self.weight_hh = nn.Parameter(torch.empty(size, self.units))
        self.bias = nn.Parameter(torch.zeros(size)) if self.use_bias else None
        super().build(input_shape)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def initial_state(self, batch: int, like: Tensor) -> States:
        sizes = self.state_size if isinstance(self.state_size, tuple) else (self.state_size,)
        return [like.new_zeros(batch, size) for size in sizes]

    # -- the step ---------------------------------------------------------------------------------
    def project_inputs(self, x: Tensor) -> Tensor:
        """(..., F) -> (..., G*H): the input side of every gate, bias included."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        raise NotImplementedError

    def forward(self, x: Tensor, states: Sequence[Tensor]) -> tuple[Tensor, States]:
        if x.dim() != 2:
            raise SeqcastError(
                f"{type(self).__name__}: expected a step input of shape (batch, features), "
                f"got {tuple(x.shape)}"
            )
        return self.step(self.project_inputs(x), list(states))

    # -- the whole sequence in compiled code (None when this cell has no kernel) ---------------
    def run_compiled(
        self, z: Tensor, states: States, rmask: Tensor | None
    ) -> tuple[Tensor, States] | None:
        return None

    def run_compiled_steps(
        self, x: Tensor, states: States, rmask: Tensor | None
    ) -> tuple[Tensor, States] | None:
        """Like `run_compiled`, from the inputs x (B, T, F) rather than their projection, for
        kernels that work step-major (None when this cell has no such kernel)."""
        return None

    def _recurrent(self, h: Tensor, rmask: Tensor | None) -> Tensor:
        return F.linear(h if rmask is None else h * rmask, self.weight_hh)

    def extra_repr(self) -> str:
        return f"units={self.units}, activation={self.activation_name!r}"

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "activation": self.activation_name,
            "use_bias": self.use_bias,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
        }


class SimpleRNNCell(RecurrentCell):
    r"""Elman cell.

    .. math::  h_t = \mathrm{act}(x_t W_{ih}^T + b + h_{t-1} W_{hh}^T), \quad y_t = h_t

    Parameters: F*H + H*H + H (Keras' count). State: [h], (batch, H).
    """

    gates = 1

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h = self.activation(z + self._recurrent(states[0], rmask))
        return h, [h]

    def run_compiled(self, z, states, rmask):
        if self.activation_name not in ("tanh", "relu", "sigmoid", "linear"):
            return None
        out, h = _compiled.simple_rnn_sequence(
            z, self.weight_hh, states[0], self.activation_name, rmask
        )
        return out, [h]


class LSTMCell(RecurrentCell):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997), optional peepholes
    (Gers & Schmidhuber 2000). Gate order i, f, g, o.

    .. math::
        z &= x_t W_{ih}^T + b + h_{t-1} W_{hh}^T \\
        i &= \sigma(z_i + p_i \odot c_{t-1}), \quad f = \sigma(z_f + p_f \odot c_{t-1}),
        \quad g = \tanh(z_g) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        o &= \sigma(z_o + p_o \odot c_t), \quad h_t = o \odot \tanh(c_t)

    Without peepholes p = 0. Parameters 4(F*H + H*H + H), plus 3H peephole weights.
    State: [h, c].
    """

    gates = 4

    def __init__(self, units: int, peephole: bool = False, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.peephole = bool(peephole)

    @property
    def state_size(self) -> tuple[int, int]:
        return (self.units, self.units)

    def build(self, input_shape: Shape) -> None:
        # rows p_i, p_f, p_o; Keras initialises them like the kernel (glorot on (H,))
        self.peephole_weight = nn.Parameter(torch.empty(3, self.units)) if self.peephole else None
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data[self.units : 2 * self.units] = 1.0  # Keras' unit_forget_bias
        if self.peephole_weight is not None:
            limit = math.sqrt(3.0 / self.units)
            nn.init.uniform_(self.peephole_weight, -limit, limit)

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h, c = states
        zi, zf, zg, zo = (z + self._recurrent(h, rmask)).chunk(4, dim=-1)
        p = self.peephole_weight
        if p is not None:
            zi, zf = zi + p[0] * c, zf + p[1] * c
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        if p is not None:
            zo = zo + p[2] * c
        h = torch.sigmoid(zo) * torch.tanh(c)
        return h, [h, c]

    def run_compiled_steps(self, x, states, rmask):
        # Step-major all the way: x.permute is free when x is the output of a stacked LSTM
        # (a (B, T, H) view of (T, H, B) memory), and the output goes on as such a view, so
        # stacked layers never transpose. The input projection runs inside the kernel.
        out, h, c = _compiled.lstm_layer(
            x.permute(1, 2, 0), self.weight_ih, self.weight_hh, self.bias,
            states[0], states[1], self.peephole_weight, rmask,
        )  # fmt: skip
        return out.permute(2, 0, 1), [h, c]

    def extra_repr(self) -> str:
        return f"units={self.units}, peephole={self.peephole}"

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["activation"]
        return {**config, "peephole": self.peephole}


class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al. 2014). Gate order r, z, n.

    reset_after=True (Keras' default, PyTorch's formula), a recurrent bias b_hh of its own:

    .. math::
        a &= h_{t-1} W_{hh}^T + b_{hh} \\
        r &= \sigma(x_r + a_r), \quad z = \sigma(x_z + a_z), \quad n = \tanh(x_n + r \odot a_n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    reset_after=False (the original v3 form), no recurrent bias:
    r, z as above with a = h W_hh^T, and n = tanh(x_n + (r ⊙ h) W_hn^T).

    Here x_* = x_t W_ih^T + b. Parameters 3(F*H + H*H + H), plus 3H with reset_after.
    """

    gates = 3

    def __init__(self, units: int, reset_after: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def build(self, input_shape: Shape) -> None:
        with_bias = self.reset_after and self.use_bias
        self.bias_hh = nn.Parameter(torch.zeros(3 * self.units)) if with_bias else None
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_hh is not None:
            nn.init.zeros_(self.bias_hh)

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h = states[0]
        hm = h if rmask is None else h * rmask
        xr, xz, xn = z.chunk(3, dim=-1)
        if self.reset_after:
            ar, az, an = F.linear(hm, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r, u = torch.sigmoid(xr + ar), torch.sigmoid(xz + az)
            n = torch.tanh(xn + r * an)
        else:
            w_r, w_z, w_n = self.weight_hh.chunk(3, dim=0)
            r = torch.sigmoid(xr + F.linear(hm, w_r))
            u = torch.sigmoid(xz + F.linear(hm, w_z))
            n = torch.tanh(xn + F.linear(r * hm, w_n))
        h = (1 - u) * n + u * h
        return h, [h]

    def run_compiled(self, z, states, rmask):
        out, h = _compiled.gru_sequence(
            z, self.weight_hh, states[0], self.bias_hh, self.reset_after, rmask
        )
        return out, [h]

    def extra_repr(self) -> str:
        return f"units={self.units}, reset_after={self.reset_after}"

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["activation"]
        return {**config, "reset_after": self.reset_after}
