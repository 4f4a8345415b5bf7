"""`RNN(cell)`: the time loop over any cell, and the SimpleRNN / LSTM / GRU layers on top.

The loop owns direction (`go_backwards`), what is returned (`return_sequences`,
`return_state`), initial states, masks and the dropout masks; cells own the math of one step.

How a sequence is run (`implementation`), chosen here and nowhere else, from the kernel the
cell declares (`cell.kernel()`):
- "torch": PyTorch's fused kernels, for the kernels they compute exactly (`_fused.KERNELS`);
- "compiled": the whole recurrence, forward and backward, in seqcast's C++ kernels
  (`_compiled.py`), on CPU, where one is available (else the loop);
- "loop": the input side of every step in one matmul before the loop (`project_inputs`), then
  a Python loop over `step` (any device, any cell, any mask; custom cells always run this way);
- "auto" (default): the fastest available of the above for the configuration and device.

Masks (Keras semantics): a (batch, time) boolean mask, given as `mask=` or attached by
`Masking`, marks the steps to skip. A masked step leaves the states as they were and outputs
the previous step's output (zeros before the first unmasked step, or always with
`zero_output_for_mask`). Masked sequences run the Python loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError, caller_stacklevel, check_choice, check_input_3d
from seqcast.layers import _compiled, _fused
from seqcast.layers.base import Layer, Shape, deserialize, mask_of, serialize, with_mask
from seqcast.layers.cells import Activation, GRUCell, LSTMCell, RecurrentCell, SimpleRNNCell, States

IMPLEMENTATIONS = ("auto", "torch", "compiled", "loop")


# -- the compiled kernels, by the names cells declare -----------------------------------------
def _lstm_kernel(cell: LSTMCell, x: Tensor, states: States, rmask: Tensor | None):
    # Step-major all the way: x.permute is free when x is the output of a stacked LSTM
    # (a (B, T, H) view of (T, H, B) memory), and the output goes on as such a view, so
    # stacked layers never transpose. The input projection runs inside the kernel.
    out, h, c = _compiled.lstm_layer(
        x.permute(1, 2, 0), cell.weight_ih, cell.weight_hh, cell.bias,
        states[0], states[1], cell.peephole_weight, rmask,
    )  # fmt: skip
    return out.permute(2, 0, 1), [h, c]


def _gru_kernel(cell: GRUCell, x: Tensor, states: States, rmask: Tensor | None):
    z = cell.project_inputs(x)
    out, h = _compiled.gru_sequence(
        z, cell.weight_hh, states[0], cell.bias_hh, cell.reset_after, rmask
    )
    return out, [h]


def _simple_rnn_kernel(cell: SimpleRNNCell, x: Tensor, states: States, rmask: Tensor | None):
    z = cell.project_inputs(x)
    out, h = _compiled.simple_rnn_sequence(
        z, cell.weight_hh, states[0], cell.activation_name, rmask
    )
    return out, [h]


def _ln_simple_rnn_kernel(cell: Any, x: Tensor, states: States, rmask: Tensor | None):
    z = cell.project_inputs(x)
    out, h = _compiled.ln_simple_rnn_sequence(
        z, cell.weight_hh, states[0], cell.norm_gain, cell.norm_shift, cell.epsilon,
        cell.activation_name, rmask,
    )  # fmt: skip
    return out, [h]


_COMPILED: dict[str, Callable[..., tuple[Tensor, States]]] = {
    "lstm": _lstm_kernel,
    "peephole_lstm": _lstm_kernel,
    "gru": _gru_kernel,
    "gru_reset_before": _gru_kernel,
    **{f"simple_rnn_{name}": _simple_rnn_kernel for name in _compiled.ACTIVATIONS},
    **{f"ln_simple_rnn_{name}": _ln_simple_rnn_kernel for name in _compiled.ACTIVATIONS},
}


def _state_sizes(cell: nn.Module) -> tuple[int, ...]:
    size = getattr(cell, "state_size", None)
    if size is None:
        raise SeqcastError(
            f"a cell must declare `state_size` (an int or a tuple of ints); "
            f"{type(cell).__name__} has none"
        )
    return tuple(size) if isinstance(size, (tuple, list)) else (int(size),)


def _sequence_mask(x: Tensor, size: int, rate: float) -> Tensor:
    """One dropout mask per sequence, (batch, size), scaled so its mean is 1."""
    keep = 1.0 - rate
    return torch.bernoulli(x.new_full((x.shape[0], size), keep)) / keep


class RNN(Layer):
    """Runs `cell` over the time axis of a (batch, time, features) input.

    A cell is any module with `state_size` (int or tuple) and
    `forward(x_t, states) -> (y_t, new_states)`, x_t of shape (batch, features).

    Returns y (batch, units), or (batch, time, units) with `return_sequences`; with
    `return_state`, `(y, *final_states)`. With `go_backwards` the input is read from the last
    step to the first and the output sequence comes in that (reversed) order, as in Keras.
    `forward(x, initial_state=None, mask=None)`: `mask` (batch, time), True where a step
    counts (see the module docstring); by default the mask `Masking` attached to x, if any.

    Input dropout (`cell.dropout`) and recurrent dropout (`cell.recurrent_dropout`) draw one
    mask per sequence in training (Gal & Ghahramani 2016), as Keras does.
    """

    is_recurrent = True
    supports_masking = True

    def __init__(
        self,
        cell: nn.Module,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        implementation: str = "auto",
        zero_output_for_mask: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(cell, nn.Module) or not callable(getattr(cell, "forward", None)):
            raise SeqcastError(
                f"RNN needs a cell module with state_size and forward(x_t, states); "
                f"got {type(cell).__name__}"
            )
        _state_sizes(cell)
        if not isinstance(cell, RecurrentCell) and getattr(cell, "recurrent_dropout", 0) > 0:
            raise SeqcastError(
                f"RNN cannot apply recurrent dropout inside {type(cell).__name__}: only seqcast "
                "cells take the recurrent mask; apply it in the cell's forward, or set "
                "recurrent_dropout=0"
            )
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)

    # -- building -------------------------------------------------------------------------------
    @property
    def units(self) -> int:
        size = getattr(self.cell, "output_size", None)
        return int(size) if size is not None else _state_sizes(self.cell)[0]

    @property
    def causal(self) -> bool:
        return self.return_sequences and not self.go_backwards

    @property
    def deterministic(self) -> bool:
        rates = (getattr(self.cell, "dropout", 0.0), getattr(self.cell, "recurrent_dropout", 0.0))
        return rates == (0.0, 0.0) and super().deterministic

    def build(self, input_shape: Shape) -> None:
        check_input_3d(input_shape, layer=self._label())
        features = input_shape[-1]
        if isinstance(self.cell, Layer):
            if not self.cell.built:
                self.cell.build((None, features))
        elif any(isinstance(m, Layer) and not m.built for m in self.cell.modules()):
            # a user cell made of lazy seqcast layers: one step on zeros builds them all
            zeros = torch.zeros(1, features)
            with torch.no_grad():
                self.cell(zeros, [torch.zeros(1, s) for s in _state_sizes(self.cell)])
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        batch, time = input_shape[0], input_shape[1]
        return (batch, time, self.units) if self.return_sequences else (batch, self.units)

    def compute_mask(self, x: Tensor, mask: Tensor) -> Tensor | None:
        return mask if self.return_sequences else None

    # -- running --------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        initial_state: Sequence[Tensor] | None = None,
        mask: Tensor | None = None,
    ) -> Any:
        check_input_3d(tuple(x.shape), self.input_shape[-1], layer=self._label())
        mask = self._check_mask(x, mask_of(x) if mask is None else mask)
        if self.go_backwards:
            x = x.flip(1)
        states = self._initial_states(x, initial_state)
        x, rmask = self._apply_dropout(x)
        steps = None if mask is None else (mask.flip(1) if self.go_backwards else mask)
        out, states = self._run(x, states, rmask, steps)
        y = out if self.return_sequences else out[:, -1]
        if self.return_sequences:
            with_mask(y, mask)
        return (y, *states) if self.return_state else y

    def _run(
        self, x: Tensor, states: States, rmask: Tensor | None, mask: Tensor | None = None
    ) -> tuple[Tensor, States]:
        path = self._path(x, rmask, mask)
        if path == "torch":
            return _fused.run_fused(self.cell.kernel(), self.cell, x, states)
        if path == "compiled":
            return _COMPILED[self.cell.kernel()](self.cell, x, states, rmask)
        return self._loop(x, states, rmask, mask)

    def _path(self, x: Tensor, rmask: Tensor | None, mask: Tensor | None = None) -> str:
        """Where this call runs: "torch", "compiled" or "loop"."""
        kernel = self.cell.kernel() if isinstance(self.cell, RecurrentCell) else None
        plain = mask is None
        fusable = plain and rmask is None and kernel in _fused.KERNELS
        wanted = self.implementation
        refusal = _compiled.refusal(x, kernel in _COMPILED, plain)
        compilable = refusal is None
        if wanted == "torch" and not fusable:
            raise SeqcastError(
                f"{self._label()}: implementation='torch' needs a configuration torch.nn "
                "computes exactly (LSTM without peephole, GRU with reset_after=True, "
                "SimpleRNN with tanh or relu; default activations, no layer norm, no mask, no "
                "recurrent dropout in training); use implementation='auto'"
            )
        if wanted == "torch":
            return "torch"
        if wanted == "compiled":
            if not compilable:
                self._warn_fallback(refusal)
            return "compiled" if compilable else "loop"
        if wanted == "loop":
            return "loop"
        # auto: on CPU every compiled kernel measured faster than torch.nn's (benchmarks/layers.py)
        if compilable:
            return "compiled"
        return "torch" if fusable else "loop"

    def _warn_fallback(self, reason: str) -> None:
        """implementation="compiled" asked for a kernel this call cannot use: say so once per
        layer (the step loop computes the same function, more slowly), never silently."""
        if getattr(self, "_fallback_warned", None) == reason:
            return
        self._fallback_warned = reason
        warnings.warn(
            f"{self._label()}: implementation='compiled' falls back to the step loop: {reason}; "
            "use implementation='auto' to pick the fastest path for this call quietly",
            _compiled.CompiledFallbackWarning,
            stacklevel=caller_stacklevel(),
        )

    def _loop(
        self, x: Tensor, states: States, rmask: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, States]:
        cell = self.cell
        hoisted = isinstance(cell, RecurrentCell)
        z = cell.project_inputs(x) if hoisted else x  # (B, T, F) -> (B, T, G*H) in one matmul
        outputs: list[Tensor] = []
        for t in range(x.shape[1]):
            if hoisted:
                y, new = cell.step(z[:, t], states, rmask)
            else:
                y, new = cell(x[:, t], states)
                new = list(new) if isinstance(new, (list, tuple)) else [new]
            if mask is not None:
                keep = mask[:, t, None]
                new = [torch.where(keep, n, s) for n, s in zip(new, states, strict=True)]
                carried = outputs[-1] if outputs and not self.zero_output_for_mask else None
                y = torch.where(keep, y, torch.zeros_like(y) if carried is None else carried)
            states = new
            outputs.append(y)
        return torch.stack(outputs, dim=1), states

    def _check_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        if mask is None:
            return None
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise SeqcastError(
                f"{self._label()}: expected a mask of shape (batch, time) = "
                f"{tuple(x.shape[:2])}, got {tuple(mask.shape)}"
            )
        return mask.to(device=x.device, dtype=torch.bool)

    def _initial_states(self, x: Tensor, given: Sequence[Tensor] | None) -> States:
        sizes, batch = _state_sizes(self.cell), x.shape[0]
        if given is None:
            return [x.new_zeros(batch, size) for size in sizes]
        if isinstance(given, Tensor):
            given = [given]
        given = list(given)
        expected = [(batch, size) for size in sizes]
        actual = [tuple(s.shape) for s in given]
        if actual != expected:
            raise SeqcastError(
                f"{self._label()}: expected initial_state of shapes {expected}, got {actual}"
            )
        return given

    def _apply_dropout(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.training:
            return x, None
        rate = getattr(self.cell, "dropout", 0.0)
        if rate > 0:
            x = x * _sequence_mask(x, x.shape[-1], rate).unsqueeze(1)
        rate = getattr(self.cell, "recurrent_dropout", 0.0)
        rmask = _sequence_mask(x, _state_sizes(self.cell)[0], rate) if rate > 0 else None
        return x, rmask

    # -- introspection --------------------------------------------------------------------------
    def _label(self) -> str:
        return type(self).__name__

    #: Keras' named layers (SimpleRNN, LSTM, GRU) are this class around one built-in cell:
    #: they set it to True, and their config is the cell's arguments plus the loop's, flat
    flat_config: bool = False

    def extra_repr(self) -> str:
        flags = ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask")
        loop = ", ".join(f"{f}=True" for f in flags if getattr(self, f))
        if self.flat_config:
            return ", ".join(filter(None, (self.cell.extra_repr(), loop)))
        return loop

    def get_config(self) -> dict[str, Any]:
        if self.flat_config:
            return {**self.cell.get_config(), **self._loop_config()}
        if not isinstance(self.cell, Layer):
            raise SeqcastError(
                f"RNN({type(self.cell).__name__}) cannot be saved: only seqcast cells have a "
                "config; subclass seqcast.layers.Layer and define get_config()"
            )
        return {"cell": serialize(self.cell), **self._loop_config()}

    def _loop_config(self) -> dict[str, Any]:
        return {
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "implementation": self.implementation,
            "zero_output_for_mask": self.zero_output_for_mask,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RNN:
        if cls.flat_config:
            return cls(**config)
        config = dict(config)
        return cls(deserialize(config.pop("cell")), **config)


class SimpleRNN(RNN):
    """Keras' `SimpleRNN(units, activation="tanh")`: `RNN(SimpleRNNCell(...))`, with the
    cell's arguments and the loop's side by side, and a flat config."""

    flat_config = True

    def __init__(
        self,
        units: int,
        *,
        activation: Activation = "tanh",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        zero_output_for_mask: bool = False,
        implementation: str = "auto",
    ) -> None:
        cell = SimpleRNNCell(units, activation, use_bias, dropout, recurrent_dropout)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            implementation=implementation,
            zero_output_for_mask=zero_output_for_mask,
        )


class LSTM(RNN):
    """Keras' `LSTM(units)`: `RNN(LSTMCell(...))`, with `peephole=True` for Gers &
    Schmidhuber's peephole connections. `return_state=True` returns `(output, h, c)`."""

    flat_config = True

    def __init__(
        self,
        units: int,
        *,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        peephole: bool = False,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        zero_output_for_mask: bool = False,
        implementation: str = "auto",
    ) -> None:
        cell = LSTMCell(
            units, activation, recurrent_activation, use_bias, dropout, recurrent_dropout,
            peephole,
        )  # fmt: skip
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            implementation=implementation,
            zero_output_for_mask=zero_output_for_mask,
        )


