"""Sequential: up-front building, parameter counts of the notes' models, summary, config."""

import pytest
import torch

from seqcast.errors import SeqcastError
from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Conv1D,
    Dense,
    Flatten,
    LayerNormSimpleRNNCell,
    SimpleRNN,
    TimeDistributed,
    WaveNet,
)
from seqcast.sequential import Sequential


def seq(*layers, features=1, steps=None):
    return Sequential(list(layers), input_shape=(steps, features))


def test_the_notes_models_have_keras_parameter_counts():
    two_rnns = seq(SimpleRNN(300, return_sequences=True), SimpleRNN(300))
    assert [r.params for r in two_rnns.summary(print_fn=None).rows] == [90_600, 180_300]
    bi = seq(Bidirectional(LSTM(300, return_sequences=True)), Bidirectional(LSTM(300)))
    assert [r.params for r in bi.summary(print_fn=None).rows] == [724_800, 2_162_400]
    assert seq(LSTM(300)).count_params() == 362_400
    assert seq(GRU(20)).count_params() == 1_380
    lstm_s2s = seq(
        LSTM(20, return_sequences=True), LSTM(20, return_sequences=True), TimeDistributed(Dense(10))
    )
    assert lstm_s2s.count_params() == 5_250
    wavenet = seq(WaveNet(20, kernel_size=2, dilation_rates=(1, 2, 4, 8) * 2), Conv1D(10, 1))
    assert wavenet.count_params() == 6_010
    conv_gru = seq(
        Conv1D(20, 4, strides=2),
        GRU(20, return_sequences=True),
        GRU(20, return_sequences=True),
        TimeDistributed(Dense(10)),
    )
    assert conv_gru.count_params() == 5_350
    ln = seq(
        RNN(LayerNormSimpleRNNCell(20), return_sequences=True),
        RNN(LayerNormSimpleRNNCell(20), return_sequences=True),
        TimeDistributed(Dense(10)),
    )
    assert ln.count_params() == 480 + 860 + 210


def test_summary_table_lists_layers_shapes_and_counts():
    lines = []
    summary = seq(LSTM(20, return_sequences=True), LSTM(20), Dense(1)).summary(
        print_fn=lines.append
    )
    text = lines[0]
    assert str(summary) == text
    assert "lstm (LSTM)" in text and "lstm_1 (LSTM)" in text and "dense (Dense)" in text
    assert "(None, None, 20)" in text and "(None, 20)" in text and "(None, 1)" in text
    assert "Total params: 5,061" in text
    assert summary.total_params == 1_760 + 3_280 + 21


def test_flatten_needs_fixed_steps():
    model = seq(Flatten(), Dense(1), steps=50)
    assert model.count_params() == 51
    assert model(torch.randn(4, 50, 1)).shape == (4, 1)


def test_sequential_forward_and_add():
    model = Sequential(input_shape=(None, 1))
    model.add(SimpleRNN(20, return_sequences=True)).add(SimpleRNN(20)).add(Dense(1))
    assert model.output_shape == (None, 1)
    assert model(torch.randn(3, 9, 1)).shape == (3, 1)


def test_sequential_rejects_return_state_and_plain_modules():
    with pytest.raises(SeqcastError, match="return_state=True.*cannot sit inside a Sequential"):
        seq(LSTM(3, return_state=True))
    with pytest.raises(SeqcastError, match="Sequential takes seqcast layers; got Linear"):
        seq(torch.nn.Linear(1, 1))


def test_config_round_trip_rebuilds_the_same_architecture():
    model = seq(
        Conv1D(8, 4, strides=2),
        Bidirectional(GRU(5, return_sequences=True)),
        RNN(LayerNormSimpleRNNCell(4), return_sequences=True),
        TimeDistributed(Dense(2)),
    )
    clone = Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 12, 1)
    torch.testing.assert_close(clone(x), model(x))
