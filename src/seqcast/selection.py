"""Choosing what `model="auto"` forecasts with, by rolling-origin backtest on the end of the
training data (never on data the forecasts will be judged on).

The backtest origins sit at the end of each series' training part: origin k (k = 0..K-1) cuts
the last `horizon + k` points, forecasts `horizon` steps, and is scored on those points. With
few series, K grows so that there are enough forecasts to choose and to calibrate intervals
with; with thousands of series one origin suffices.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from seqcast import ensemble
from seqcast.data import pipeline

#: forecasts per horizon step the backtest aims for (series x origins)
MIN_BACKTEST_FORECASTS = 60
#: the most origins: past this, windows one step apart add cost (a statistical fit each)
#: more than they add evidence; 24 still calibrates 95% intervals (19 windows needed)
MAX_ORIGINS = 24
METRICS = ("smape", "mase", "mape")


def origins(n_series: int, horizon: int, typical_length: int | None = None) -> int:
    """How many backtest origins, one step apart: enough for MIN_BACKTEST_FORECASTS forecasts
    per horizon step, at most `horizon` (beyond that the windows would reach further back
    than the forecasts they stand for) and MAX_ORIGINS, and few enough that a series of
    `typical_length` keeps `pipeline.MIN_HISTORY` points before its earliest origin."""
    wanted = max(1, math.ceil(MIN_BACKTEST_FORECASTS / max(n_series, 1)))
    wanted = min(horizon, MAX_ORIGINS, wanted)
    if typical_length is not None:
        wanted = min(wanted, typical_length - horizon - pipeline.MIN_HISTORY)
    return int(max(1, wanted))


def smape_per_window(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    denom = np.abs(truth) + np.abs(forecast)
    ratio = np.divide(200.0 * np.abs(truth - forecast), denom, out=np.zeros_like(denom),
                      where=denom > 0)  # fmt: skip
    return ratio.mean(axis=1)


def mape_per_window(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """100 |y - f| / |y| over the points whose actual is not 0 (MAPE is undefined there);
    NaN for a window of zeros, which the scores then leave out."""
    nonzero = truth != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nonzero, 100.0 * np.abs(truth - forecast) / np.abs(truth), 0.0)
        return ratio.sum(axis=1) / nonzero.sum(axis=1)


def mase_per_window(truth: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.abs(truth - forecast).mean(axis=1) / scale


def score_candidates(
    forecasts: dict[str, np.ndarray],
    truth: np.ndarray,
    scale: np.ndarray,
    candidates: dict[str, tuple[str, ...]],
    metric: str = "smape",
) -> pd.DataFrame:
    """sMAPE, MASE and MAPE of every candidate combination over all backtest windows (rows of
    `truth`, (windows, horizon)); sorted best first by `metric`, the others breaking ties."""
    rows = []
    for name, members in candidates.items():
        fc = ensemble.combine(forecasts, members)
        rows.append(
            {
                "candidate": name,
                "smape": float(smape_per_window(truth, fc).mean()),
                "mase": float(mase_per_window(truth, fc, scale).mean()),
                "mape": float(np.nanmean(mape_per_window(truth, fc))),
            }
        )
    board = pd.DataFrame(rows)
    order = [metric, *[m for m in METRICS if m != metric]]
    return board.sort_values(order, kind="stable").reset_index(drop=True)


def choose(board: pd.DataFrame, metric: str = "smape") -> str:
    """The candidate with the lowest `metric`; the others break ties."""
    ordered = board.sort_values([metric, *[m for m in METRICS if m != metric]], kind="stable")
    return str(ordered["candidate"].iloc[0])
