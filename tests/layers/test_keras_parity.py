"""Keras options that seqcast layers once ignored or answered differently, each against a
reference written by hand from Keras' definition:

- `activation` / `recurrent_activation` on LSTMCell, GRUCell, LSTM and GRU (on every path);
- `Masking` and the `mask` argument of the recurrent layers: a masked step keeps the states
  and repeats the previous output (zeros with `zero_output_for_mask`, and in Bidirectional);
- `Bidirectional(merge_mode=None, return_state=True)` -> `(fw, bw, *fw_states, *bw_states)`;
- options a layer cannot honour raise instead of being ignored.
"""

import pytest
import torch
from torch import nn

from seqcast.errors import SeqcastError
from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Conv1D,
    Dropout,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    Masking,
    MinGRU,
    SimpleRNN,
    mask_of,
)
from seqcast.sequential import Sequential

D = torch.float64
TOL = dict(rtol=0, atol=1e-12)

# Keras' definitions, written out (Keras 3: hard_sigmoid(x) = relu6(x + 3) / 6)
ACT = {
    "tanh": torch.tanh,
    "sigmoid": lambda v: 1 / (1 + torch.exp(-v)),
    "relu": lambda v: v.clamp(min=0),
    "hard_sigmoid": lambda v: (v / 6 + 0.5).clamp(0, 1),
    "softsign": lambda v: v / (1 + v.abs()),
}


def _weights(cell):
    return cell.weight_ih, cell.weight_hh, cell.bias


def lstm_by_hand(x, cell, act, rec, mask=None, zero_output=False, h=None, c=None):
    """Keras' LSTM over x (B, T, F), masked steps skipped. Returns (outputs, h_T, c_T)."""
    w_ih, w_hh, b = _weights(cell)
    batch, units = x.shape[0], cell.units
    h = x.new_zeros(batch, units) if h is None else h
    c = x.new_zeros(batch, units) if c is None else c
    previous, outputs = x.new_zeros(batch, units), []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.T + b + h @ w_hh.T
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c_new = ACT[rec](f) * c + ACT[rec](i) * ACT[act](g)
        h_new = ACT[rec](o) * ACT[act](c_new)
        keep = torch.ones(batch, 1, dtype=torch.bool) if mask is None else mask[:, t, None]
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        skipped = torch.zeros_like(h) if zero_output else previous
        previous = torch.where(keep, h_new, skipped)
        outputs.append(previous)
    return torch.stack(outputs, 1), h, c


def gru_by_hand(x, cell, act, rec, mask=None, zero_output=False):
    """Keras' GRU (reset_after=True) over x (B, T, F). Returns (outputs, h_T)."""
    w_ih, w_hh, b = _weights(cell)
    batch, units = x.shape[0], cell.units
    h = x.new_zeros(batch, units)
    previous, outputs = x.new_zeros(batch, units), []
    for t in range(x.shape[1]):
        xs = x[:, t] @ w_ih.T + b
        a = h @ w_hh.T + cell.bias_hh
        xr, xz, xn = (xs[:, k * units : (k + 1) * units] for k in range(3))
        ar, az, an = (a[:, k * units : (k + 1) * units] for k in range(3))
        r, u = ACT[rec](xr + ar), ACT[rec](xz + az)
        h_new = (1 - u) * ACT[act](xn + r * an) + u * h
        keep = torch.ones(batch, 1, dtype=torch.bool) if mask is None else mask[:, t, None]
        h = torch.where(keep, h_new, h)
        previous = torch.where(keep, h_new, torch.zeros_like(h) if zero_output else previous)
        outputs.append(previous)
    return torch.stack(outputs, 1), h


def _built(layer, features=3):
    layer.build((None, None, features))
    layer.double()
    for p in layer.parameters():  # off the initial values, so every term shows
        p.data.add_(0.3 * torch.randn_like(p))
    return layer


# -- activation and recurrent_activation ------------------------------------------------------

ACTIVATION_CASES = [
    ("relu", "sigmoid"),
    ("tanh", "hard_sigmoid"),
    ("softsign", "hard_sigmoid"),
]
CASE_IDS = [f"{a}-{r}" for a, r in ACTIVATION_CASES]


