"""`WindowPipeline`: the per-series path between a long frame and a windowed model, and back.

    scale        a per-series scaler (standard or min-max), fit on each series' own history
                 every time a frame comes in, by id
    local level  each window shifted by its last observed target (so trends extrapolate)
    windows      strided training windows, or the last window of every series to forecast
    inverse      forecasts + level, unscaled with the parameters of the window's own series

The pipeline keeps no per-series state: `training_windows(frame)` scales each series by the
statistics of its rows in the training frame, and `last_windows(frame)` by the statistics of
its rows in the frame given to forecast from (the whole history given, not only the last
window). A series forecast from the history it was trained on is therefore scaled exactly as
in training, and a series never seen in training is scaled by its own history, so a model
fit on a sample of series forecasts any other. The parameters used for a forecast travel
with its windows (`LastWindows.loc` / `.scale`), so nothing is looked up by id afterwards.

Scalers never see what they are asked to forecast: `last_windows` reads only the history it
is given, so evaluation and backtests, which cut the held-out part off first, keep it unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqcast.data import frames
from seqcast.data.scalers import MinMaxScaler, StandardScaler, scaler_from_dict
from seqcast.data.windows import windows_from_frame
from seqcast.errors import NotFittedError, SeqcastError, check_choice

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, None: None}
_SCALER_NAMES = {"StandardScaler": "standard", "MinMaxScaler": "minmax"}


@dataclass(frozen=True)
class LastWindows:
    """The inputs that forecast after the end of every series of a frame."""

    x: np.ndarray  # (series, window, features), scaled and shifted by `level`
    level: np.ndarray  # (series, 1), in scaled units (0 without local level)
    ids: list[str]
    last: list[Any]  # each series' last time stamp
    loc: np.ndarray  # (series, 1): the target's scaler location (0 without a scaler)
    scale: np.ndarray  # (series, 1): the target's scaler scale (1 without a scaler)


@dataclass(frozen=True)
class SeriesScaling:
    """Per-series scaler parameters for a fixed list of series, rows in `ids` order: what
    `predict()` without data uses for the series kept as the model's context."""

    ids: list[str]
    columns: list[str]
    loc: np.ndarray  # (series, columns)
    scale: np.ndarray  # (series, columns)


class WindowPipeline:
    def __init__(
        self,
        window: int,
        scaler: str | None = "standard",
        local_level: bool = True,
        covariates: list[str] | None = None,
    ) -> None:
        check_choice("scaler", scaler, SCALERS)
        self.window = window
        self.scaler = scaler
        self.local_level = local_level
        self.covariates = list(covariates or [])
        self._fitted = False

    def fit(self, frame: pd.DataFrame) -> WindowPipeline:
        """Check that `frame` has the columns the pipeline reads. Nothing is learnt per
        series: scaling parameters come from each frame the pipeline is given."""
        missing = [c for c in ["unique_id", "ds", "y", *self.covariates] if c not in frame]
        if missing:
            raise SeqcastError(f"the frame lacks column(s) {missing}; give a long frame")
        self._fitted = True
        return self

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("This WindowPipeline is not fitted yet. Call `fit` first.")

    def scaling(self, frame: pd.DataFrame) -> SeriesScaling | None:
        """Each series' scaler parameters from its own rows of `frame` (None without a
        scaler)."""
        self._check_fitted()
        if self.scaler is None:
            return None
        fitted = SCALERS[self.scaler]().fit(frame[["unique_id", "y", *self.covariates]])
        return SeriesScaling(fitted.ids_, fitted.columns_, fitted.loc_, fitted.scale_)

    def _scale(self, frame: pd.DataFrame, scaling: SeriesScaling | None) -> pd.DataFrame:
        if scaling is None:
            return frame
        rows = _scaling_rows(scaling, frame["unique_id"].astype(str).to_numpy())
        out = frame.copy()
        for j, col in enumerate(scaling.columns):
            values = frame[col].to_numpy(np.float64)
            out[col] = (values - scaling.loc[rows, j]) / scaling.scale[rows, j]
        return out

    def training_windows(self, frame: pd.DataFrame, steps: int, strategy: str, dtype=np.float32):
        """(X, Y, series, start) over every series, each scaled by its own rows of `frame`;
        X shifted to each window's last value when `local_level` (Y with it)."""
        target = "seq2seq" if strategy == "seq2seq" else "vector"
        scaled = self._scale(frame, self.scaling(frame))
        win = windows_from_frame(scaled, self.window, steps, target, self.covariates, dtype=dtype)
        x, y = np.array(win.X), np.array(win.Y)
        if self.local_level:
            level = x[:, -1:, 0].copy()  # (n, 1)
            x[..., 0] -= level
            y = y - level[:, :, None] if y.ndim == 3 else y - level
        return x, y, win.series, win.start

    def last_windows(
        self, frame: pd.DataFrame, scaling: SeriesScaling | None = None
    ) -> LastWindows:
        """The last `window` points of every series, scaled and shifted. Each series is
        scaled by `scaling` when given (the stored context's parameters), else by the
        statistics of all its rows in `frame`: the whole history given, not only the window."""
        self._check_fitted()
        ids = frame["unique_id"].to_numpy()
        blocks = _series_blocks(ids)
        if blocks is None:  # series interleave: each one's rows together, in order, first
            frame = frame.iloc[np.argsort(pd.factorize(ids)[0], kind="stable")]
            blocks = _series_blocks(frame["unique_id"].to_numpy())
        return self._last_windows_of_blocks(frame, scaling, *blocks)

    def _last_windows_of_blocks(self, frame, scaling, starts, lengths) -> LastWindows:
        """`last_windows` of a frame whose series are contiguous blocks of rows starting at
        `starts`, in order of appearance: cut with arrays, without grouping the whole frame."""
        short = np.flatnonzero(lengths < self.window)
        ids_col = frame["unique_id"].to_numpy()
        if len(short):
            k = short[0]
            raise SeqcastError(
                f"series {ids_col[starts[k]]!r} has {int(lengths[k])} points but the model "
                f"needs the last {self.window} (its window) to forecast"
            )
        ends = starts + lengths
        rows = (ends[:, None] - self.window + np.arange(self.window)).ravel()
        columns = ["y", *self.covariates]
        values = np.column_stack([frame[c].to_numpy(np.float64)[rows] for c in columns])
        if np.isnan(values).any() or len(frame.columns) > len(columns) + 2:
            # names the series (and checks any other value column)
            frames.check_no_missing(frame.iloc[rows], what="prediction")
        ids = [str(i) for i in ids_col[starts]]
        if scaling is None and self.scaler is not None:
            # the series numbered in order: grouped as the ids group, without hashing them
            number = np.repeat(np.arange(len(starts), dtype=np.int32), lengths)
            keyed = {"unique_id": number, **{c: frame[c] for c in columns}}
            fitted = SCALERS[self.scaler]().fit(pd.DataFrame(keyed, copy=False))
            scaling = SeriesScaling(ids, fitted.columns_, fitted.loc_, fitted.scale_)
        if scaling is not None:
            at = np.repeat(_scaling_rows(scaling, ids), self.window)  # each window row's series
            for j, col in enumerate(scaling.columns):
                if col in columns:
                    k = columns.index(col)
                    values[:, k] = (values[:, k] - scaling.loc[at, j]) / scaling.scale[at, j]
        x = values.reshape(len(ids), self.window, -1)
        level = x[:, -1:, 0].copy() if self.local_level else np.zeros((len(x), 1))
        x[..., 0] -= level
        loc, scale = _target_params(scaling, ids)
        last = frame["ds"].iloc[ends - 1].to_list()
        return LastWindows(x, level, ids, last, loc, scale)

    def to_original(self, values: np.ndarray, win: LastWindows) -> np.ndarray:
        """Forecasts (series, horizon) in scaled, level-shifted units back to data units,
        with the parameters the windows `win` were scaled by."""
        return np.asarray((values + win.level) * win.scale + win.loc, dtype=np.float64)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The scaler's kind and settings: a fixed size, whatever the number of series."""
        return SCALERS[self.scaler]().to_dict() if self.scaler else {}

    @classmethod
    def from_dict(
        cls, window: int, scaler: str | None, local_level: bool, covariates, state: dict
    ) -> WindowPipeline:
        """A pipeline from `to_dict()` output; `state` is checked against `scaler`. Older
        model directories stored fitted per-series parameters, which are not needed here."""
        if state:
            kind = _SCALER_NAMES.get(scaler_from_dict(state).__class__.__name__)
            if kind != scaler:
                raise SeqcastError(
                    f"the saved scaler is {kind!r} but the model's settings say {scaler!r}; "
                    "the model directory is inconsistent, fit and save it again"
                )
        pipeline = cls(window, scaler, local_level, covariates)
        pipeline._fitted = True
        return pipeline


