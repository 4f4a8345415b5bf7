"""Encoder-decoder: a sequence-to-vector encoder, then a vector-to-sequence decoder.

The encoder LSTM reads the window into one vector; `RepeatVector` feeds that vector to the
decoder at each of the `horizon` output steps; a per-step Dense gives one value per step.
"""

from __future__ import annotations

from seqcast.layers import LSTM, Dense, Flatten, RepeatVector, TimeDistributed
from seqcast.models.heads import dropout
from seqcast.models.spec import ModelSpec
from seqcast.sequential import Sequential


def encoder_decoder(spec: ModelSpec) -> Sequential:
    layers = [
        LSTM(spec.units),  # encoder: (B, T, F) -> (B, U)
        *dropout(spec),
        RepeatVector(spec.horizon),  # (B, U) -> (B, H, U)
        LSTM(spec.units, return_sequences=True),  # decoder
        TimeDistributed(Dense(1)),  # (B, H, 1)
        Flatten(),  # (B, H)
    ]
    return Sequential(layers, input_shape=(None, spec.features))
