"""PyTorch modules with Keras semantics: cells, recurrent layers, wrappers, convolutions."""

from seqcast.layers.base import Layer, deserialize, serialize
from seqcast.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from seqcast.layers.conv import Conv1D, WaveNet, receptive_field
from seqcast.layers.core import Dense, Dropout, Flatten, LayerNormalization, RepeatVector
from seqcast.layers.norm_cells import LayerNormGRUCell, LayerNormLSTMCell, LayerNormSimpleRNNCell
from seqcast.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from seqcast.layers.scan import MinGRU, MinLSTM
from seqcast.layers.wrappers import Bidirectional, TimeDistributed

__all__ = [
    "Layer",
    "serialize",
    "deserialize",
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
    "Conv1D",
    "WaveNet",
    "receptive_field",
]
