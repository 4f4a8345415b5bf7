"""`RNN(cell)`: the time loop over any cell, and the SimpleRNN / LSTM / GRU layers on top.

The loop owns direction (`go_backwards`), what is returned (`return_sequences`,
`return_state`), initial states and the dropout masks; cells own the math of one step.

How a sequence is run (`implementation`):
- "torch": PyTorch's fused kernels, for configurations they compute exactly (`_fused.py`);
- "compiled": the whole recurrence, forward and backward, in seqcast's C++ kernels
  (`_compiled.py`), for the built-in cells on CPU;
- "loop": the input side of every step in one matmul before the loop (`project_inputs`), then
  a Python loop over `step` (any device, any cell; custom cells always run this way);
- "auto" (default): the fastest available of the above for the configuration and device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError, check_choice, check_input_3d
from seqcast.layers import _compiled, _fused
from seqcast.layers.base import Layer, Shape, deserialize, serialize
from seqcast.layers.cells import GRUCell, LSTMCell, RecurrentCell, SimpleRNNCell, States

IMPLEMENTATIONS = ("auto", "torch", "compiled", "loop")

# Cells whose compiled kernel measured faster than torch.nn on CPU (benchmarks/layers.py).
_COMPILED_BEATS_TORCH_ON_CPU = (GRUCell, SimpleRNNCell, LSTMCell)


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

    Input dropout (`cell.dropout`) and recurrent dropout (`cell.recurrent_dropout`) draw one
    mask per sequence in training (Gal & Ghahramani 2016), as Keras does.
    """

    is_recurrent = True

    def __init__(
        self,
        cell: nn.Module,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        implementation: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(cell, nn.Module) or not callable(getattr(cell, "forward", None)):
            raise SeqcastError(
                f"RNN needs a cell module with state_size and forward(x_t, states); "
                f"got {type(cell).__name__}"
            )
        _state_sizes(cell)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)

    # -- building -------------------------------------------------------------------------------
    @property
    def units(self) -> int:
        size = getattr(self.cell, "output_size", None)
        return int(size) if size is not None else _state_sizes(self.cell)[0]

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

    # -- running --------------------------------------------------------------------------------
    def forward(self, x: Tensor, initial_state: Sequence[Tensor] | None = None) -> Any:
        check_input_3d(tuple(x.shape), self.input_shape[-1], layer=self._label())
        if self.go_backwards:
            x = x.flip(1)
        states = self._initial_states(x, initial_state)
        x, rmask = self._apply_dropout(x)
        out, states = self._run(x, states, rmask)
        y = out if self.return_sequences else out[:, -1]
        return (y, *states) if self.return_state else y

    def _run(self, x: Tensor, states: States, rmask: Tensor | None) -> tuple[Tensor, States]:
        cell, path = self.cell, self._path(x, rmask)
        if path == "torch":
            return _fused.run_fused(cell, x, states)
        if not isinstance(cell, RecurrentCell):
            return self._custom_loop(x, states)
        if path == "compiled":
            result = cell.run_compiled_steps(x, states, rmask)
            if result is not None:
                return result
        z = cell.project_inputs(x)  # (B, T, F) -> (B, T, G*H), hoisted out of the loop
        if path == "compiled":
            result = cell.run_compiled(z, states, rmask)
            if result is not None:
                return result
        outputs = []
        for t in range(z.shape[1]):
            y, states = cell.step(z[:, t], states, rmask)
            outputs.append(y)
        return torch.stack(outputs, dim=1), states

    def _path(self, x: Tensor, rmask: Tensor | None) -> str:
        cell, wanted = self.cell, self.implementation
        fusable = rmask is None and _fused.can_fuse(cell)
        compilable = (
            isinstance(cell, RecurrentCell)
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and _compiled.available()
        )
        if wanted == "torch" and not fusable:
            raise SeqcastError(
                f"{self._label()}: implementation='torch' needs a configuration torch.nn "
                "computes exactly (no peephole, no layer norm, no recurrent dropout in "
                "training, GRU with reset_after=True, SimpleRNN with tanh or relu); "
                "use implementation='auto'"
            )
        if wanted != "auto":
            return wanted if wanted != "compiled" or compilable else "loop"
        if fusable and (x.device.type != "cpu" or not compilable):
            return "torch"
        if fusable and not isinstance(cell, _COMPILED_BEATS_TORCH_ON_CPU):
            return "torch"
        return "compiled" if compilable else ("torch" if fusable else "loop")

    def _custom_loop(self, x: Tensor, states: States) -> tuple[Tensor, States]:
        outputs = []
        for t in range(x.shape[1]):
            y, states = self.cell(x[:, t], states)
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            outputs.append(y)
        return torch.stack(outputs, dim=1), states

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

    def extra_repr(self) -> str:
        flags = [
            f for f in ("return_sequences", "return_state", "go_backwards") if getattr(self, f)
        ]
        return ", ".join(f"{f}=True" for f in flags)

    def get_config(self) -> dict[str, Any]:
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
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RNN:
        config = dict(config)
        return cls(deserialize(config.pop("cell")), **config)


class _CellLayer(RNN):
    """A layer that owns its cell: flat Keras-style arguments, flat config."""

    cell_class: type[RecurrentCell] = RecurrentCell
    cell_args: tuple[str, ...] = ("units", "use_bias", "dropout", "recurrent_dropout")

    def __init__(
        self,
        units: int,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        implementation: str = "auto",
        **cell_kwargs: Any,
    ):
        unknown = sorted(set(cell_kwargs) - set(self.cell_args))
        if unknown:
            raise SeqcastError(
                f"{type(self).__name__} got unknown argument(s) {unknown}; "
                f"expected some of {sorted(self.cell_args)}"
            )
        super().__init__(
            self.cell_class(units, **cell_kwargs),
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            implementation=implementation,
        )

    def extra_repr(self) -> str:
        inner = self.cell.extra_repr()
        outer = super().extra_repr()
        return f"{inner}, {outer}" if outer else inner

    def get_config(self) -> dict[str, Any]:
        cell = self.cell.get_config()
        return {**{k: cell[k] for k in self.cell_args if k in cell}, **self._loop_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RNN:
        return cls(**config)


class SimpleRNN(_CellLayer):
    """Keras' `SimpleRNN(units, activation="tanh")`: `RNN(SimpleRNNCell(...))`."""

    cell_class = SimpleRNNCell
    cell_args = (*_CellLayer.cell_args, "activation")


class LSTM(_CellLayer):
    """Keras' `LSTM(units)`, with `peephole=True` for Gers & Schmidhuber's peephole
    connections. `return_state=True` returns `(output, h, c)`."""

    cell_class = LSTMCell
    cell_args = (*_CellLayer.cell_args, "peephole")


class GRU(_CellLayer):
    """Keras' `GRU(units, reset_after=True)`: `RNN(GRUCell(...))`."""

    cell_class = GRUCell
    cell_args = (*_CellLayer.cell_args, "reset_after")


# -- stacked LSTM layers in one call -------------------------------------------------------------
def lstm_stack_length(layers: Sequence[nn.Module], start: int, x: Tensor) -> int:
    """How many layers from `layers[start]` on can run on x as one `_compiled.lstm_stack` call:
    consecutive built LSTM layers (any peephole, bias) that would take the compiled path, start
    from zero states, draw no dropout mask, return no states and run forwards, each but the
    last returning sequences. 0 when fewer than two: then each layer runs on its own."""
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
        and isinstance(cell, LSTMCell)
        and type(cell).run_compiled_steps is LSTMCell.run_compiled_steps  # not a variant's
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