class GRU(RNN):
    """Keras' `GRU(units, reset_after=True)`: `RNN(GRUCell(...))`."""

    flat_config = True

    def __init__(
        self,
        units: int,
        *,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        reset_after: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        zero_output_for_mask: bool = False,
        implementation: str = "auto",
    ) -> None:
        cell = GRUCell(
            units, activation, recurrent_activation, use_bias, dropout, recurrent_dropout,
            reset_after,
        )  # fmt: skip
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            implementation=implementation,
            zero_output_for_mask=zero_output_for_mask,
        )


# -- stacked LSTM layers in one call -------------------------------------------------------------
def lstm_stack_length(layers: Sequence[nn.Module], start: int, x: Tensor) -> int:
    """How many layers from `layers[start]` on can run on x as one `_compiled.lstm_stack` call:
    consecutive built LSTM-kernel layers (any peephole, bias) that would take the compiled path,
    start from zero states, draw no dropout mask, see no mask, return no states and run
    forwards, each but the last returning sequences. 0 when fewer than two: then each layer
    runs on its own."""
    if mask_of(x) is not None:
        return 0
    count = 0
    for layer in layers[start:]:
        if not _stackable(layer, x):
            break
        count += 1
        if not layer.return_sequences:
            break
    return count if count >= 2 else 0


