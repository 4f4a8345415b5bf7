"""Prediction intervals: Monte-Carlo dropout and split-conformal.

- MC dropout (Gal & Ghahramani 2016): keep the model's Dropout layers active at prediction
  time, draw `mc_samples` forecasts, and read the interval off their quantiles. A model with no
  dropout gives the same forecast every draw, so its intervals have zero width.
- Conformal: absolute forecast errors on held-out windows (per horizon step) calibrate a
  symmetric interval y_hat ± q, q the ceil((n+1)·level)/n empirical quantile (Vovk et al.;
  the finite-sample split-conformal rule).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError
from seqcast.layers import RNN, Dropout

METHODS = ("conformal", "mc_dropout")

log = logging.getLogger(__name__)


def parse_levels(intervals: int | float | str | Sequence[int | float] | None) -> list[int]:
    """80 / "80,95" / [80, 95] -> [80, 95]; each level a percentage in (0, 100)."""
    if intervals is None:
        return []
    if isinstance(intervals, str):
        parts = [p.strip() for p in intervals.split(",") if p.strip()]
    elif isinstance(intervals, (int, float)):
        parts = [intervals]
    else:
        parts = list(intervals)
    levels = []
    for p in parts:
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise SeqcastError(f"interval level {p!r} is not a number; give e.g. 80,95") from None
        if not 0 < value < 100 or value != int(value):
            raise SeqcastError(
                f"interval level {p!r} must be a whole percentage between 1 and 99, e.g. 80"
            )
        levels.append(int(value))
    return sorted(set(levels))


@contextlib.contextmanager
def dropout_active(model: nn.Module) -> Iterator[None]:
    """Model in eval mode except its dropout: the MC-dropout sampling mode."""
    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, Dropout)) or _rnn_with_dropout(module):
            module.train()
    try:
        yield
    finally:
        model.train(was_training)


def _rnn_with_dropout(module: nn.Module) -> bool:
    cell = getattr(module, "cell", None)
    rates = (getattr(cell, "dropout", 0.0), getattr(cell, "recurrent_dropout", 0.0))
    return isinstance(module, RNN) and max(rates) > 0


def mc_dropout_quantiles(
    sample: Callable[[], Tensor], model: nn.Module, n_samples: int, levels: list[int]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{level: (lo, hi)} from `n_samples` calls of `sample()` with dropout active."""
    if n_samples < 2:
        raise SeqcastError(f"`mc_samples` must be at least 2, got {n_samples}")
    with dropout_active(model), torch.no_grad():
        draws = torch.stack([sample() for _ in range(n_samples)]).cpu().double().numpy()
    out = {}
    for level in levels:
        alpha = (100 - level) / 200
        out[level] = (np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0))
    return out


def conformal_radius(residuals: np.ndarray, level: int) -> np.ndarray:
    """Per-horizon-step radius q from absolute residuals of shape (n, H): the k-th smallest
    residual of each step, k = ceil((n + 1) * level / 100), which covers a new error with
    probability at least level% when errors are exchangeable (split conformal prediction).

    When k > n, no residual is large enough for that guarantee: the radius is infinite (the
    interval says "cannot be calibrated" by being unbounded) and a warning names how many
    calibration windows the level needs. Clamping to the largest residual instead would
    under-cover silently."""
    n = residuals.shape[0]
    if n == 0:
        raise SeqcastError(
            "no held-out residuals to calibrate conformal intervals; train with "
            "validation_size > 0 and enough history, or use interval_method='mc_dropout'"
        )
    k = math.ceil((n + 1) * level / 100)
    if k > n:
        needed = math.ceil(level / (100 - level))  # the smallest n with ceil((n+1)L/100) <= n
        log.warning(
            "%d%% conformal intervals need at least %d calibration windows, got %d: the "
            "interval is unbounded; ask for a lower level or give more (or longer) series",
            level, needed, n,
        )  # fmt: skip
        return np.full(residuals.shape[1], np.inf)
    return np.sort(np.abs(residuals), axis=0)[k - 1]
