"""Dispatch to PyTorch's fused recurrences (oneDNN/ATen on CPU, cuDNN on GPU).

A cell whose declared kernel (`cell.kernel()`) is one `torch.nn.RNN/LSTM/GRU` computes exactly
(`KERNELS`) can run through `torch._VF`, the same entry point those modules call, with the
cell's own parameters; `RNN` decides when it does. PyTorch keeps two
bias vectors per gate where Keras keeps one: the fused call gets the cell's bias as `bias_ih`
and zeros as `bias_hh` (GRU with reset_after genuinely has both, and passes both).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from seqcast.layers.cells import RecurrentCell, States

_FUSED_ACTIVATIONS = {"simple_rnn_tanh": torch._VF.rnn_tanh, "simple_rnn_relu": torch._VF.rnn_relu}

#: The kernels (the names cells declare in `kernel()`) that torch.nn computes exactly.
KERNELS = frozenset({"lstm", "gru", *_FUSED_ACTIVATIONS})


def _flat_weights(cell: RecurrentCell) -> list[Tensor]:
    if cell.bias is None:
        return [cell.weight_ih, cell.weight_hh]
    bias_hh = getattr(cell, "bias_hh", None)
    if bias_hh is None:
        bias_hh = torch.zeros_like(cell.bias)
    return [cell.weight_ih, cell.weight_hh, cell.bias, bias_hh]


def run_fused(kernel: str, cell: RecurrentCell, x: Tensor, states: States) -> tuple[Tensor, States]:
    """x (B, T, F), states [(B, H), ...] -> outputs (B, T, H), final states, for a cell that
    declares `kernel` (one of `KERNELS`)."""
    weights = _flat_weights(cell)
    args = (len(weights) == 4, 1, 0.0, cell.training, False, True)
    with warnings.catch_warnings():
        # cuDNN asks for one contiguous weight buffer; ours are separate Parameters.
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        if kernel == "lstm":
            hx = (states[0].unsqueeze(0), states[1].unsqueeze(0))
            out, h, c = torch._VF.lstm(x, hx, weights, *args)
            return out, [h.squeeze(0), c.squeeze(0)]
        if kernel == "gru":
            out, h = torch._VF.gru(x, states[0].unsqueeze(0), weights, *args)
            return out, [h.squeeze(0)]
        out, h = _FUSED_ACTIVATIONS[kernel](x, states[0].unsqueeze(0), weights, *args)
        return out, [h.squeeze(0)]
