"""Scoring forecasts against held-out data: `score`, and the hold-out evaluation and
rolling-origin backtest behind `Forecaster.evaluate` and `Forecaster.backtest`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast import metrics
from seqcast.data import frames
from seqcast.errors import SeqcastError

if TYPE_CHECKING:
    from seqcast.forecast import Forecaster


def score(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    history: pd.DataFrame,
    season: int,
    level: int | None = 80,
) -> dict[str, float]:
    """Metrics of forecasts `pred` against `truth` (both long frames), MASE scaled per series
    by the in-sample seasonal-naive error on `history`."""
    joined = pred.merge(truth[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="inner")
    if len(joined) != len(truth):
        raise SeqcastError("forecast stamps do not line up with the held-out stamps")
    y, y_hat = joined["y"].to_numpy(), joined["y_hat"].to_numpy()
    out = {
        "mae": metrics.mae(y, y_hat),
        "rmse": metrics.rmse(y, y_hat),
        "mape": metrics.mape(y, y_hat),
        "smape": metrics.smape(y, y_hat),
    }
    train_by_id = {sid: part.to_numpy() for sid, part in history.groupby("unique_id")["y"]}
    scaled = [
        metrics.mase(part["y"].to_numpy(), part["y_hat"].to_numpy(), train_by_id[sid], season)
        for sid, part in joined.groupby("unique_id", sort=False)
    ]
    out["mase"] = float(np.mean(scaled))
    if level is not None and f"y_lo_{level}" in joined:
        lo, hi = joined[f"y_lo_{level}"].to_numpy(), joined[f"y_hi_{level}"].to_numpy()
        out[f"coverage_{level}"] = metrics.coverage(y, lo, hi)
        out[f"width_{level}"] = metrics.interval_width(lo, hi)
    return out


def split_at(frame: pd.DataFrame, drop: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all but the last `drop` points of each series, those points)."""
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
    return frame[from_end >= drop], frame[from_end < drop]


def evaluate(fc: Forecaster, frame: pd.DataFrame, level: int = 80) -> dict[str, float]:
    """Forecast the last `horizon` points of every series from the points before them."""
    context, truth = frames.split_by_time(frame, fc.horizon)
    pred = fc.predict(context, intervals=[level])
    return score(pred, truth, context, fc.season or 1, level)


def backtest(fc: Forecaster, frame: pd.DataFrame, windows: int, step: int) -> pd.DataFrame:
    """Rolling-origin forecasts with the fitted model (no refit): `windows` origins, `step`
    points apart, the latest ending at the last point; every origin of every series is
    forecast in one call. Returns unique_id, cutoff, ds, y, y_hat."""
    contexts, truths = [], []
    for k in range(windows):
        context, rest = split_at(frame, fc.horizon + k * step)
        contexts.append(context)
        truths.append(rest.groupby("unique_id", sort=False).head(fc.horizon))
    parts = []
    for context, pred, truth in zip(contexts, fc.forecast_many(contexts), truths, strict=True):
        last = context.groupby("unique_id", sort=False)["ds"].last()
        pred.insert(1, "cutoff", np.repeat(last.to_list(), fc.horizon))
        parts.append(
            pred.merge(truth[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="left")
        )
    return pd.concat(parts, ignore_index=True)[["unique_id", "cutoff", "ds", "y", "y_hat"]]
