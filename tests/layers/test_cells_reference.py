"""Every cell's Python loop path against the plain float64 reference loops written from the
equations (`tests/reference/recurrences.py`), with and without a recurrent-dropout mask."""

import pytest
import torch
from reference.recurrences import (
    gru_reference,
    ln_gru_reference,
    ln_lstm_reference,
    ln_simple_rnn_reference,
    lstm_reference,
    simple_rnn_reference,
)

from seqcast.layers import (
    RNN,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LayerNormSimpleRNNCell,
    LSTMCell,
    SimpleRNNCell,
)

D = torch.float64
B, T, F, H = 3, 7, 2, 5


def _reference(cell, x, states, rmask):
    xproj = torch.nn.functional.linear(x, cell.weight_ih, cell.bias)
    if isinstance(cell, LayerNormLSTMCell):
        return ln_lstm_reference(
            x,
            cell.weight_ih,
            cell.weight_hh,
            cell.bias,
            *states,
            cell.input_norm_gain,
            cell.input_norm_shift,
            cell.recurrent_norm_gain,
            cell.recurrent_norm_shift,
            cell.state_norm_gain,
            cell.state_norm_shift,
            cell.epsilon,
            rmask,
        )
    if isinstance(cell, LayerNormGRUCell):
        return ln_gru_reference(
            x,
            cell.weight_ih,
            cell.weight_hh,
            cell.bias,
            *states,
            cell.input_norm_gain,
            cell.input_norm_shift,
            cell.recurrent_norm_gain,
            cell.recurrent_norm_shift,
            cell.epsilon,
            rmask,
        )
    if isinstance(cell, LayerNormSimpleRNNCell):
        return ln_simple_rnn_reference(
            xproj,
            cell.weight_hh,
            *states,
            cell.norm_gain,
            cell.norm_shift,
            cell.epsilon,
            cell.activation_name,
            rmask,
        )
    if isinstance(cell, LSTMCell):
        return lstm_reference(xproj, cell.weight_hh, *states, cell.peephole_weight, rmask)
    if isinstance(cell, GRUCell):
        return gru_reference(xproj, cell.weight_hh, *states, cell.bias_hh, cell.reset_after, rmask)
    return simple_rnn_reference(xproj, cell.weight_hh, *states, cell.activation_name, rmask)


CELLS = {
    "simple_rnn": lambda: SimpleRNNCell(H),
    "simple_rnn_relu": lambda: SimpleRNNCell(H, activation="relu"),
    "lstm": lambda: LSTMCell(H),
    "peephole_lstm": lambda: LSTMCell(H, peephole=True),
    "gru": lambda: GRUCell(H),
    "gru_reset_before": lambda: GRUCell(H, reset_after=False),
    "ln_simple_rnn": lambda: LayerNormSimpleRNNCell(H),
    "ln_lstm": lambda: LayerNormLSTMCell(H),
    "ln_gru": lambda: LayerNormGRUCell(H),
}


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", CELLS)
def test_loop_path_equals_reference(name, masked):
    cell = CELLS[name]()
    cell.build((None, F))
    cell.double()
    for p in cell.parameters():  # move off the initial values (zero biases, unit gains)
        p.data.add_(0.2 * torch.randn_like(p))
    sizes = cell.state_size if isinstance(cell.state_size, tuple) else (cell.state_size,)
    states = [torch.randn(B, s, dtype=D) for s in sizes]
    rmask = (torch.rand(B, H, dtype=D) > 0.3).to(D) / 0.7 if masked else None
    x = torch.randn(B, T, F, dtype=D)

    layer = RNN(cell, return_sequences=True, return_state=True, implementation="loop")
    layer.build((None, T, F))
    ours = layer._run(x, list(states), rmask)  # the loop the layer runs, mask given explicitly
    expected = _reference(cell, x, states, rmask)
    torch.testing.assert_close(ours[0], expected[0], rtol=0, atol=1e-12)
    for a, b in zip(ours[1], expected[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