def scaling_from_state(state: dict) -> SeriesScaling | None:
    """The per-series parameters of an older model directory's fitted scaler.json."""
    if not state or not state.get("fitted"):
        return None
    fitted = scaler_from_dict(state)
    return SeriesScaling(fitted.ids_, fitted.columns_, fitted.loc_, fitted.scale_)


def _series_blocks(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first row, row count) of each series when every series is one contiguous block of
    rows (as `load_frame` returns them), in order of appearance; None when they interleave."""
    if not len(ids):
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    if not pd.Index(ids[starts]).is_unique:
        return None
    return starts, np.diff(np.r_[starts, len(ids)])


def _scaling_rows(scaling: SeriesScaling, ids: list[str] | np.ndarray) -> np.ndarray:
    """Each id's row in `scaling`; an id it lacks raises SeqcastError."""
    rows = pd.Index(scaling.ids).get_indexer(ids)
    if (rows < 0).any():
        raise SeqcastError(
            f"series {ids[int(np.flatnonzero(rows < 0)[0])]!r} has no scaling parameters; give "
            "its history to forecast from"
        )
    return rows


def _target_params(scaling: SeriesScaling | None, ids: list[str]) -> tuple[np.ndarray, ...]:
    if scaling is None:
        return np.zeros((len(ids), 1)), np.ones((len(ids), 1))
    rows = pd.Index(scaling.ids).get_indexer(ids)
    j = scaling.columns.index("y")
    return scaling.loc[rows, j].reshape(-1, 1), scaling.scale[rows, j].reshape(-1, 1)


def split_windows(
    series: np.ndarray,
    start: np.ndarray,
    lengths: np.ndarray,
    window: int,
    steps: int,
    seq2seq: bool,
    validation_size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) masks over windows: each series is cut at its last
    `validation_size` share; training windows' targets end before the cut, validation
    windows' targets start at or after it, and windows straddling it are used for neither."""
    cut = np.floor(lengths * (1 - float(validation_size))).astype(int)[series]
    first_target = start + (1 if seq2seq else window)
    last_target = start + window + steps - 1
    train, val = last_target < cut, first_target >= cut
    if not train.any():
        raise SeqcastError(
            f"no training window fits before the validation part (validation_size="
            f"{validation_size}); use a smaller window or validation_size, or more data"
        )
    return train, val
