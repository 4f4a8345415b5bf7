"""Output heads shared by the model builders, and the small layers they need."""

from __future__ import annotations

from torch import Tensor

from seqcast.layers import Dense, Dropout, TimeDistributed
from seqcast.layers.base import Layer, Shape
from seqcast.models.spec import ModelSpec


class LastStep(Layer):
    """(batch, time, features) -> (batch, features): the output at the last time step."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        return x[:, -1]


def dropout(spec: ModelSpec) -> list[Layer]:
    """A Dropout layer when the spec asks for one (what MC-dropout intervals sample)."""
    return [Dropout(spec.dropout)] if spec.dropout > 0 else []


def head(spec: ModelSpec, sequence_body: bool) -> list[Layer]:
    """Layers after a body that returns sequences (`sequence_body`) or vectors."""
    if spec.strategy == "seq2seq":
        return [*dropout(spec), TimeDistributed(Dense(spec.outputs))]
    pre = [LastStep()] if sequence_body else []
    return [*pre, *dropout(spec), Dense(spec.outputs)]
