"""Recurrent layers: Keras parameter counts and shapes, equality with torch.nn, path agreement."""

import pytest
import torch
from torch import nn

from seqcast.errors import SeqcastError
from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    Dense,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LayerNormSimpleRNNCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
    _compiled,
)
from seqcast.layers.core import LayerNormalization
from seqcast.sequential import Sequential

D = torch.float64
TOL = dict(rtol=0, atol=1e-10)


def _params(*layers, features=1):
    return Sequential(list(layers), input_shape=(None, features)).count_params()


def test_keras_parameter_counts():
    assert _params(LSTM(300)) == 362_400
    assert _params(SimpleRNN(300)) == 90_600
    assert _params(SimpleRNN(300, return_sequences=True), SimpleRNN(300)) == 90_600 + 180_300
    assert _params(GRU(20)) == 1_380  # reset_after: two bias vectors, as Keras counts
    assert _params(GRU(20, reset_after=False)) == 1_320
    assert _params(LSTM(20, peephole=True)) == 4 * (20 + 400 + 20) + 3 * 20
    assert _params(RNN(LayerNormSimpleRNNCell(20))) == 20 + 400 + 20 + 2 * 20


def test_hello_example_shapes():
    x = torch.randn(3, 5, 4)  # the notes' one-hot 'hello' batch: (N, T, D)
    outputs, state = SimpleRNN(2, return_sequences=True, return_state=True)(x)
    assert outputs.shape == (3, 5, 2) and state.shape == (3, 2)
    assert torch.equal(outputs[:, -1], state)
    assert SimpleRNN(2)(x).shape == (3, 2)
    out, h = SimpleRNN(2, return_state=True)(x)
    assert torch.equal(out, h)
    out, h, c = LSTM(2, return_state=True)(x)
    assert out.shape == h.shape == c.shape == (3, 2)


# -- equality with torch.nn, copied weights ---------------------------------------------------


def _torch_twin(layer):
    cell = layer.cell
    size_in, units = cell.weight_ih.shape[1], cell.units
    if isinstance(cell, LSTMCell):
        twin = nn.LSTM(size_in, units, batch_first=True)
    elif isinstance(cell, GRUCell):
        twin = nn.GRU(size_in, units, batch_first=True)
    else:
        twin = nn.RNN(size_in, units, nonlinearity=cell.activation_name, batch_first=True)
    twin = twin.double()
    with torch.no_grad():
        twin.weight_ih_l0.copy_(cell.weight_ih)
        twin.weight_hh_l0.copy_(cell.weight_hh)
        twin.bias_ih_l0.copy_(cell.bias)
        bias_hh = getattr(cell, "bias_hh", None)
        twin.bias_hh_l0.copy_(bias_hh if bias_hh is not None else torch.zeros_like(cell.bias))
    return twin


FUSABLE = [
    lambda: LSTM(6, return_sequences=True, return_state=True),
    lambda: GRU(6, return_sequences=True, return_state=True),
    lambda: SimpleRNN(6, return_sequences=True, return_state=True),
    lambda: SimpleRNN(6, activation="relu", return_sequences=True, return_state=True),
]


@pytest.mark.parametrize("make", FUSABLE)
@pytest.mark.parametrize("implementation", ["torch", "compiled", "loop"])
def test_equals_torch_nn_with_copied_weights(make, implementation):
    layer = make()
    layer.implementation = implementation
    x = torch.randn(4, 7, 3, dtype=D)
    layer(x)  # build, then copy weights out of it
    layer.cell.bias.data.uniform_(-0.5, 0.5)
    bias_hh = getattr(layer.cell, "bias_hh", None)
    if bias_hh is not None:
        bias_hh.data.uniform_(-0.5, 0.5)
    twin = _torch_twin(layer)
    h0 = torch.randn(4, 6, dtype=D)
    states = [h0, torch.randn(4, 6, dtype=D)] if isinstance(layer, LSTM) else [h0]

    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = layer(xa, states)
    hx = (states[0][None], states[1][None]) if isinstance(layer, LSTM) else states[0][None]
    out, hn = twin(xb, hx)
    theirs = (out, hn[0][0], hn[1][0]) if isinstance(layer, LSTM) else (out, hn[0])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL)

    weights = torch.randn_like(out)
    (ours[0] * weights).sum().backward()
    (out * weights).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    torch.testing.assert_close(layer.cell.weight_ih.grad, twin.weight_ih_l0.grad, **TOL)
    torch.testing.assert_close(layer.cell.weight_hh.grad, twin.weight_hh_l0.grad, **TOL)
    torch.testing.assert_close(layer.cell.bias.grad, twin.bias_ih_l0.grad, **TOL)


