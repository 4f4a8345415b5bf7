"""Recurrent cells: the math of one time step, written once.

A cell does one step and declares `state_size`; `seqcast.layers.RNN` owns the loop over time,
the direction, masks and `return_*` (the Keras split). Every built-in cell splits its step in
two so the loop can hoist the input side out of the time loop:

    z_t = project_inputs(x)[:, t]         # one matmul over all time steps, before the loop
    y_t, states_t = step(z_t, states_{t-1}, rmask)

`forward(x_t, states)` is the plain Keras cell call, `step(project_inputs(x_t), states)`.

A cell also declares, in `kernel()`, which compiled kernel computes its step exactly for its
configuration (None: none does); `RNN` alone decides which path runs. The declaration is not
inherited: a subclass, which may change the math, runs the Python loop unless it declares a
kernel itself.

Weights use PyTorch's layout and gate order (`weight_ih` (G*H, F), `weight_hh` (G*H, H),
one `bias` (G*H,) as Keras counts it), so the fused `torch.nn` kernels take them unchanged.
Initialisation follows Keras: glorot-uniform input kernel, orthogonal recurrent kernel, zero
bias (LSTM: forget-gate bias 1). `activation` and `recurrent_activation` take Keras' names
(`seqcast.layers.activations`) or a callable (which runs, but cannot be saved in a config).

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
Activation = str | Callable[[Tensor], Tensor] | None


def _activation(activation: Activation) -> tuple[str | None, Callable[[Tensor], Tensor]]:
    """(name or None for an unnamed callable, function); an unknown name raises."""
    function = activations.get(activation)
    return activations.name_of(activation), function


class RecurrentCell(Layer, abstract=True):
    """What the built-in cells share: `units`, `activation`, the dropout rates, the
    `gates` blocks of input and recurrent weights, and the plain cell call.

    Subclasses write `step` (their equations) and declare `kernel`.
    """

    gates: ClassVar[int] = 1

    def __init__(
        self,
        units: int,
        activation: Activation = "tanh",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        recurrent_activation: Activation | None = None,
    ) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.activation_name, self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        # gated cells only: the gates' activation (sigmoid in Keras)
        self.recurrent_activation_name, self.recurrent_activation = (
            _activation(recurrent_activation) if recurrent_activation is not None else (None, None)
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kernel" not in vars(cls):
            cls.kernel = RecurrentCell.kernel  # type: ignore[method-assign]

    def kernel(self) -> str | None:
        """The compiled kernel that computes this cell's step exactly, for its configuration:
        a name `RNN` knows, or None (the Python loop). Declared per class, not inherited."""
        return None

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

    @property
    def deterministic(self) -> bool:
        return self.dropout == 0 and self.recurrent_dropout == 0

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.output_size)

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

    def forward(self, x: Tensor, states: Sequence[Tensor] | None = None) -> tuple[Tensor, States]:
        """One step: x_t (batch, features) and the states (zeros when None) -> (y_t, states)."""
        if x.dim() != 2:
            raise SeqcastError(
                f"{type(self).__name__}: expected a step input of shape (batch, features), "
                f"got {tuple(x.shape)}"
            )
        states = self.initial_state(x.shape[0], x) if states is None else list(states)
        return self.step(self.project_inputs(x), states)

    def _recurrent(self, h: Tensor, rmask: Tensor | None) -> Tensor:
        return F.linear(h if rmask is None else h * rmask, self.weight_hh)

    # -- config ---------------------------------------------------------------------------------
    def _name_for_config(self, argument: str, name: str | None) -> str:
        if name is None:
            raise SeqcastError(
                f"{type(self).__name__}: `{argument}` is a function with no name, so it cannot "
                f"be stored in a config; pass one of {', '.join(activations.NAMES)} to make "
                "the layer saveable"
            )
        return name

    def extra_repr(self) -> str:
        return f"units={self.units}, activation={self.activation_name!r}"

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "activation": self._name_for_config("activation", self.activation_name),
            "use_bias": self.use_bias,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
        } | self._recurrent_activation_config()

    def _recurrent_activation_config(self) -> dict[str, Any]:
        if self.recurrent_activation_name is None:
            return {}
        name = self._name_for_config("recurrent_activation", self.recurrent_activation_name)
        return {"recurrent_activation": name}


class SimpleRNNCell(RecurrentCell):
    r"""Elman cell.

    .. math::  h_t = \mathrm{act}(x_t W_{ih}^T + b + h_{t-1} W_{hh}^T), \quad y_t = h_t

    Parameters: F*H + H*H + H (Keras' count). State: [h], (batch, H).
    """

    gates = 1

    def kernel(self) -> str | None:
        name = self.activation_name
        return f"simple_rnn_{name}" if name in _compiled.ACTIVATIONS else None

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        h = self.activation(z + self._recurrent(states[0], rmask))
        return h, [h]


class LSTMCell(RecurrentCell):
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997), optional peepholes
    (Gers & Schmidhuber 2000). Gate order i, f, g, o.

    .. math::
        z &= x_t W_{ih}^T + b + h_{t-1} W_{hh}^T \\
        i &= \sigma(z_i + p_i \odot c_{t-1}), \quad f = \sigma(z_f + p_f \odot c_{t-1}),
        \quad g = \mathrm{act}(z_g) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        o &= \sigma(z_o + p_o \odot c_t), \quad h_t = o \odot \mathrm{act}(c_t)

    σ is `recurrent_activation` (sigmoid), act is `activation` (tanh), as in Keras. Without
    peepholes p = 0. Parameters 4(F*H + H*H + H), plus 3H peephole weights. State: [h, c].
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
        peephole: bool = False,
    ) -> None:
        super().__init__(
            units, activation, use_bias, dropout, recurrent_dropout, recurrent_activation
        )
        self.peephole = bool(peephole)

    def kernel(self) -> str | None:
        if (self.activation_name, self.recurrent_activation_name) != ("tanh", "sigmoid"):
            return None
        return "peephole_lstm" if self.peephole else "lstm"

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
        act, gate = self.activation, self.recurrent_activation
        h, c = states
        zi, zf, zg, zo = (z + self._recurrent(h, rmask)).chunk(4, dim=-1)
        p = self.peephole_weight
        if p is not None:
            zi, zf = zi + p[0] * c, zf + p[1] * c
        c = gate(zf) * c + gate(zi) * act(zg)
        if p is not None:
            zo = zo + p[2] * c
        h = gate(zo) * act(c)
        return h, [h, c]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, peephole={self.peephole}"

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "peephole": self.peephole,
        }


class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al. 2014). Gate order r, z, n.

    reset_after=True (Keras' default, PyTorch's formula), a recurrent bias b_hh of its own:

    .. math::
        a &= h_{t-1} W_{hh}^T + b_{hh} \\
        r &= \sigma(x_r + a_r), \quad z = \sigma(x_z + a_z),
        \quad n = \mathrm{act}(x_n + r \odot a_n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    reset_after=False (the original v3 form), no recurrent bias:
    r, z as above with a = h W_hh^T, and n = act(x_n + (r ⊙ h) W_hn^T).

    Here x_* = x_t W_ih^T + b; σ is `recurrent_activation` (sigmoid), act is `activation`
    (tanh). Parameters 3(F*H + H*H + H), plus 3H with reset_after.
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
        reset_after: bool = True,
    ) -> None:
        super().__init__(
            units, activation, use_bias, dropout, recurrent_dropout, recurrent_activation
        )
        self.reset_after = bool(reset_after)

    def kernel(self) -> str | None:
        if (self.activation_name, self.recurrent_activation_name) != ("tanh", "sigmoid"):
            return None
        return "gru" if self.reset_after else "gru_reset_before"

    def build(self, input_shape: Shape) -> None:
        with_bias = self.reset_after and self.use_bias
        self.bias_hh = nn.Parameter(torch.zeros(3 * self.units)) if with_bias else None
        super().build(input_shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_hh is not None:
            nn.init.zeros_(self.bias_hh)

    def step(self, z: Tensor, states: States, rmask: Tensor | None = None) -> tuple[Tensor, States]:
        act, gate = self.activation, self.recurrent_activation
        h = states[0]
        hm = h if rmask is None else h * rmask
        xr, xz, xn = z.chunk(3, dim=-1)
        if self.reset_after:
            ar, az, an = F.linear(hm, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r, u = gate(xr + ar), gate(xz + az)
            n = act(xn + r * an)
        else:
            w_r, w_z, w_n = self.weight_hh.chunk(3, dim=0)
            r = gate(xr + F.linear(hm, w_r))
            u = gate(xz + F.linear(hm, w_z))
            n = act(xn + F.linear(r * hm, w_n))
        h = (1 - u) * n + u * h
        return h, [h]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset_after={self.reset_after}"

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "reset_after": self.reset_after,
        }
