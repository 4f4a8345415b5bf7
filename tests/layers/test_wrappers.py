"""Bidirectional and TimeDistributed against explicit loops."""

import pytest
import torch

from seqcast.errors import SeqcastError
from seqcast.layers import GRU, LSTM, Bidirectional, Conv1D, Dense, SimpleRNN, TimeDistributed

D = torch.float64


def _halves(layer, x):
    """The forward half on x, and the backward half by hand: run on reversed time, flip back."""
    fw = layer.forward_layer
    bw = layer.backward_layer
    out_f = fw(x)
    # the backward half with go_backwards=False on the reversed input is the same computation
    bw.go_backwards = False
    out_b = bw(x.flip(1))
    bw.go_backwards = True
    return out_f, out_b


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_merges(mode, return_sequences):
    layer = Bidirectional(GRU(3, return_sequences=return_sequences), merge_mode=mode)
    x = torch.randn(2, 5, 4, dtype=D)
    layer(x)
    layer.double()
    out = layer(x)
    fw, bw = _halves(layer, x)
    if return_sequences:
        bw = bw.flip(1)  # step t of the backward half refers to input t
    expected = {
        "concat": lambda: torch.cat([fw, bw], -1),
        "sum": lambda: fw + bw,
        "mul": lambda: fw * bw,
        "ave": lambda: (fw + bw) / 2,
        None: lambda: [fw, bw],
    }[mode]()
    if mode is None:
        for a, b in zip(out, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    else:
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_bidirectional_backward_step_sees_the_future():
    layer = Bidirectional(SimpleRNN(2, return_sequences=True)).double()
    x = torch.randn(1, 6, 1, dtype=D)
    base = layer(x)
    x2 = x.clone()
    x2[0, -1, 0] += 1.0
    changed = layer(x2)
    # the backward half at step 0 has read the whole sequence, the forward half has not
    assert torch.equal(base[0, 0, :2], changed[0, 0, :2])
    assert not torch.equal(base[0, 0, 2:], changed[0, 0, 2:])


def test_bidirectional_return_state_and_weights_are_independent():
    layer = Bidirectional(LSTM(3, return_state=True))
    out, hf, cf, hb, cb = layer(torch.randn(2, 4, 1))
    assert out.shape == (2, 6) and hf.shape == cb.shape == (2, 3)
    assert not torch.equal(layer.forward_layer.cell.weight_hh, layer.backward_layer.cell.weight_hh)
    assert layer.count_params() == 2 * layer.forward_layer.count_params()


def test_bidirectional_refuses_non_recurrent_layers():
    with pytest.raises(SeqcastError, match="Bidirectional wraps a recurrent layer.*got Dense"):
        Bidirectional(Dense(3))
    with pytest.raises(SeqcastError, match="unknown merge_mode 'max'"):
        Bidirectional(LSTM(3), merge_mode="max")


def test_time_distributed_equals_a_loop_over_steps():
    layer = TimeDistributed(Dense(4, activation="relu"))
    x = torch.randn(3, 5, 2, dtype=D)
    layer(x)
    layer.double()
    out = layer(x)
    loop = torch.stack([layer.layer(x[:, t]) for t in range(5)], dim=1)
    torch.testing.assert_close(out, loop, rtol=0, atol=0)
    assert layer.compute_output_shape((None, None, 2)) == (None, None, 4)


def test_time_distributed_rejects_sequence_free_input():
    with pytest.raises(SeqcastError, match="expected input of shape \\(batch, time, features\\)"):
        TimeDistributed(Dense(2))(torch.randn(4, 3))
    with pytest.raises(SeqcastError, match="wraps a seqcast layer"):
        TimeDistributed(torch.nn.Linear(2, 2))


def test_bidirectional_rejects_conv():
    with pytest.raises(SeqcastError, match="got Conv1D"):
        Bidirectional(Conv1D(3, 2))
