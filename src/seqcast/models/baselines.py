"""Baselines every leaderboard starts from: naive, seasonal naive and linear.

Naive forecasts repeat the last observed value; seasonal naive repeats the last observed
season. Neither has parameters or needs training; both see only the input window, so they
run through the same strategies, backtests and intervals as the learned models.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqcast.errors import SeqcastError
from seqcast.layers import Dense, Flatten
from seqcast.layers.base import Layer, Shape
from seqcast.models.heads import dropout
from seqcast.models.spec import ModelSpec
from seqcast.sequential import Sequential


class NaiveForecast(Layer):
    """(batch, window, features) -> (batch, horizon): the last target value, repeated."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = int(horizon)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.horizon)

    def forward(self, x: Tensor) -> Tensor:
        return x[:, -1:, 0].expand(-1, self.horizon)

    def get_config(self) -> dict[str, Any]:
        return {"horizon": self.horizon}


class SeasonalNaiveForecast(Layer):
    """(batch, window, features) -> (batch, horizon): step h repeats the value one season
    (or several, for h beyond a season) before it:
    y[T + h] = y[T + h - season * ceil(h / season)]."""

    def __init__(self, horizon: int, season: int) -> None:
        super().__init__()
        self.horizon, self.season = int(horizon), int(season)

    def build(self, input_shape: Shape) -> None:
        window = input_shape[1]
        if window is not None and window < self.season:
            raise SeqcastError(
                f"seasonal_naive needs a window of at least one season ({self.season}), "
                f"got window {window}"
            )
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.horizon)

    def forward(self, x: Tensor) -> Tensor:
        last_season = x[:, -self.season :, 0]  # (B, season)
        idx = torch.arange(self.horizon, device=x.device) % self.season
        return last_season[:, idx]

    def get_config(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "season": self.season}


def naive(spec: ModelSpec) -> Sequential:
    return Sequential([NaiveForecast(spec.horizon)], input_shape=(spec.window, spec.features))


def seasonal_naive(spec: ModelSpec) -> Sequential:
    if spec.season is None:
        raise SeqcastError(
            "seasonal_naive needs a season length: pass season=S (12 for monthly data with a "
            "yearly cycle)"
        )
    layer = SeasonalNaiveForecast(spec.horizon, spec.season)
    return Sequential([layer], input_shape=(spec.window, spec.features))


def linear(spec: ModelSpec) -> Sequential:
    """The notes' Flatten + Dense: a linear autoregression over the window."""
    layers = [Flatten(), *dropout(spec), Dense(spec.outputs)]
    return Sequential(layers, input_shape=(spec.window, spec.features))
