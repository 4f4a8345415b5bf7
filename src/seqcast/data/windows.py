"""Supervised windows over a series, as strided views (no per-sample Python), and time splits.

Shapes (T time steps, F features, W = `window`, H = `horizon`, K = `n_targets`; the targets
are the first K feature columns; n = (T - W - H) // stride + 1 windows, window i starting at
s = i * stride):

    X                         (n, W, F)     X[i, t] = values[s + t]
    Y, target="vector"        (n, H, K)     Y[i, k] = values[s + W + k, :K]
    Y, target="one_step"      (n, 1, K)     "vector" with H == 1
    Y, target="seq2seq"       (n, W, H*K)   Y[i, t, k*K + j] = values[s + t + 1 + k, j]

"seq2seq" is the sequence-to-sequence target of Géron's *Hands-on ML* ch. 15: at every time
step t the model predicts the next H values, which all lie after the last input it has seen
(s + t). "vector" targets lie after the whole input window. Splits are chronological.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from seqcast.data.frames import check_enough_history, check_no_missing, check_time_order
from seqcast.errors import SeqcastError, check_choice, check_positive_int

__all__ = [
    "TARGETS",
    "FrameWindows",
    "make_windows",
    "windows_from_frame",
    "time_split_windows",
    "split_series",
]

TARGETS = ("one_step", "vector", "seq2seq")


def make_windows(
    values: Any,
    window: int,
    horizon: int = 1,
    target: str = "vector",
    stride: int = 1,
    n_targets: int = 1,
) -> tuple[Any, Any]:
    """(X, Y) windows over `values` of shape (T,) or (T, F), numpy array or torch tensor.

    Shapes are in the module docstring. X (and Y for "vector"/"one_step", and for "seq2seq"
    when K == 1) are strided views of `values`: numpy views are read-only, torch views share
    memory with `values`. Copy before writing into them.
    """
    check_choice("target", target, TARGETS)
    check_positive_int("window", window)
    check_positive_int("horizon", horizon)
    check_positive_int("stride", stride)
    check_positive_int("n_targets", n_targets)
    if target == "one_step" and horizon != 1:
        raise SeqcastError(
            f"target='one_step' predicts 1 step ahead but got horizon={horizon}; use "
            "target='vector' (or 'seq2seq') for several steps, or horizon=1"
        )
    values = _as_2d(values)
    n_time, n_features = values.shape
    if n_targets > n_features:
        raise SeqcastError(
            f"`n_targets`={n_targets} but the values have only {n_features} feature column(s)"
        )
    if n_time < window + horizon:
        raise SeqcastError(
            f"a series of {n_time} points is too short for window {window} + horizon {horizon} "
            f"(needs at least {window + horizon}); use a smaller window or horizon"
        )
    span = _unfold(values, window + horizon, stride)  # (n, W + H, F)
    x = span[:, :window]
    if target == "seq2seq":
        return x, _seq2seq_targets(values[:, :n_targets], window, horizon, stride, len(x))
    return x, span[:, window:, :n_targets]


def _as_2d(values: Any) -> Any:
    if not _is_torch(values):
        values = np.asarray(values)
    if values.ndim == 1:
        return values[:, None]
    if values.ndim != 2:
        raise SeqcastError(
            f"expected values of shape (time,) or (time, features), got {tuple(values.shape)}"
        )
    return values


def _unfold(values: Any, size: int, stride: int) -> Any:
    """(T, F) -> (n, size, F) windows of consecutive rows, a view, n = (T - size)//stride + 1."""
    if _is_torch(values):
        return values.unfold(0, size, stride).transpose(1, 2)  # (n, F, size) -> (n, size, F)
    view = np.lib.stride_tricks.sliding_window_view(values, size, axis=0)[::stride]
    return view.transpose(0, 2, 1)


def _seq2seq_targets(targets: Any, window: int, horizon: int, stride: int, n: int) -> Any:
    """(T, K) -> (n, W, H*K) with Y[i, t, k*K + j] = targets[i*stride + t + 1 + k, j]."""
    ahead = _unfold(targets[1:], horizon, 1)  # (T - H, H, K): ahead[p, k] = targets[p + 1 + k]
    if _is_torch(ahead):
        y = ahead.unfold(0, window, stride).permute(0, 3, 1, 2)  # (n', W, H, K)
    else:
        y = np.lib.stride_tricks.sliding_window_view(ahead, window, axis=0)[::stride]
        y = y.transpose(0, 3, 1, 2)
    y = y[:n]
    if y.shape[-1] == 1:
        return y[..., 0]  # (n, W, H), still a view
    return y.reshape(n, window, -1)


