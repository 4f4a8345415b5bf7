"""The network families of `model="auto"`'s members, over a window of `lookback` steps of
(value relative to the window's last value, mask) and one linear output per horizon step.

- "mlp": N-BEATS' block without the basis expansion: two ReLU Dense layers over the
  flattened window.
- "rnn": ES-RNN's residual, dilated LSTM stack. Windows longer than `MAX_STEPS` are first
  cut into patches of consecutive steps (one recurrent step per patch), so the recurrence runs
  at most `MAX_STEPS` steps; a per-step Dense sets the width (units // 16, at least 16); then
  two LSTM blocks whose step t sees the state of step t - d (d = 1, then the season in patch
  steps: `rnn_dilations`), each adding its input back (residual); the last step's state feeds
  a ReLU Dense and the output layer. Every LSTM is the plain Keras LSTM, so it runs the
  compiled kernel. Narrow because its cost is the LSTM's arithmetic: at width 16 an epoch over
  2,000 windows of 27 steps took 0.5 s on one loaded core, the "mlp" 0.06 s.
- "cnn": WaveNet/TCN: causal dilated convolutions (kernel 2, dilations 1, 2, 4, ... until the
  receptive field covers the window, so it reaches the longest season), residual blocks with
  skip connections, the last step's skip sum into a ReLU Dense and the output layer. It is
  computed only where the last output step looks (`LastStepTCN`), and windows longer than
  `MAX_CONV_STEPS` are cut into patches first.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqcast.errors import SeqcastError, check_positive_int
from seqcast.layers import LSTM, Dense, Flatten
from seqcast.layers.base import Layer, Shape
from seqcast.models.heads import LastStep
from seqcast.sequential import Sequential

FAMILIES = ("mlp", "rnn", "cnn")
#: the most recurrent steps an "rnn" member runs (longer windows are cut into patches)
MAX_STEPS = 32
#: the most steps a "cnn" member convolves over (longer windows are cut into patches)
MAX_CONV_STEPS = 128


class Patches(Layer):
    """(B, T, F) -> (B, ceil(T / size), size * F): each output step holds `size` consecutive
    input steps side by side, oldest first; zeros pad the start so that the last output step
    ends with the last input step. Causal: output step k sees input steps up to its own."""

    causal = False  # one output step per `size` input steps

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = check_positive_int("size", size)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        batch, steps, features = input_shape
        out = None if steps is None else -(-steps // self.size)
        return (batch, out, None if features is None else features * self.size)

    def forward(self, x: Tensor) -> Tensor:
        pad = -x.shape[1] % self.size
        if pad:
            x = F.pad(x, (0, 0, pad, 0))  # zeros before the first step
        b, t, f = x.shape
        return x.reshape(b, t // self.size, self.size * f)

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size}


class DilatedLSTM(Layer):
    """An LSTM whose step t reads the state of step t - `dilation` (Chang et al. 2017's
    dilated RNN, ES-RNN's building block): (B, T, F) -> (B, T, units).

    Computed as `dilation` interleaved sequences (steps t, t + d, t + 2d, ...) run as one batch
    of B * d sequences of T / d steps through a plain `LSTM(units, return_sequences=True)`, so
    the compiled kernel runs it and its sequential depth is T / d. With `residual` the input
    is added to the output (F must equal units)."""

    causal = True

    def __init__(self, units: int, dilation: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.dilation = check_positive_int("dilation", dilation)
        self.residual = bool(residual)
        self.lstm = LSTM(self.units, return_sequences=True)

    def build(self, input_shape: Shape) -> None:
        features = input_shape[-1]
        if self.residual and features != self.units:
            raise SeqcastError(
                f"DilatedLSTM(residual=True) adds its input to its output, so the input needs "
                f"{self.units} features, got {features}; project it first or set residual=False"
            )
        self.lstm.build((None, None, features))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[1], self.units)

    def forward(self, x: Tensor) -> Tensor:
        d = self.dilation
        b, t, f = x.shape
        pad = -t % d
        z = F.pad(x, (0, 0, pad, 0)) if pad else x
        steps = (t + pad) // d
        # (B, T', F) -> (B, T'/d, d, F) -> (B, d, T'/d, F) -> (B*d, T'/d, F)
        z = z.reshape(b, steps, d, f).transpose(1, 2).reshape(b * d, steps, f)
        y = self.lstm(z)  # (B*d, T'/d, U)
        y = y.reshape(b, d, steps, self.units).transpose(1, 2).reshape(b, steps * d, self.units)
        y = y[:, pad:]
        return y + x if self.residual else y

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "dilation": self.dilation, "residual": self.residual}

    def extra_repr(self) -> str:
        return f"units={self.units}, dilation={self.dilation}, residual={self.residual}"


class LastStepTCN(Layer):
    """A residual WaveNet/TCN (kernel 2, dilations 1, 2, 4, ..., 2^(depth-1)) evaluated only
    where its last output step looks: (B, T, F) -> (B, units), the sum of every block's skip
    projection at the last step.

    With dilations doubling, the last output of a kernel-2 dilated causal stack depends, at
    block k, on every 2^k-th step counting back from the last; so block k runs as one matrix
    product over non-overlapping pairs (older, newer) of the previous block's steps, and the
    residual keeps the newer one of each pair. The same function as the full stack's last
    step, at a cost of about 2 T (not T * depth) steps. The window is padded with zeros at its
    start to 2^depth steps, the receptive field (at least T)."""

    causal = False  # one output per sequence

    def __init__(self, units: int, depth: int, gated: bool = False) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.depth = check_positive_int("depth", depth)
        self.gated = bool(gated)
        width = 2 * self.units if self.gated else self.units
        self.inp = Dense(self.units)
        self.convs = nn.ModuleList(Dense(width) for _ in range(self.depth))
        self.res = nn.ModuleList(Dense(self.units) for _ in range(self.depth - 1))
        self.skip = nn.ModuleList(Dense(self.units) for _ in range(self.depth))

    @property
    def receptive_field(self) -> int:
        return 2**self.depth

    def build(self, input_shape: Shape) -> None:
        self.inp.build((None, None, input_shape[-1]))
        for conv in self.convs:
            conv.build((None, None, 2 * self.units))
        for proj in (*self.res, *self.skip):
            proj.build((None, None, self.units))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.units)

    def forward(self, x: Tensor) -> Tensor:
        pad = self.receptive_field - x.shape[1]
        if pad > 0:
            x = F.pad(x, (0, 0, pad, 0))
        x = self.inp(x[:, -self.receptive_field :])  # (B, 2^depth, U)
        skips = None
        for k, conv in enumerate(self.convs):
            b, t, u = x.shape
            # pairs of steps (older, newer) side by side: (B, t, U) -> (B, t/2, 2U) -> (B, t/2, W)
            z = conv(x.reshape(b, t // 2, 2 * u))
            if self.gated:
                f, g = z.chunk(2, dim=-1)
                z = torch.tanh(f) * torch.sigmoid(g)
            else:
                z = torch.relu(z)
            skip = self.skip[k](z[:, -1])
            skips = skip if skips is None else skips + skip
            if k < len(self.res):
                x = x[:, 1::2] + self.res[k](z)
        return skips

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "depth": self.depth, "gated": self.gated}

    def extra_repr(self) -> str:
        return f"units={self.units}, depth={self.depth}, gated={self.gated}"


def rnn_dilations(steps: int, season: int) -> tuple[int, ...]:
    """Two LSTM blocks, as ES-RNN's stacks pair a short dilation with the season's (its
    quarterly (1, 2), (4, 8); hourly (1, 4), (24, 168)): dilation 1, then the season in
    recurrent steps; 1, 2 without a season that fits twice into the window."""
    if season < 2 or 2 * season > steps:
        return (1, 2) if steps > 2 else (1,)
    return (1, season)


def build(
    family: str, lookback: int, horizon: int, units: int, seasons: tuple[int, ...] = ()
) -> Sequential:
    """The network of `family` for windows of `lookback` steps (value, mask)."""
    if family == "mlp":
        body = [Flatten(), Dense(units, activation="relu"), Dense(units, activation="relu")]
    elif family == "rnn":
        width = max(16, units // 16)
        patch = math.ceil(lookback / MAX_STEPS)
        steps = math.ceil(lookback / patch)
        season = round(max(seasons) / patch) if seasons else 0
        body = [Patches(patch)] if patch > 1 else []
        body += [Dense(width)]
        body += [DilatedLSTM(width, d) for d in rnn_dilations(steps, season)]
        body += [LastStep(), Dense(units, activation="relu")]
    elif family == "cnn":
        width = max(16, units // 8)
        patch = math.ceil(lookback / MAX_CONV_STEPS)
        depth = max(1, math.ceil(math.log2(math.ceil(lookback / patch))))
        body = [Patches(patch)] if patch > 1 else []
        body += [LastStepTCN(width, depth), Dense(units, activation="relu")]
    else:
        raise SeqcastError(
            f"unknown network family {family!r}; expected one of {', '.join(FAMILIES)}"
        )
    return Sequential([*body, Dense(horizon)], input_shape=(lookback, 2))


def receptive_field(model: Sequential) -> int:
    """Input steps the last output step of a "cnn" member sees: its TCN's receptive field
    times the patch size."""
    patch = math.prod(m.size for m in model.modules() if isinstance(m, Patches))
    tcn = [m.receptive_field for m in model.modules() if isinstance(m, LastStepTCN)]
    return patch * max(tcn, default=0)


__all__ = ["FAMILIES", "DilatedLSTM", "LastStepTCN", "Patches", "build", "rnn_dilations",
           "receptive_field"]  # fmt: skip
