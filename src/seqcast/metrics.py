"""Forecast metrics: pure functions of array-likes (numpy, torch, lists) returning floats.

Arguments must have the same shape (no broadcasting: a (n, 1) against (n,) mix-up would
silently give an (n, n) error matrix) and finite values. Percentages are in percent.
`last_time_step_mse` alone also works inside a torch graph: given tensors it returns a
tensor scalar, so it can serve as a training metric or loss.

Forecasting competitions (M3, M4, Tourism) score each series on its own and then average: the
`competition_*` functions and `msis` are the per-series definitions they use (see
benchmarks/competitions.py); `mape` is already the Tourism competition's MAPE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqcast.errors import SeqcastError, check_positive_int, format_shape

__all__ = [
    "mse",
    "rmse",
    "mae",
    "mape",
    "smape",
    "mase",
    "last_time_step_mse",
    "coverage",
    "interval_width",
    "competition_smape",
    "competition_mase",
    "msis",
]


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error: mean((y_true - y_pred) ** 2)."""
    a, b = _arrays("mse", y_true=y_true, y_pred=y_pred)
    return float(np.mean((a - b) ** 2))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error: sqrt(mse)."""
    a, b = _arrays("rmse", y_true=y_true, y_pred=y_pred)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error: mean(|y_true - y_pred|)."""
    a, b = _arrays("mae", y_true=y_true, y_pred=y_pred)
    return float(np.mean(np.abs(a - b)))


def mape(y_true: Any, y_pred: Any) -> float:
    """Mean absolute percentage error, in percent: 100 * mean(|y_true - y_pred| / |y_true|).

    Undefined when an actual value is 0: raises SeqcastError (use smape or mase there).
    """
    a, b = _arrays("mape", y_true=y_true, y_pred=y_pred)
    zeros = np.flatnonzero(a.ravel() == 0)
    if len(zeros):
        first = np.unravel_index(zeros[0], a.shape)
        raise SeqcastError(
            f"mape is undefined: y_true has {len(zeros)} zero value(s) (first at index "
            f"{tuple(int(i) for i in first)}); use smape or mase for series that touch zero"
        )
    return float(100.0 * np.mean(np.abs(a - b) / np.abs(a)))


def smape(y_true: Any, y_pred: Any) -> float:
    """Symmetric MAPE in percent, in [0, 200]: 100 * mean(2|y - p| / (|y| + |p|)).

    A point where both values are 0 is a perfect forecast and counts as 0.
    """
    a, b = _arrays("smape", y_true=y_true, y_pred=y_pred)
    denom = np.abs(a) + np.abs(b)
    ratio = np.divide(2.0 * np.abs(a - b), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * np.mean(ratio))


def mase(y_true: Any, y_pred: Any, y_train: Any, season: int = 1) -> float:
    """Mean absolute scaled error: mae(y_true, y_pred) divided by the in-sample MAE of the
    seasonal-naive forecast on `y_train`, mean(|y_train[t] - y_train[t - season]|).

    `y_train` has shape (T,) or (T, ...) with time on axis 0. Below 1: better than the naive
    forecast on the training data.
    """
    check_positive_int("season", season)
    a, b = _arrays("mase", y_true=y_true, y_pred=y_pred)
    train = _finite("mase", "y_train", _to_numpy(y_train))
    if train.ndim == 0 or len(train) <= season:
        n = 0 if train.ndim == 0 else len(train)
        raise SeqcastError(
            f"mase: y_train has {n} point(s) but season={season} needs at least {season + 1} "
            "to form one seasonal-naive error; pass a longer training series or a smaller season"
        )
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    if scale == 0:
        raise SeqcastError(
            f"mase is undefined: the seasonal-naive error of y_train (season={season}) is 0, "
            "as the training series repeats itself exactly; use mae or rmse instead"
        )
    return float(np.mean(np.abs(a - b)) / scale)


def last_time_step_mse(Y_true: Any, Y_pred: Any) -> Any:
    """MSE of the last time step only: mean((Y_true[:, -1] - Y_pred[:, -1]) ** 2).

    For (batch, time, k) sequence-to-sequence targets, this scores the forecast made after the
    whole input was seen. numpy/list in: a float; a torch tensor in: a 0-d tensor (keeps the
    autograd graph, usable as a training metric).
    """
    if _is_torch(Y_true) or _is_torch(Y_pred):
        import torch

        ref = Y_true if _is_torch(Y_true) else Y_pred
        a = torch.as_tensor(Y_true, dtype=ref.dtype, device=ref.device)
        b = torch.as_tensor(Y_pred, dtype=ref.dtype, device=ref.device)
        _check_seq("last_time_step_mse", tuple(a.shape), tuple(b.shape))
        return torch.mean((a[:, -1] - b[:, -1]) ** 2)
    a, b = _arrays("last_time_step_mse", Y_true=Y_true, Y_pred=Y_pred)
    _check_seq("last_time_step_mse", a.shape, b.shape)
    return float(np.mean((a[:, -1] - b[:, -1]) ** 2))


def coverage(y_true: Any, lo: Any, hi: Any) -> float:
    """Fraction of `y_true` inside its interval [lo, hi] (bounds included), in [0, 1]."""
    a, low, high = _arrays("coverage", y_true=y_true, lo=lo, hi=hi)
    _check_bounds("coverage", low, high)
    return float(np.mean((a >= low) & (a <= high)))


def interval_width(lo: Any, hi: Any) -> float:
    """Mean width of the intervals: mean(hi - lo)."""
    low, high = _arrays("interval_width", lo=lo, hi=hi)
    _check_bounds("interval_width", low, high)
    return float(np.mean(high - low))


