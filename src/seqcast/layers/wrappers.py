"""`Bidirectional` and `TimeDistributed`: layers that wrap another layer."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from seqcast.errors import SeqcastError, check_choice, check_input_3d
from seqcast.layers.base import Layer, Shape, deserialize, mask_of, serialize
from seqcast.layers.core import Dense

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards, then merges the two.

    The backward copy has `go_backwards` flipped; with `return_sequences` its output is turned
    back to forward time order before the merge, so step t of both halves refers to input t.
    `merge_mode`: "concat" (features 2H), "sum", "mul", "ave" (H), or None (the tuple
    `(forward, backward)`). With `return_state`, as Keras 3:
    `(merged, *forward_states, *backward_states)`, and with merge_mode None
    `(forward, backward, *forward_states, *backward_states)`.

    A mask (`mask=` or from `Masking`) goes to both halves; as in Keras, with
    `return_sequences` masked steps output zeros (`zero_output_for_mask` is set on both).
    Parameters: twice the wrapped layer's.
    """

    is_recurrent = True
    supports_masking = True

    def __init__(self, layer: Layer, merge_mode: str | None = "concat") -> None:
        super().__init__()
        if not getattr(layer, "is_recurrent", False) or not hasattr(layer, "go_backwards"):
            raise SeqcastError(
                f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM, GRU or RNN); "
                f"got {type(layer).__name__}"
            )
        self.merge_mode = check_choice("merge_mode", merge_mode, MERGE_MODES)
        self.forward_layer = layer
        self.backward_layer = _fresh_copy(layer)
        self.backward_layer.go_backwards = not layer.go_backwards
        for half in (self.forward_layer, self.backward_layer):
            if hasattr(half, "zero_output_for_mask"):
                half.zero_output_for_mask = half.return_sequences

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @property
    def return_state(self) -> bool:
        return self.forward_layer.return_state

    def build(self, input_shape: Shape) -> None:
        check_input_3d(input_shape, layer="Bidirectional")
        for layer in (self.forward_layer, self.backward_layer):
            if not layer.built:
                layer.build(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            return (*shape[:-1], 2 * shape[-1])
        return shape

    @property
    def causal(self) -> bool:
        return False  # the backward half reads every step's future

    def compute_mask(self, x: Tensor, mask: Tensor) -> Tensor | None:
        return mask if self.return_sequences else None

    def forward(
        self, x: Tensor, initial_state: list[Tensor] | None = None, mask: Tensor | None = None
    ) -> Any:
        fw_state = bw_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fw_state, bw_state = list(initial_state[:half]), list(initial_state[half:])
        mask = mask_of(x) if mask is None else mask
        fw = self.forward_layer(x, fw_state, mask=mask)
        bw = self.backward_layer(x, bw_state, mask=mask)
        states: tuple = ()
        if self.return_state:
            (fw, *fw_states), (bw, *bw_states) = fw, bw
            states = (*fw_states, *bw_states)
        if self.return_sequences:
            bw = bw.flip(1)
        if self.merge_mode is None:
            return (fw, bw, *states)
        merged = self._merge(fw, bw)
        return (merged, *states) if self.return_state else merged

    def _merge(self, fw: Tensor, bw: Tensor) -> Tensor:
        mode = self.merge_mode
        if mode == "concat":
            return torch.cat([fw, bw], dim=-1)
        if mode == "sum":
            return fw + bw
        if mode == "mul":
            return fw * bw
        return (fw + bw) / 2  # "ave"

    def extra_repr(self) -> str:
        return f"merge_mode={self.merge_mode!r}"

    def get_config(self) -> dict[str, Any]:
        spec = serialize(self.forward_layer)
        spec["input_shape"] = None
        return {"layer": spec, "merge_mode": self.merge_mode}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bidirectional:
        return cls(deserialize(config["layer"]), config.get("merge_mode", "concat"))


def _fresh_copy(layer: Layer) -> Layer:
    """A copy of `layer` with newly initialised weights (as Keras builds the backward half)."""
    twin = copy.deepcopy(layer)
    for module in twin.modules():
        resettable = callable(getattr(module, "reset_parameters", None))
        if module is not twin and resettable and getattr(module, "built", True):
            module.reset_parameters()
    return twin


class TimeDistributed(Layer):
    """Applies `layer` to every time step independently: (B, T, ...) -> (B, T, ...').

    The batch and time axes are merged into one for the call, so the wrapped layer runs once
    over B*T rows rather than T times. A mask on the input (from `Masking`) passes through to
    the output. Parameters: the wrapped layer's.
    """

    causal = True
    supports_masking = True

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        if not isinstance(layer, Layer):
            raise SeqcastError(f"TimeDistributed wraps a seqcast layer; got {type(layer).__name__}")
        self.layer = layer

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) < 3:
            raise SeqcastError(
                "TimeDistributed: expected input of shape (batch, time, features), "
                f"got {tuple(input_shape)}"
            )
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise SeqcastError(
                "TimeDistributed: expected input of shape (batch, time, features), "
                f"got {tuple(x.shape)}"
            )
        if isinstance(self.layer, Dense):  # acts on the last axis already: no reshape needed
            return self.layer(x)
        batch, time = x.shape[:2]
        y = self.layer(x.reshape(batch * time, *x.shape[2:]))
        return y.reshape(batch, time, *y.shape[1:])

    def get_config(self) -> dict[str, Any]:
        spec = serialize(self.layer)
        spec["input_shape"] = None
        return {"layer": spec}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TimeDistributed:
        return cls(deserialize(config["layer"]))