# -- every path of every cell agrees ----------------------------------------------------------

CELLS = {
    "simple_rnn": lambda: SimpleRNNCell(5),
    "simple_rnn_sigmoid": lambda: SimpleRNNCell(5, activation="sigmoid"),
    "lstm": lambda: LSTMCell(5),
    "peephole_lstm": lambda: LSTMCell(5, peephole=True),
    "gru": lambda: GRUCell(5),
    "gru_reset_before": lambda: GRUCell(5, reset_after=False),
    "ln_simple_rnn": lambda: LayerNormSimpleRNNCell(5),
    "ln_lstm": lambda: LayerNormLSTMCell(5),
    "ln_gru": lambda: LayerNormGRUCell(5),
}


def _run(layer, x, implementation):
    layer.implementation = implementation
    x = x.clone().requires_grad_()
    out, *states = layer(x)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=D).view_as(out)).sum()
    loss = loss + sum((s**2).sum() for s in states)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return [out.detach(), *[s.detach() for s in states], *grads]


@pytest.mark.parametrize("name", CELLS)
def test_compiled_and_loop_paths_agree(name):
    if not _compiled.available():
        pytest.skip("compiled kernels unavailable (no C++ compiler)")
    layer = RNN(CELLS[name](), return_sequences=True, return_state=True).double()
    x = torch.randn(3, 6, 2, dtype=D)
    layer(x)
    for p in layer.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    loop, compiled = _run(layer, x, "loop"), _run(layer, x, "compiled")
    for a, b in zip(loop, compiled, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize(
    "options",
    [{}, {"use_bias": False}, {"peephole": True, "recurrent_dropout": 0.3}],
    ids=["plain", "no_bias", "peephole_masked"],
)
def test_stacked_compiled_lstms_hand_on_step_major_views_exactly(options):
    # The compiled LSTM passes its output on as a (B, T, H) view of (T, H, B) memory; the next
    # layer reads it without a copy. Outputs and all gradients must equal the Python loop's.
    if not _compiled.available():
        pytest.skip("compiled kernels unavailable (no C++ compiler)")
    first = LSTM(4, return_sequences=True, **options)
    second = LSTM(3, return_sequences=True, return_state=True, **options)
    x = torch.randn(5, 7, 2, dtype=D)
    model = torch.nn.Sequential(first, second).double().train()
    model(x)
    results = []
    for implementation in ("loop", "compiled"):
        first.implementation = second.implementation = implementation
        torch.manual_seed(0)  # the same recurrent-dropout masks on both paths
        xg = x.clone().requires_grad_()
        out, h, c = model(xg)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=D).view_as(out)).sum()
        loss = loss + (h**2).sum() + (c**3).sum()
        results.append([out, h, c, *torch.autograd.grad(loss, [xg, *model.parameters()])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_gradcheck_every_cell(name):
    """float64 gradcheck of one step w.r.t. input, states and every parameter."""
    cell = CELLS[name]()
    cell.build((None, 2))
    cell.double()
    sizes = _sizes(cell)
    names = [n for n, _ in cell.named_parameters()]

    def step(x, *rest):
        states, params = list(rest[: len(sizes)]), dict(zip(names, rest[len(sizes) :], strict=True))
        y, new = torch.func.functional_call(cell, params, (x, states))
        return (y, *new)

    inputs = (
        torch.randn(2, 2, dtype=D),
        *[torch.randn(2, s, dtype=D) for s in sizes],
        *[p.detach().clone() for p in cell.parameters()],
    )
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(step, inputs)


def _sizes(cell):
    s = cell.state_size
    return s if isinstance(s, tuple) else (s,)


def test_recurrent_dropout_changes_training_output_only():
    layer = LSTM(8, recurrent_dropout=0.5, return_sequences=True).double()
    x = torch.randn(4, 10, 3, dtype=D)
    layer.eval()
    a, b = layer(x), layer(x)
    assert torch.equal(a, b)
    layer.train()
    torch.manual_seed(1)
    c = layer(x)
    assert not torch.allclose(a, c)


def test_go_backwards_reads_the_input_reversed():
    layer = GRU(4, return_sequences=True).double()
    x = torch.randn(2, 6, 3, dtype=D)
    forward = layer(x.flip(1))
    layer.go_backwards = True
    torch.testing.assert_close(layer(x), forward, **TOL)  # Keras: output in reversed order


def test_custom_cell_in_a_few_lines_matches_builtin():
    class LNSimpleRNNCell(nn.Module):  # the notes' cell, written by a user
        def __init__(self, units):
            super().__init__()
            self.state_size = units
            self.cell = SimpleRNNCell(units, activation=None)
            self.norm = LayerNormalization()

        def forward(self, x, states):
            y, _ = self.cell(x, states)
            y = torch.tanh(self.norm(y))
            return y, [y]

    user = RNN(LNSimpleRNNCell(5), return_sequences=True)
    model = Sequential([user], input_shape=(None, 2)).double()
    builtin = RNN(LayerNormSimpleRNNCell(5), return_sequences=True).double()
    x = torch.randn(3, 4, 2, dtype=D)
    builtin(x)
    with torch.no_grad():
        builtin.cell.weight_ih.copy_(user.cell.cell.weight_ih)
        builtin.cell.weight_hh.copy_(user.cell.cell.weight_hh)
        builtin.cell.bias.copy_(user.cell.cell.bias)
    assert model.count_params() == builtin.count_params() == 10 + 25 + 5 + 10
    torch.testing.assert_close(model(x), builtin(x), **TOL)


def test_rnn_rejects_bad_input():
    with pytest.raises(
        SeqcastError, match=r"expected input of shape \(batch, time, features\), got \(32, 50\)"
    ):
        LSTM(4)(torch.randn(32, 50))
    layer = LSTM(4)
    layer(torch.randn(2, 3, 5))
    with pytest.raises(SeqcastError, match="expected 5 input features"):
        layer(torch.randn(2, 3, 6))
    with pytest.raises(SeqcastError, match="time axis is empty"):
        layer(torch.randn(2, 0, 5))
    with pytest.raises(SeqcastError, match="`units` must be a positive integer, got 0"):
        LSTM(0)
    with pytest.raises(SeqcastError, match=r"`dropout` must be in \[0, 1\), got 1.0"):
        GRU(3, dropout=1.0)
    with pytest.raises(SeqcastError, match=r"`recurrent_dropout` must be in \[0, 1\), got -0.1"):
        SimpleRNN(3, recurrent_dropout=-0.1)
    with pytest.raises(SeqcastError, match="unknown activation 'tanhh'"):
        SimpleRNN(3, activation="tanhh")
    with pytest.raises(SeqcastError, match="expected initial_state of shapes"):
        layer(torch.randn(2, 3, 5), [torch.zeros(2, 4)])
    with pytest.raises(TypeError, match="unexpected keyword argument 'peepholes'"):
        LSTM(3, peepholes=True)
    with pytest.raises(TypeError, match="recurrent_activation"):
        SimpleRNN(3, recurrent_activation="sigmoid")  # Keras' SimpleRNN has none either


def test_torch_implementation_refuses_configurations_it_cannot_compute():
    layer = LSTM(3, peephole=True, implementation="torch")
    with pytest.raises(SeqcastError, match="implementation='torch' needs"):
        layer(torch.randn(2, 3, 1))


def test_config_round_trip_rebuilds_the_same_layer():
    for layer in [
        LSTM(4, peephole=True, return_sequences=True),
        GRU(3, reset_after=False),
        SimpleRNN(2, activation="relu", go_backwards=True),
        RNN(LayerNormSimpleRNNCell(3), return_sequences=True),
    ]:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_dense_head_after_rnn_builds_up_front():
    model = Sequential([LSTM(4), Dense(1)], input_shape=(None, 2))
    assert all(not isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert model(torch.randn(5, 7, 2)).shape == (5, 1)