# ----------------------------------------------------------------------------- competitions
def competition_smape(y_true: Any, y_pred: Any) -> float:
    """sMAPE as the M3 and M4 competitions define it, in percent, in [0, 200]:
    mean over the horizon of 200 * |y - f| / (|y| + |f|).

    This is `smape` (the same numbers); the name says which definition a score follows. The M3
    paper writes the denominator without absolute values, which is the same on its positive
    data and positive forecasts. Nixtla's `utilsforecast.losses.smape` returns
    mean(|y - f| / (|y| + |f|)) as a fraction: multiply it by 200 to compare with this.
    """
    return smape(y_true, y_pred)


def competition_mase(y_true: Any, y_pred: Any, y_train: Any, period: int) -> float:
    """MASE as in the M4 competition: the forecast's MAE over the in-sample MAE of the seasonal
    naive forecast, mean(|y_train[t] - y_train[t - period]|).

    When `y_train` has no more than `period` points there is no seasonal difference to take,
    and the lag falls back to 1 (the naive forecast's error). The M4 code has no such case (it
    would divide by NaN); the fallback keeps short seasonal series scorable instead of failing
    a whole benchmark. None of the M1, M3 or Tourism series is that short.
    """
    check_positive_int("period", period)
    train = _finite("competition_mase", "y_train", _to_numpy(y_train))
    return mase(y_true, y_pred, train, season=_naive_lag(train, period))


def msis(y_true: Any, lo: Any, hi: Any, y_train: Any, period: int, level: float = 95) -> float:
    """Mean scaled interval score of the M4 competition for a `level`% interval [lo, hi]:
    mean(hi - lo + 2/a * (lo - y) * [y < lo] + 2/a * (y - hi) * [y > hi]) with a = 1 - level/100,
    divided by the same in-sample seasonal-naive MAE as `competition_mase` (and the same
    fallback to lag 1 for series no longer than `period`). Lower is better: narrow intervals
    gain, each miss costs 2/a times its distance (40x at 95%).
    """
    check_positive_int("period", period)
    if not 0 < float(level) < 100:
        raise SeqcastError(f"msis: level must be a percentage in (0, 100), got {level!r}")
    a, low, high = _arrays("msis", y_true=y_true, lo=lo, hi=hi)
    _check_bounds("msis", low, high)
    alpha = 1.0 - float(level) / 100.0
    score = (high - low) + (2.0 / alpha) * ((low - a) * (a < low) + (a - high) * (a > high))
    train = _finite("msis", "y_train", _to_numpy(y_train))
    return float(np.mean(score)) / _naive_scale("msis", train, _naive_lag(train, period))


def _naive_lag(train: np.ndarray, period: int) -> int:
    """The seasonal lag, or 1 when the training series is too short for one seasonal step."""
    return period if train.ndim > 0 and len(train) > period else 1


def _naive_scale(metric: str, train: np.ndarray, lag: int) -> float:
    """In-sample MAE of the lag-`lag` naive forecast; raises where it is undefined or 0."""
    if train.ndim == 0 or len(train) <= lag:
        n = 0 if train.ndim == 0 else len(train)
        raise SeqcastError(
            f"{metric}: y_train has {n} point(s); at least {lag + 1} are needed to form one "
            "naive error for the scale"
        )
    scale = float(np.mean(np.abs(train[lag:] - train[:-lag])))
    if scale == 0:
        raise SeqcastError(
            f"{metric} is undefined: the naive error of y_train (lag {lag}) is 0, as the "
            "training series repeats itself exactly"
        )
    return scale


# ----------------------------------------------------------------------------- helpers
def _arrays(metric: str, **named: Any) -> list[np.ndarray]:
    """float64 copies of the named arguments, checked for equal shapes, size and finiteness."""
    arrays = {name: _to_numpy(value) for name, value in named.items()}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = " but ".join(f"{n} has shape {format_shape(s)}" for n, s in shapes.items())
        raise SeqcastError(f"{metric}: {listed}; they must have the same shape")
    first = next(iter(arrays.values()))
    if first.size == 0:
        raise SeqcastError(f"{metric}: the inputs are empty (shape {format_shape(first.shape)})")
    return [_finite(metric, name, a) for name, a in arrays.items()]


def _to_numpy(value: Any) -> np.ndarray:
    if _is_torch(value):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SeqcastError(
            f"expected numbers (numpy array, torch tensor or list), got {type(value).__name__}"
        ) from None


def _finite(metric: str, name: str, array: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(array.ravel()))
    if len(bad):
        where = tuple(int(i) for i in np.unravel_index(bad[0], array.shape))
        raise SeqcastError(
            f"{metric}: {name} has {len(bad)} NaN or infinite value(s) (first at index "
            f"{where}); metrics need finite numbers, so drop or fill those points first"
        )
    return array


def _check_seq(metric: str, shape_true: tuple, shape_pred: tuple) -> None:
    if shape_true != shape_pred:
        raise SeqcastError(
            f"{metric}: Y_true has shape {format_shape(shape_true)} but Y_pred has shape "
            f"{format_shape(shape_pred)}; they must have the same shape"
        )
    if len(shape_true) < 2 or shape_true[1] == 0:
        raise SeqcastError(
            f"{metric}: expected arrays of shape (batch, time, ...) with a time axis, got "
            f"{format_shape(shape_true)}"
        )


def _check_bounds(metric: str, low: np.ndarray, high: np.ndarray) -> None:
    crossed = np.flatnonzero((low > high).ravel())
    if len(crossed):
        where = tuple(int(i) for i in np.unravel_index(crossed[0], low.shape))
        raise SeqcastError(
            f"{metric}: lo > hi at {len(crossed)} point(s) (first at index {where}); "
            "pass the lower bound as `lo` and the upper as `hi`"
        )


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")
