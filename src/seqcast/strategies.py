"""Multi-step forecasting, three ways over one model family.

- "recursive": the model predicts one step; its prediction is appended to the window and fed
  back, `horizon` times (errors compound, but any horizon can be asked for later).
- "direct":    the model predicts the whole horizon as one vector.
- "seq2seq":   the model predicts the next `horizon` values at every time step of the window
  (more gradient signal per window, as in the notes); the forecast is the last step's vector.

`training_targets` turns window targets into what the model is trained on, and `forecast`
turns a batch of input windows into (batch, horizon) forecasts for every strategy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError
from seqcast.layers import Conv1D, Dense, Dropout, LayerNormalization, TimeDistributed, WaveNet
from seqcast.layers.recurrent import RNN
from seqcast.layers.wrappers import Bidirectional
from seqcast.sequential import Sequential

_PER_STEP = (RNN, TimeDistributed, Dense, Dropout, LayerNormalization, WaveNet)


def output_positions(model: Sequential, window: int) -> np.ndarray:
    """For a model returning sequences: the index of the last input step that each output step
    has seen. Strided or 'valid' convolutions shorten and shift the sequence (the notes' Conv1D
    model trains on `Y[:, 3::2]`); layers that would let a step see its future are refused."""
    positions = np.arange(window)
    for layer in model.layers:
        if isinstance(layer, Bidirectional):
            raise SeqcastError(
                "a Bidirectional layer lets every step see the future; seq2seq targets would "
                "leak into the inputs. Use strategy 'direct' or 'recursive'"
            )
        if isinstance(layer, Conv1D):
            if layer.padding == "same":
                raise SeqcastError(
                    "Conv1D with padding='same' sees future steps; use 'causal' or 'valid' "
                    "for seq2seq"
                )
            reach = layer.dilation_rate * (layer.kernel_size - 1)
            first = reach if layer.padding == "valid" else 0
            positions = positions[first :: layer.strides]
        elif not isinstance(layer, _PER_STEP):
            raise SeqcastError(
                f"{type(layer).__name__} does not keep one output per time step; a seq2seq "
                "model must return sequences (return_sequences=True, TimeDistributed head)"
            )
    if len(positions) == 0:
        raise SeqcastError(f"the model leaves no output step for a window of {window}")
    return positions


def training_targets(y: np.ndarray, strategy: str, model: Sequential, window: int) -> np.ndarray:
    """Window targets -> model targets: vector (n, H, 1) -> (n, H); seq2seq (n, W, H) ->
    (n, steps, H) at the model's output positions."""
    if strategy == "seq2seq":
        return np.ascontiguousarray(y[:, output_positions(model, window)])
    return np.ascontiguousarray(y.reshape(len(y), -1))


def forecast(
    model: nn.Module, x: Tensor, horizon: int, strategy: str, trained_horizon: int
) -> Tensor:
    """(B, W, F) windows -> (B, horizon) forecasts (in the model's units)."""
    if strategy == "recursive":
        return _recursive(model, x, horizon)
    if horizon > trained_horizon:
        raise SeqcastError(
            f"this model was trained for a horizon of {trained_horizon} with strategy "
            f"{strategy!r}; ask for at most {trained_horizon} steps, or train with "
            "strategy 'recursive' for open-ended horizons"
        )
    out = model(x)
    if strategy == "seq2seq":
        out = out[:, -1]
    return out.reshape(len(x), -1)[:, :horizon]


def _recursive(model: nn.Module, x: Tensor, horizon: int) -> Tensor:
    if x.shape[-1] != 1:
        raise SeqcastError(
            "the recursive strategy feeds predictions back as inputs, so it cannot know future "
            "covariate values; use strategy 'direct' or 'seq2seq' with covariates"
        )
    preds = []
    for _ in range(horizon):
        step = model(x).reshape(len(x), -1)[:, :1]  # (B, 1)
        preds.append(step)
        x = torch.cat([x[:, 1:], step.unsqueeze(-1)], dim=1)
    return torch.cat(preds, dim=1)
