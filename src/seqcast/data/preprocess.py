"""`WindowPipeline`: the per-series path between a long frame and a windowed model, and back.

    scale        a per-series scaler (standard or min-max) fit on the training frame, by id
    local level  each window shifted by its last observed target (so trends extrapolate)
    windows      strided training windows, or the last window of every series to forecast
    inverse      forecasts + level, unscaled with the same series' parameters

Fit/transform semantics as scikit-learn's: `fit(frame)` learns the scaler; everything else
reads a frame and returns arrays grouped by series id (never by row position: `load_frame`
returns each series as one block).
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


@dataclass(frozen=True)
class LastWindows:
    """The inputs that forecast after the end of every series of a frame."""

    x: np.ndarray  # (series, window, features), scaled and shifted by `level`
    level: np.ndarray  # (series, 1), in scaled units (0 without local level)
    ids: list[str]
    last: list[Any]  # each series' last time stamp


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
        self.scaler_ = None
        self._fitted = False
        self._parts_cache: tuple | None = None

    def fit(self, frame: pd.DataFrame) -> WindowPipeline:
        self.scaler_ = SCALERS[self.scaler]().fit(frame) if self.scaler else None
        self._fitted = True
        return self

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("This WindowPipeline is not fitted yet. Call `fit` first.")

    def scale(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return self.scaler_.transform(frame) if self.scaler_ is not None else frame

    def training_windows(self, frame: pd.DataFrame, steps: int, strategy: str):
        """(X, Y, series, start) over every series, X shifted to each window's last value when
        `local_level` (Y with it)."""
        target = "seq2seq" if strategy == "seq2seq" else "vector"
        win = windows_from_frame(self.scale(frame), self.window, steps, target, self.covariates)
        x, y = np.array(win.X), np.array(win.Y)
        if self.local_level:
            level = x[:, -1:, 0].copy()  # (n, 1)
            x[..., 0] -= level
            y = y - level[:, :, None] if y.ndim == 3 else y - level
        return x, y, win.series, win.start

    def last_windows(self, frame: pd.DataFrame) -> LastWindows:
        """The last `window` points of every series, scaled and shifted."""
        tails = frame.groupby("unique_id", sort=False).tail(self.window)
        sizes = tails.groupby("unique_id", sort=False).size()
        short = sizes[sizes < self.window]
        if len(short):
            raise SeqcastError(
                f"series {short.index[0]!r} has {int(short.iloc[0])} points but the model needs "
                f"the last {self.window} (its window) to forecast"
            )
        frames.check_no_missing(tails, what="prediction")
        values = self.scale(tails)[["y", *self.covariates]].to_numpy(np.float64)
        x = values.reshape(len(sizes), self.window, -1).copy()
        level = x[:, -1:, 0].copy() if self.local_level else np.zeros((len(x), 1))
        x[..., 0] -= level
        last = tails.groupby("unique_id", sort=False)["ds"].last()
        return LastWindows(x, level, [str(i) for i in sizes.index], last.to_list())

    def to_original(self, values: np.ndarray, level: np.ndarray, ids: list[str]) -> np.ndarray:
        """Forecasts (series, horizon) in scaled, level-shifted units back to data units."""
        out = values + level
        if self.scaler_ is not None:
            loc, scale = self._target_params(ids)
            out = out * scale + loc
        return np.asarray(out, dtype=np.float64)

    def _target_params(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The target's (loc, scale) per series; the last ids asked for are kept, since
        repeated `predict()` calls ask for the same and the look-up costs more than the
        model's forward pass (benchmarks/latency.py)."""
        key = tuple(ids)
        if self._parts_cache is None or self._parts_cache[0] != key:
            params = self.scaler_.params_for(ids, np.zeros((len(ids), 1)), "y")
            self._parts_cache = (key, params)
        return self._parts_cache[1]

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.scaler_.to_dict() if self.scaler_ is not None else {}

    @classmethod
    def from_dict(
        cls, window: int, scaler: str | None, local_level: bool, covariates, state: dict
    ) -> WindowPipeline:
        pipeline = cls(window, scaler, local_level, covariates)
        pipeline.scaler_ = scaler_from_dict(state) if state else None
        pipeline._fitted = True
        return pipeline


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