@pytest.mark.parametrize("act, rec", ACTIVATION_CASES, ids=CASE_IDS)
def test_lstm_cell_step_uses_both_activations(act, rec):
    cell = LSTMCell(4, activation=act, recurrent_activation=rec)
    cell.build((None, 3))
    cell.double()
    x, h, c = (torch.randn(2, n, dtype=D) for n in (3, 4, 4))
    y, (h1, c1) = cell(x, [h, c])
    _, h_ref, c_ref = lstm_by_hand(x[:, None], cell, act, rec, h=h, c=c)
    torch.testing.assert_close(h1, h_ref, **TOL)
    torch.testing.assert_close(c1, c_ref, **TOL)
    default = LSTMCell(4)
    default.build((None, 3))
    default.double().load_state_dict(cell.state_dict())
    assert not torch.allclose(default(x, [h, c])[0], y)  # the option changes the result


@pytest.mark.parametrize("act, rec", ACTIVATION_CASES, ids=CASE_IDS)
def test_gru_cell_step_uses_both_activations(act, rec):
    cell = GRUCell(4, activation=act, recurrent_activation=rec)
    cell.build((None, 3))
    cell.double()
    cell.bias_hh.data.normal_()
    x, h = torch.randn(2, 3, dtype=D), torch.zeros(2, 4, dtype=D)
    y, _ = cell(x, [h])
    torch.testing.assert_close(y, gru_by_hand(x[:, None], cell, act, rec)[1], **TOL)


def test_gru_reset_before_uses_both_activations():
    cell = GRUCell(4, activation="relu", recurrent_activation="hard_sigmoid", reset_after=False)
    cell.build((None, 3))
    cell.double()
    x, h = torch.randn(2, 3, dtype=D), torch.randn(2, 4, dtype=D)
    w_r, w_z, w_n = cell.weight_hh.chunk(3)
    xr, xz, xn = (x @ cell.weight_ih.T + cell.bias).chunk(3, dim=-1)
    r = ACT["hard_sigmoid"](xr + h @ w_r.T)
    u = ACT["hard_sigmoid"](xz + h @ w_z.T)
    expected = (1 - u) * ACT["relu"](xn + (r * h) @ w_n.T) + u * h
    torch.testing.assert_close(cell(x, [h])[0], expected, **TOL)


@pytest.mark.parametrize("implementation", ["auto", "compiled", "loop"])
def test_lstm_and_gru_layers_with_activations_equal_the_hand_loop(implementation):
    x = torch.randn(3, 6, 3, dtype=D)
    lstm = _built(
        LSTM(4, activation="relu", recurrent_activation="hard_sigmoid", return_sequences=True,
             return_state=True, implementation=implementation)
    )  # fmt: skip
    out, h, c = lstm(x)
    ref_out, ref_h, ref_c = lstm_by_hand(x, lstm.cell, "relu", "hard_sigmoid")
    for a, b in zip((out, h, c), (ref_out, ref_h, ref_c), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    gru = _built(
        GRU(4, activation="softsign", return_sequences=True, implementation=implementation)
    )
    torch.testing.assert_close(gru(x), gru_by_hand(x, gru.cell, "softsign", "sigmoid")[0], **TOL)


def test_default_activations_still_take_the_fast_paths_and_agree_with_the_hand_loop():
    x = torch.randn(3, 6, 3, dtype=D)
    for implementation in ("torch", "compiled", "loop"):
        lstm = _built(LSTM(4, return_sequences=True, implementation=implementation))
        expected = lstm_by_hand(x, lstm.cell, "tanh", "sigmoid")[0]
        torch.testing.assert_close(lstm(x), expected, rtol=0, atol=1e-10)


def test_activations_survive_the_config_and_unnamed_functions_cannot_be_saved():
    for layer in (
        LSTMCell(3, activation="relu", recurrent_activation="hard_sigmoid"),
        GRUCell(3, activation="softsign", recurrent_activation="hard_sigmoid"),
        LSTM(3, activation="relu", recurrent_activation="hard_sigmoid"),
        GRU(3, activation="relu", reset_after=False),
        LayerNormLSTMCell(3, activation="relu"),
        LayerNormGRUCell(3, recurrent_activation="hard_sigmoid"),
    ):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        assert "activation" in config and "recurrent_activation" in config
    cell = LSTMCell(3, activation=lambda v: v)
    cell(torch.randn(2, 4))  # runs
    with pytest.raises(SeqcastError, match="`activation` is a function with no name"):
        cell.get_config()


def test_layer_norm_cells_honour_their_activations():
    x = torch.randn(2, 5, 3, dtype=D)
    for make in (LayerNormLSTMCell, LayerNormGRUCell):
        plain, relu = RNN(make(4)), RNN(make(4, activation="relu"))
        _built(plain)
        _built(relu).load_state_dict(plain.state_dict())
        assert not torch.allclose(plain(x), relu(x))


# -- masks -------------------------------------------------------------------------------------


def _padded(batch=3, steps=6, features=3):
    """Random steps with some rows zero (masked): a leading, an inner and trailing padding."""
    x = torch.randn(batch, steps, features, dtype=D)
    keep = torch.ones(batch, steps, dtype=torch.bool)
    keep[0, 4:] = False  # trailing padding
    keep[1, :2] = False  # leading padding
    keep[2, 3] = False  # a gap
    return x * keep[..., None], keep


def test_masking_marks_steps_whose_features_all_equal_the_mask_value():
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-1.0, -1.0]]])
    out = Masking()(x)
    assert torch.equal(mask_of(out), torch.tensor([[True, False, True]]))
    assert torch.equal(out, x)
    out = Masking(mask_value=-1.0)(x)
    assert torch.equal(mask_of(out), torch.tensor([[True, True, False]]))
    assert torch.equal(out[0, 2], torch.zeros(2))  # masked steps are zeroed, as in Keras
    assert Masking(-1.0).get_config() == {"mask_value": -1.0}
    with pytest.raises(SeqcastError, match=r"expected input of shape \(batch, time, features\)"):
        Masking()(torch.randn(2, 3))


