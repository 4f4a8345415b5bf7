"""The members of `model="auto"` and how they are combined.

Neural members: one global network per (family, input window, loss, seed), trained on the
windows of every series (`seqcast.data.pipeline`); each family's forecast is the median of its
networks, as in the N-BEATS ensembles. The families: "mlp", fully connected over the window;
"rnn", stacked recurrent layers; "cnn", causal dilated convolutions (WaveNet) whose receptive
field covers the window. Statistical members (`seqcast.statistical`) fit each series alone. A
combination is the mean of some members' forecasts; `seqcast.selection` picks one by
backtest.

Targets for the neural members travel as one tensor of shape (batch, horizon, 6) so that the
losses can score forecasts on the series' own scale:

    0 target   z - level (0 where the series has ended)
    1 mask     1 where the target is observed
    2 offset   level + seasonal component, in u units (see pipeline)
    3 scale    the additive series' scale s (1 for log series)
    4 is_log   1 for a multiplicative (log) series
    5 mase     the series' in-sample seasonal-naive MAE (MASE's denominator)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from seqcast import training
from seqcast.models import families
from seqcast.sequential import Sequential

log = logging.getLogger(__name__)

TARGET, MASK, OFFSET, SCALE, IS_LOG, MASE = range(6)


# -- losses on the series' own scale ------------------------------------------------------------
def _original(rel: Tensor, y: Tensor) -> Tensor:
    """Values on the series' scale for targets or forecasts `rel` (z minus the level)."""
    u = y[..., OFFSET] + rel
    as_log = torch.exp(torch.clamp(u, max=80.0))
    return torch.where(y[..., IS_LOG] > 0, as_log, u * y[..., SCALE])


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def smape_loss(pred: Tensor, y: Tensor) -> Tensor:
    """The competitions' sMAPE, 200|y - f| / (|y| + |f|), over observed targets."""
    truth, fc = _original(y[..., TARGET], y), _original(pred, y)
    ratio = 200.0 * (truth - fc).abs() / (truth.abs() + fc.abs()).clamp_min(1e-8)
    return _masked_mean(ratio, y[..., MASK])


def mape_loss(pred: Tensor, y: Tensor) -> Tensor:
    """100 |y - f| / |y| (the Tourism competition's measure); targets at 0 do not count."""
    truth, fc = _original(y[..., TARGET], y), _original(pred, y)
    nonzero = truth.abs() > 0
    ratio = 100.0 * (truth - fc).abs() / torch.where(nonzero, truth.abs(), torch.ones_like(truth))
    return _masked_mean(ratio, y[..., MASK] * nonzero)


def mase_loss(pred: Tensor, y: Tensor) -> Tensor:
    """|y - f| over the series' in-sample seasonal-naive MAE."""
    truth, fc = _original(y[..., TARGET], y), _original(pred, y)
    return _masked_mean((truth - fc).abs() / y[..., MASE], y[..., MASK])


def mae_loss(pred: Tensor, y: Tensor) -> Tensor:
    """MAE on the normalised scale: relative error for log series."""
    return _masked_mean((pred - y[..., TARGET]).abs(), y[..., MASK])


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "smape": smape_loss,
    "mape": mape_loss,
    "mase": mase_loss,
    "mae": mae_loss,
}


# -- neural members -----------------------------------------------------------------------------
def network(
    lookback: int, horizon: int, units: int, family: str = "mlp", seasons: tuple[int, ...] = ()
) -> Sequential:
    """The network of one family (`seqcast.models.families`) over a window of `lookback`
    steps and its mask channel, with one linear output per horizon step."""
    return families.build(family, lookback, horizon, units, tuple(seasons))


def train_member(
    model: Sequential,
    data: tuple[np.ndarray, np.ndarray],
    loss: str,
    settings: training.TrainSettings,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch_end=None,
) -> training.History:
    """Train `model` in place with the named loss through the one training loop."""
    settings = training.TrainSettings(**{**vars(settings), "loss": LOSSES[loss]})
    return training.fit_arrays(
        model, data[0], data[1], settings, validation, on_epoch_end=on_epoch_end
    )


def member_forecast(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Forecasts relative to each window's level, (windows, horizon)."""
    return training.predict_arrays(model, x.astype(np.float32), batch_size=4096).astype(np.float64)


# -- combinations -------------------------------------------------------------------------------
def combinations(members: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Every non-empty subset of the members, named by joining them with '+'. A combination's
    forecast is the mean of its members' (the simple average that wins the M competitions'
    combination studies)."""
    members = list(members)
    out: dict[str, tuple[str, ...]] = {}
    for mask in range(1, 2 ** len(members)):
        chosen = tuple(m for i, m in enumerate(members) if mask >> i & 1)
        out["+".join(chosen)] = chosen
    return out


def combine(forecasts: dict[str, np.ndarray], chosen: Sequence[str]) -> np.ndarray:
    return np.mean([forecasts[m] for m in chosen], axis=0)
