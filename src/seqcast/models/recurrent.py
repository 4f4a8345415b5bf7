"""Recurrent forecasters from the notes: SimpleRNN, deep RNN, layer-normalised RNN, LSTM,
peephole LSTM, GRU and bidirectional LSTM. `units` defaults to the notes' 20."""

from __future__ import annotations

from collections.abc import Callable

from seqcast.layers import GRU, LSTM, RNN, Bidirectional, LayerNormSimpleRNNCell, SimpleRNN
from seqcast.layers.base import Layer
from seqcast.layers.scan import MinGRU, MinLSTM
from seqcast.models.heads import dropout, head
from seqcast.models.spec import ModelSpec
from seqcast.sequential import Sequential


def _stack(spec: ModelSpec, make: Callable[[bool], Layer], depth: int) -> Sequential:
    """`depth` recurrent layers; all but the last return sequences unless seq2seq needs all."""
    layers: list[Layer] = []
    for k in range(depth):
        last = k == depth - 1
        layers.append(make(not last or spec.strategy == "seq2seq"))
        if not last:
            layers.extend(dropout(spec))
    layers.extend(head(spec, sequence_body=False))
    return Sequential(layers, input_shape=(None, spec.features))


def simple_rnn(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: SimpleRNN(spec.units, return_sequences=seq), 1)


def deep_rnn(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: SimpleRNN(spec.units, return_sequences=seq), 2)


def ln_rnn(spec: ModelSpec) -> Sequential:
    return _stack(
        spec, lambda seq: RNN(LayerNormSimpleRNNCell(spec.units), return_sequences=seq), 2
    )


def lstm(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: LSTM(spec.units, return_sequences=seq), 2)


def peephole_lstm(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: LSTM(spec.units, peephole=True, return_sequences=seq), 2)


def gru(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: GRU(spec.units, return_sequences=seq), 2)


def bilstm(spec: ModelSpec) -> Sequential:
    return _stack(spec, lambda seq: Bidirectional(LSTM(spec.units, return_sequences=seq)), 2)


def min_gru(spec: ModelSpec) -> Sequential:
    """Two stacked minGRU layers (Feng et al. 2024), trained by the log-space parallel scan."""
    return _stack(spec, lambda seq: MinGRU(spec.units, return_sequences=seq), 2)


def min_lstm(spec: ModelSpec) -> Sequential:
    """Two stacked minLSTM layers (Feng et al. 2024), trained by the log-space parallel scan."""
    return _stack(spec, lambda seq: MinLSTM(spec.units, return_sequences=seq), 2)