@pytest.mark.parametrize("zero_output", [False, True], ids=["carry_output", "zero_output"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
def test_masked_lstm_equals_the_hand_loop(return_sequences, zero_output):
    x, keep = _padded()
    layer = _built(
        LSTM(4, return_sequences=return_sequences, return_state=True,
             zero_output_for_mask=zero_output)
    )  # fmt: skip
    out, h, c = layer(x, mask=keep)
    ref, ref_h, ref_c = lstm_by_hand(x, layer.cell, "tanh", "sigmoid", keep, zero_output)
    torch.testing.assert_close(out, ref if return_sequences else ref[:, -1], **TOL)
    torch.testing.assert_close(h, ref_h, **TOL)
    torch.testing.assert_close(c, ref_c, **TOL)
    # the sequence with trailing padding ends on its last real step; the gap repeats step 2
    unmasked = lstm_by_hand(x[:1, :4], layer.cell, "tanh", "sigmoid")
    torch.testing.assert_close(h[0], unmasked[1][0], **TOL)
    if return_sequences and not zero_output:
        torch.testing.assert_close(out[2, 3], out[2, 2], **TOL)
        assert torch.equal(out[1, :2], torch.zeros(2, 4, dtype=D))  # nothing before: zeros


def test_masked_gru_with_activation_and_go_backwards_equals_the_hand_loop():
    x, keep = _padded()
    layer = _built(GRU(4, activation="relu", go_backwards=True, return_sequences=True))
    expected = gru_by_hand(x.flip(1), layer.cell, "relu", "sigmoid", keep.flip(1))[0]
    torch.testing.assert_close(layer(x, mask=keep), expected, **TOL)


def test_masked_simple_rnn_in_closed_form():
    # linear activation, W_ih = 1, W_hh = 1, b = 0: h_T is the sum of the unmasked inputs
    x = torch.arange(1.0, 7.0, dtype=D).reshape(1, 6, 1)
    keep = torch.tensor([[True, False, True, True, False, False]])
    layer = SimpleRNN(1, activation="linear", return_sequences=True).double()
    layer(x)
    with torch.no_grad():
        layer.cell.weight_ih.fill_(1.0)
        layer.cell.weight_hh.fill_(1.0)
    out = layer(x, mask=keep)[0, :, 0]
    assert out.tolist() == [1.0, 1.0, 4.0, 8.0, 8.0, 8.0]


def test_masking_layer_feeds_its_mask_to_the_recurrent_layers_after_it():
    x, keep = _padded()
    model = Sequential(
        [Masking(), LSTM(4, return_sequences=True), Dropout(0.5), LSTM(3)], input_shape=(None, 3)
    ).double()
    model.eval()
    first, second = model.layers[1], model.layers[3]
    hidden = lstm_by_hand(x, first.cell, "tanh", "sigmoid", keep)[0]
    expected = lstm_by_hand(hidden, second.cell, "tanh", "sigmoid", keep)[1]
    torch.testing.assert_close(model(x), expected, **TOL)
    # explicit mask= on the layer equals the mask Masking attached
    torch.testing.assert_close(first(x, mask=keep), first(Masking()(x)), **TOL)


def test_masked_steps_get_no_gradient_from_the_output():
    x, keep = _padded()
    x = x + (~keep)[..., None] * torch.randn_like(x)  # padding that is not zero
    x.requires_grad_()
    layer = _built(GRU(4, return_sequences=True))
    layer(x, mask=keep).sum().backward()
    assert torch.all(x.grad[~keep] == 0) and torch.all(x.grad[keep].abs().sum(-1) > 0)


def test_bad_masks_and_layers_that_cannot_skip_steps_are_refused():
    layer = LSTM(3)
    with pytest.raises(SeqcastError, match=r"expected a mask of shape \(batch, time\)"):
        layer(torch.randn(2, 4, 1), mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(SeqcastError, match="MinGRU does not support masks"):
        MinGRU(3)(Masking()(torch.randn(2, 4, 1)))
    with pytest.warns(UserWarning, match="Conv1D got an input with a mask"):
        Conv1D(2, 2)(Masking()(torch.randn(2, 4, 1)))


# -- Bidirectional -----------------------------------------------------------------------------


def test_bidirectional_without_merge_returns_keras_flat_tuple():
    x = torch.randn(2, 5, 3, dtype=D)
    layer = Bidirectional(GRU(4, return_state=True), merge_mode=None).double()
    result = layer(x)
    assert isinstance(result, tuple) and len(result) == 4
    fw, bw, h_fw, h_bw = result
    torch.testing.assert_close(fw, h_fw, **TOL)  # GRU: the output is the state
    torch.testing.assert_close(bw, h_bw, **TOL)
    torch.testing.assert_close(fw, layer.forward_layer(x)[0], **TOL)
    torch.testing.assert_close(bw, layer.backward_layer(x)[0], **TOL)

    lstm = Bidirectional(LSTM(4, return_state=True, return_sequences=True), merge_mode=None)
    fw, bw, h_fw, c_fw, h_bw, c_bw = lstm(x.float())
    assert fw.shape == bw.shape == (2, 5, 4) and c_fw.shape == c_bw.shape == (2, 4)
    torch.testing.assert_close(bw[:, 0], h_bw)  # the backward half ends at step 0
    assert isinstance(Bidirectional(GRU(2), merge_mode=None)(x.float()), tuple)

    merged, *states = Bidirectional(LSTM(4, return_state=True))(x.float())
    assert merged.shape == (2, 8) and len(states) == 4


def test_masked_bidirectional_outputs_zeros_at_masked_steps_as_keras():
    x, keep = _padded()
    layer = Bidirectional(GRU(4, return_sequences=True), merge_mode=None)
    layer(x.float())
    layer.double()
    fw, bw = layer(x, mask=keep)
    assert layer.forward_layer.zero_output_for_mask and layer.backward_layer.zero_output_for_mask
    cell_fw, cell_bw = layer.forward_layer.cell, layer.backward_layer.cell
    torch.testing.assert_close(fw, gru_by_hand(x, cell_fw, "tanh", "sigmoid", keep, True)[0])
    expected_bw = gru_by_hand(x.flip(1), cell_bw, "tanh", "sigmoid", keep.flip(1), True)[0]
    torch.testing.assert_close(bw, expected_bw.flip(1))
    assert torch.all(fw[~keep] == 0) and torch.all(bw[~keep] == 0)
    assert torch.equal(mask_of(Bidirectional(GRU(2, return_sequences=True))(Masking()(x))), keep)


# -- options a layer cannot honour raise -------------------------------------------------------


def test_options_a_cell_cannot_honour_are_refused():
    with pytest.raises(TypeError, match="reset_after"):
        LayerNormGRUCell(3, reset_after=False)
    with pytest.raises(TypeError, match="peephole"):
        LayerNormLSTMCell(3, peephole=True)
    with pytest.raises(SeqcastError, match="unknown activation 'tanhh'"):
        GRUCell(3, recurrent_activation="tanhh")

    class UserCell(nn.Module):
        state_size = 2
        recurrent_dropout = 0.2

        def forward(self, x, states):
            return states[0], states

    with pytest.raises(SeqcastError, match="cannot apply recurrent dropout inside UserCell"):
        RNN(UserCell())
