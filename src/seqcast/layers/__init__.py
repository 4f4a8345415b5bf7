"""PyTorch modules with Keras semantics: cells, recurrent layers, wrappers, convolutions."""

from seqcast.layers._compiled import build_in_background as build_kernels_in_background
from seqcast.layers.base import Layer, deserialize, mask_of, registered_layers, serialize
from seqcast.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from seqcast.layers.conv import Conv1D, WaveNet, receptive_field
from seqcast.layers.core import (
    Dense,
    Dropout,
    Flatten,
    LayerNormalization,
    Masking,
    RepeatVector,
)
from seqcast.layers.norm_cells import LayerNormGRUCell, LayerNormLSTMCell, LayerNormSimpleRNNCell
from seqcast.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from seqcast.layers.scan import MinGRU, MinLSTM
from seqcast.layers.wrappers import Bidirectional, TimeDistributed

__all__ = [
    "Layer",
    "serialize",
    "deserialize",
    "registered_layers",
    "mask_of",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormSimpleRNNCell",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "RNN",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "MinGRU",
    "MinLSTM",
    "Bidirectional",
    "TimeDistributed",
    "Dense",
    "Flatten",
    "Dropout",
    "LayerNormalization",
    "RepeatVector",
    "Masking",
    "Conv1D",
    "WaveNet",
    "receptive_field",
    "build_kernels_in_background",
]
