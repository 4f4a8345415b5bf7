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


# -- consecutive LSTM layers run as one call ------------------------------------------------------
_needs_kernels = pytest.mark.skipif(
    not __import__("seqcast.layers._compiled", fromlist=["available"]).available(),
    reason="compiled recurrences unavailable",
)


def _counting_stack(monkeypatch):
    from seqcast.layers import _compiled

    calls, real = [], _compiled.lstm_stack

    def counted(xs, layers, workers=None):
        calls.append((len(layers), _compiled.stack_threads()))
        return real(xs, layers, workers)

    monkeypatch.setattr(_compiled, "lstm_stack", counted)
    return calls


@_needs_kernels
def test_stacked_lstm_layers_run_as_one_call_with_the_layers_results(monkeypatch):
    torch.manual_seed(0)
    model = seq(
        LSTM(5, return_sequences=True),
        LSTM(4, peephole=True, return_sequences=True, use_bias=False),
        LSTM(3),
        Dense(2),
        features=2,
    ).double()
    x = torch.randn(6, 7, 2, dtype=torch.float64)
    one_by_one = x
    for layer in model.layers:
        one_by_one = layer(one_by_one)
    want = torch.autograd.grad(one_by_one.square().sum(), list(model.parameters()))
    calls = _counting_stack(monkeypatch)
    y = model(x)
    got = torch.autograd.grad(y.square().sum(), list(model.parameters()))
    assert calls and calls[0][0] == 3
    torch.testing.assert_close(y, one_by_one, rtol=0, atol=1e-12)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


@_needs_kernels
@pytest.mark.parametrize(
    "second, training, stacked",
    [
        (lambda: LSTM(3, return_sequences=True), True, 2),
        (lambda: LSTM(3, return_sequences=True, dropout=0.2), True, 0),  # its own masks
        (lambda: LSTM(3, return_sequences=True, dropout=0.2), False, 2),  # none in inference
        (lambda: LSTM(3, return_sequences=True, recurrent_dropout=0.2), True, 0),
        (lambda: LSTM(3, return_sequences=True, go_backwards=True), True, 0),
        (lambda: LSTM(3, return_sequences=True, implementation="loop"), True, 0),
        (lambda: GRU(3, return_sequences=True), True, 0),
    ],
    ids=["plain", "dropout", "dropout_eval", "recurrent_dropout", "backwards", "loop", "gru"],
)
def test_lstm_layers_run_on_their_own_where_the_stack_would_change_them(
    monkeypatch, second, training, stacked
):
    model = seq(LSTM(4, return_sequences=True), second(), TimeDistributed(Dense(1)))
    model.train(training)
    calls = _counting_stack(monkeypatch)
    model(torch.randn(2, 5, 1))
    assert [n for n, _ in calls] == ([stacked] if stacked else [])


@_needs_kernels
def test_a_forward_hook_keeps_its_layers_call(monkeypatch):
    model = seq(LSTM(4, return_sequences=True), LSTM(3))
    seen = []
    model.layers[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    calls = _counting_stack(monkeypatch)
    model(torch.randn(2, 5, 1))
    assert calls == [] and seen == [torch.Size([2, 3])]


@_needs_kernels
@pytest.mark.parametrize("threads, expected", [(1, 1), (None, None)])
def test_fit_runs_the_stack_on_the_threads_asked_for(monkeypatch, threads, expected):
    from seqcast.layers import _compiled

    model = seq(LSTM(4, return_sequences=True), LSTM(3), Dense(1))
    calls = _counting_stack(monkeypatch)
    model.fit(torch.randn(8, 5, 1), torch.randn(8, 1), epochs=1, threads=threads, verbose=False)
    default = _compiled.stack_threads()
    assert calls and {t for _, t in calls} == {default if expected is None else expected}