class FrameWindows(NamedTuple):
    """Windows of every series of a long frame, concatenated in series order.

    X (n, W, F) with features [y, *covariates]; Y as in `make_windows` (targets: y only);
    series (n,) int index into `ids`; start (n,) position of each window's first input step
    within its series; ids the series names.
    """

    X: np.ndarray
    Y: np.ndarray
    series: np.ndarray
    start: np.ndarray
    ids: list[str]


def windows_from_frame(
    frame: pd.DataFrame,
    window: int,
    horizon: int = 1,
    target: str = "vector",
    covariates: Sequence[str] | None = None,
    stride: int = 1,
    dtype: Any = np.float32,
) -> FrameWindows:
    """Windows over every series of a long frame, series in order of first appearance.

    Each series' rows are gathered by position, so series may interleave, but a series' rows
    must run in time order (as `load_frame` returns them): windows are cut row after row, and
    a frame sorted some other way is refused rather than cut into windows that skip back in
    time. Series with missing values or fewer than window + horizon points raise
    SeqcastError naming the series."""
    covariates = list(covariates or [])
    missing = [c for c in ["unique_id", "ds", "y", *covariates] if c not in frame.columns]
    if missing:
        raise SeqcastError(f"the frame lacks column(s) {missing}; available: {list(frame.columns)}")
    columns = ["y", *covariates]
    check_time_order(frame)
    check_no_missing(frame[["unique_id", "ds", *columns]], what="windowing")
    check_enough_history(frame, window, horizon)
    table = frame[columns].to_numpy(dtype=dtype)
    parts_x, parts_y, series, start = [], [], [], []
    positions = frame.groupby("unique_id", sort=False).indices
    for k, rows in enumerate(positions.values()):  # one step per series, not per sample
        x, y = make_windows(table[rows], window, horizon, target, stride)
        parts_x.append(x)
        parts_y.append(y)
        series.append(np.full(len(x), k, dtype=np.int64))
        start.append(np.arange(len(x), dtype=np.int64) * stride)
    return FrameWindows(
        X=np.concatenate(parts_x),
        Y=np.concatenate(parts_y),
        series=np.concatenate(series),
        start=np.concatenate(start),
        ids=[str(i) for i in positions.keys()],
    )


def time_split_windows(
    n_windows: int, fractions: Sequence[float] = (0.8, 0.2), gap: int = 0
) -> tuple[slice, ...]:
    """Chronological slices of `range(n_windows)`, one per fraction (fractions sum to 1).

    `gap` windows are dropped before every split after the first. Consecutive windows of one
    series overlap, so with gap=0 a validation window's targets were earlier windows' inputs
    or targets; gap = window + horizon - 1 makes the parts share no time step.
    """
    check_positive_int("n_windows", n_windows)
    fractions = [float(f) for f in fractions]
    if not fractions or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise SeqcastError(
            f"`fractions` must be positive and sum to 1, got {fractions}; e.g. (0.7, 0.2, 0.1)"
        )
    if gap < 0:
        raise SeqcastError(f"`gap` must be >= 0, got {gap}")
    bounds = np.floor(np.cumsum([0.0, *fractions]) * n_windows + 1e-9).astype(int)
    bounds[-1] = n_windows
    slices = []
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        lo = lo + gap if k else lo
        if hi <= lo:
            raise SeqcastError(
                f"split {k} of {n_windows} windows with fractions {fractions} and gap {gap} "
                "is empty; use more data, larger fractions or a smaller gap"
            )
        slices.append(slice(int(lo), int(hi)))
    return tuple(slices)


def split_series(values: Any, train_frac: float, context: int = 0) -> tuple[Any, Any]:
    """(train, test) parts of `values` along axis 0 (time): the first floor(T * train_frac)
    steps, then the rest. `context` > 0 prepends the last `context` training steps to the
    test part so that windows of that length can start at the split (inputs only: every
    target of those windows still lies in the test period when context == window)."""
    if not 0.0 < float(train_frac) < 1.0:
        raise SeqcastError(f"`train_frac` must be in (0, 1), got {train_frac!r}")
    n_time = len(values)
    cut = int(np.floor(n_time * float(train_frac)))
    if cut == 0 or cut == n_time:
        raise SeqcastError(
            f"train_frac={train_frac} of {n_time} steps leaves an empty part; "
            "use a fraction that keeps both parts non-empty"
        )
    if not 0 <= context <= cut:
        raise SeqcastError(f"`context` must be in [0, {cut}] (the train length), got {context}")
    return values[:cut], values[cut - context :]


def _is_torch(values: Any) -> bool:
    return type(values).__module__.startswith("torch")
