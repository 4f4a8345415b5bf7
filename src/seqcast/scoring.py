"""Scoring forecasts against held-out data: `score`, the hold-out evaluation and
rolling-origin backtest behind `Forecaster.evaluate` and `Forecaster.backtest`, and the
held-out errors that calibrate a Forecaster's conformal intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast import metrics, uncertainty
from seqcast.data import frames
from seqcast.errors import SeqcastError

if TYPE_CHECKING:
    from seqcast.forecast import Forecaster

LEVELS = uncertainty.LEVELS  # the interval levels `predict` accepts, in percent


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


def evaluate(fc: Forecaster, frame: pd.DataFrame, level: int | None = 80) -> dict[str, float]:
    """Forecast the last `horizon` points of every series from the points before them (with
    `level`% intervals, scored for coverage and width; None: point forecasts only)."""
    context, truth = frames.split_by_time(frame, fc.horizon)
    pred = fc.predict(context, intervals=None if level is None else [level])
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


# -- conformal calibration --------------------------------------------------------------------
def calibration_windows(fc: Forecaster, frame: pd.DataFrame) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, x, y): the windows that calibrate intervals, scaled as in training, and their
    next H values (n, H). Kind "held-out": the validation windows (those whose targets pass
    each series' training cut); "in-sample": every window, when none is held out; "none":
    no window at all, when a series is shorter than window + horizon."""
    lengths = frame.groupby("unique_id", sort=False).size().to_numpy()
    if (lengths < fc.window + fc.horizon).any():
        return "none", np.zeros((0, fc.window, 1)), np.zeros((0, fc.horizon))
    x, y, series, start = fc.pipeline_.training_windows(frame, fc.horizon, "direct")
    cut = np.floor(lengths * (1 - float(fc.validation_size))).astype(int)[series]
    held_out = start + fc.window >= cut
    kind = "held-out"
    if not held_out.any():
        held_out = np.ones(len(x), dtype=bool)
        kind = "in-sample"
    return kind, x[held_out], y[held_out].reshape(-1, fc.horizon)


def calibration_errors(fc: Forecaster, frame: pd.DataFrame) -> tuple[str, np.ndarray]:
    """(kind, absolute H-step errors in scaled units) on `calibration_windows`, which
    calibrate conformal intervals."""
    kind, x, y = calibration_windows(fc, frame)
    if kind == "none":
        return kind, y
    return kind, np.abs(y - fc._forecast_scaled(x, fc.horizon))


def conformal_table(errors: np.ndarray) -> np.ndarray:
    """The split-conformal radius of every level `predict` accepts (1..99 %), per horizon
    step: row L-1 is `uncertainty.conformal_radius(errors, L)`, inf where too few windows
    calibrate L. Its size is fixed (99 x H), however many series and windows calibrated it,
    so a saved model does not grow with them. Nothing is warned here: `conformal_radius`
    below warns when an uncalibrated level is asked for."""
    if errors.shape[0] == 0:
        return np.full((len(LEVELS), errors.shape[1]), np.inf)
    return uncertainty.conformal_radius(errors, LEVELS, warn=False)


def conformal_radius(table: np.ndarray, n: int, level: int, horizon: int) -> np.ndarray:
    """The radius of `level`% intervals for the first `horizon` steps from `conformal_table`
    output calibrated on `n` windows; unbounded, with `uncertainty`'s warning naming the
    highest level they calibrate, where `n` is too small for `level`."""
    uncertainty.check_calibration_windows(n)
    if horizon > table.shape[1]:
        raise SeqcastError(
            f"conformal intervals are calibrated for {table.shape[1]} steps, not {horizon}; "
            "ask for a shorter horizon or use interval_method='mc_dropout'"
        )
    radius = table[level - 1, :horizon]
    if np.isinf(radius).any():
        uncertainty.warn_unbounded(level, n)
    return radius
