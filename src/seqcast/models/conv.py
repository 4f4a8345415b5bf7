"""Convolutional forecasters from the notes: Conv1D + GRU, and WaveNet."""

from __future__ import annotations

from seqcast.layers import GRU, Conv1D, WaveNet
from seqcast.models.heads import dropout, head
from seqcast.models.spec import ModelSpec
from seqcast.sequential import Sequential


def conv_gru(spec: ModelSpec) -> Sequential:
    """Conv1D(20, 4, strides=2) halves the sequence, then two GRUs (the notes' model)."""
    seq = spec.strategy == "seq2seq"
    layers = [
        Conv1D(spec.units, kernel_size=4, strides=2, padding="valid"),
        GRU(spec.units, return_sequences=True),
        *dropout(spec),
        GRU(spec.units, return_sequences=seq),
        *head(spec, sequence_body=False),
    ]
    return Sequential(layers, input_shape=(None, spec.features))


def wavenet(spec: ModelSpec) -> Sequential:
    """Causal dilated convolutions, dilations 1, 2, 4, 8 twice (receptive field 31)."""
    layers = [
        WaveNet(spec.units, kernel_size=2, dilation_rates=(1, 2, 4, 8) * 2),
        *head(spec, sequence_body=True),
    ]
    return Sequential(layers, input_shape=(None, spec.features))