def _stackable(layer: nn.Module, x: Tensor) -> bool:
    cell = getattr(layer, "cell", None)
    return (
        isinstance(layer, RNN)
        and isinstance(cell, RecurrentCell)
        and cell.kernel() in ("lstm", "peephole_lstm")
        and layer.built
        and not layer.go_backwards
        and not layer.return_state
        and not (layer.training and (cell.dropout > 0 or cell.recurrent_dropout > 0))
        and not (layer._forward_hooks or layer._forward_pre_hooks)  # hooks expect their call
        and layer._path(x, None) == "compiled"
    )


def run_lstm_stack(layers: Sequence[RNN], x: Tensor) -> Tensor:
    """What `layers` (a run that `lstm_stack_length` accepted) return on x (B, T, F), computed
    as one call: the same numbers as calling them one after another, with the steps of
    different layers overlapping on several threads (`_compiled.lstm_stack`)."""
    first = layers[0]
    check_input_3d(tuple(x.shape), first.input_shape[-1], layer=first._label())
    params = [(lay.cell.weight_ih, lay.cell.weight_hh, lay.cell.bias, lay.cell.peephole_weight)
              for lay in layers]  # fmt: skip
    out = _compiled.lstm_stack(x.permute(1, 2, 0), params).permute(2, 0, 1)
    return out if layers[-1].return_sequences else out[:, -1]
