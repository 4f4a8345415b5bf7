"""Dispatch to PyTorch's fused recurrences (oneDNN/ATen on CPU, cuDNN on GPU).

A cell configuration that `torch.nn.RNN/LSTM/GRU` computes exactly runs through `torch._VF`,
the same entry point those modules call, with the cell's own parameters. PyTorch keeps two
bias vectors per gate where Keras keeps one: the fused call gets the cell's bias as `bias_ih`
and zeros as `bias_hh` (GRU with reset_after genuinely has both, and passes both).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from seqcast.layers.cells import GRUCell, LSTMCell, RecurrentCell, SimpleRNNCell, States

_FUSED_ACTIVATIONS = {"tanh": torch._VF.rnn_tanh, "relu": torch._VF.rnn_relu}


def can_fuse(cell: object) -> bool:
    """True when torch.nn computes exactly this cell (exact class: subclasses change the math)."""
    if type(cell) is LSTMCell:
        return not cell.peephole
    if type(cell) is GRUCell:
        return cell.reset_after
    if type(cell) is SimpleRNNCell:
        return cell.activation_name in _FUSED_ACTIVATIONS
    return False


def _flat_weights(cell: RecurrentCell) -> list[Tensor]:
    if cell.bias is None:
        return [cell.weight_ih, cell.weight_hh]
    bias_hh = getattr(cell, "bias_hh", None)
    if bias_hh is None:
        bias_hh = torch.zeros_like(cell.bias)
    return [cell.weight_ih, cell.weight_hh, cell.bias, bias_hh]


def run_fused(cell: RecurrentCell, x: Tensor, states: States) -> tuple[Tensor, States]:
    """x (B, T, F), states [(B, H), ...] -> outputs (B, T, H), final states."""
    weights = _flat_weights(cell)
    args = (len(weights) == 4, 1, 0.0, cell.training, False, True)
    with warnings.catch_warnings():
        # cuDNN asks for one contiguous weight buffer; ours are separate Parameters.
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        if isinstance(cell, LSTMCell):
            hx = (states[0].unsqueeze(0), states[1].unsqueeze(0))
            out, h, c = torch._VF.lstm(x, hx, weights, *args)
            return out, [h.squeeze(0), c.squeeze(0)]
        if isinstance(cell, GRUCell):
            out, h = torch._VF.gru(x, states[0].unsqueeze(0), weights, *args)
            return out, [h.squeeze(0)]
        run = _FUSED_ACTIVATIONS[cell.activation_name]
        out, h = run(x, states[0].unsqueeze(0), weights, *args)
        return out, [h.squeeze(0)]
