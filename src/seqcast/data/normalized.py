"""`NormalizedPipeline`: `Forecaster(normalize="auto")`, the per-series normalisation of
`seqcast.data.pipeline` (the one model="auto"'s networks use) between a long frame and a
zoo model (lstm, gru, wavenet...), and back.

For each series, `pipeline.fit_transform(y, season)` picks log scale (every value positive)
or division by the mean absolute step, and seasonal components where the autocorrelation test
finds a season. The model sees z = u - c (u = log y or y / s, c the components) minus the
window's last z (its level), and predicts the next steps on that scale: for a positive series,
log ratios to the last observed value, deseasonalised. Forecasts go back through
y = exp(z + level + c) (or (z + level + c) * s); intervals go back the same way, since the
map is increasing.

Where each transform is fitted, so nothing after a cut ever shapes it:
    training     on each series' training part only: the points before its validation cut
                 (`validation_size`), the cut `split_windows` uses; the validation windows
                 are then transformed with it, positions continuing past the cut
    prediction   on the whole history given to forecast from (as model="auto" does), so
                 evaluate and backtest, which cut the held-out part off first, never see it
    context      `predict()` without data uses the transforms of the training series fitted
                 on their whole training history, kept with the model (`SeriesTransforms`)

It has the interface of `preprocess.WindowPipeline` (`training_windows`, `last_windows`,
`to_original`, `scaling`), so the Forecaster, its scoring and its intervals use either alike.
Covariates are not normalised here: a model with covariates keeps `normalize=None`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqcast.data import frames, pipeline
from seqcast.data.windows import windows_from_frame
from seqcast.errors import NotFittedError, SeqcastError

NORMALIZE = (None, "auto")
#: the arrays a `SeriesTransforms` is saved as (float64, one row per series)
ARRAYS = ("log", "scale", "n", "season")


@dataclass(frozen=True)
class SeriesTransforms:
    """`pipeline.SeriesTransform` of many series as arrays, rows in `ids` order."""

    ids: list[str]
    log: np.ndarray  # (S,) bool: u = log y, else u = y / scale
    scale: np.ndarray  # (S,)
    n: np.ndarray  # (S,) the length of the history each was fitted on
    season: np.ndarray  # (S, m) components of u by position mod m (zeros: no season)

    @classmethod
    def of(cls, ids: list[str], fitted: list[pipeline.SeriesTransform]) -> SeriesTransforms:
        # one period for all: each series' components repeat to the common multiple of
        # their lengths (a series without a season has a single zero)
        period = math.lcm(*(len(t.season) for t in fitted)) if fitted else 1
        return cls(
            ids=list(ids),
            log=np.array([t.log for t in fitted], dtype=bool),
            scale=np.array([t.scale for t in fitted], dtype=np.float64),
            n=np.array([t.n for t in fitted], dtype=np.int64),
            season=np.array(
                [np.tile(t.season, period // len(t.season)) for t in fitted], dtype=np.float64
            ).reshape(len(fitted), period),
        )

    def take(self, rows: np.ndarray) -> SeriesTransforms:
        ids = [self.ids[i] for i in rows]
        return SeriesTransforms(ids, self.log[rows], self.scale[rows], self.n[rows],
                                self.season[rows])  # fmt: skip

    def rows_of(self, ids: list[str]) -> np.ndarray:
        rows = pd.Index(self.ids).get_indexer(ids)
        if (rows < 0).any():
            raise SeqcastError(
                f"series {ids[int(np.flatnonzero(rows < 0)[0])]!r} has no fitted normalisation; "
                "give its history to forecast from"
            )
        return rows

    def z(self, row: int, y: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """z of series `row` for values `y` at `positions` of its history."""
        u = np.log(y) if self.log[row] else y / self.scale[row]
        m = self.season.shape[1]
        return u - self.season[row, np.asarray(positions) % m]

    def to_original(self, z: np.ndarray) -> np.ndarray:
        """z (S, H) of the H steps after each history back to data units."""
        m = self.season.shape[1]
        positions = (self.n[:, None] + np.arange(z.shape[1])[None, :]) % m
        u = z + np.take_along_axis(self.season, positions, axis=1)
        return np.where(self.log[:, None], np.exp(np.minimum(u, 700.0)), u * self.scale[:, None])

    # -- persistence: float64 arrays, one row per series --------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "log": self.log.astype(np.float64),
            "scale": self.scale,
            "n": self.n.astype(np.float64),
            "season": self.season,
        }

    @classmethod
    def from_arrays(cls, ids: list[str], arrays: dict[str, np.ndarray]) -> SeriesTransforms:
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise SeqcastError(
                f"the model's stored normalisation lacks {missing}; fit and save it again"
            )
        season = np.asarray(arrays["season"], dtype=np.float64).reshape(len(ids), -1)
        log, scale = np.asarray(arrays["log"]) > 0.5, np.asarray(arrays["scale"], np.float64)
        return cls(list(ids), log, scale, np.asarray(arrays["n"]).astype(np.int64), season)


@dataclass(frozen=True)
class NormalizedWindows:
    """The inputs that forecast after the end of every series of a frame (z - level)."""

    x: np.ndarray  # (series, window, 1)
    level: np.ndarray  # (series, 1): each window's last z
    ids: list[str]
    last: list[Any]  # each series' last time stamp
    transforms: SeriesTransforms  # rows in `ids` order


class NormalizedPipeline:
    def __init__(self, window: int, season: Any, validation_size: float = 0.0) -> None:
        self.window = window
        self.season = 1 if season is None else season  # a length, or several (pipeline's)
        self.validation_size = float(validation_size)
        self._fitted = False

    def fit(self, frame: pd.DataFrame) -> NormalizedPipeline:
        """Check the columns; the transforms come from each frame the pipeline is given."""
        missing = [c for c in ("unique_id", "ds", "y") if c not in frame]
        if missing:
            raise SeqcastError(f"the frame lacks column(s) {missing}; give a long frame")
        self._fitted = True
        return self

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("This NormalizedPipeline is not fitted yet. Call `fit` first.")

    def fit_transforms(self, frame: pd.DataFrame, cut: bool = False) -> SeriesTransforms:
        """Each series' transform from its rows of `frame` (the first `cut` share of them,
        the training part before the validation cut, when `cut`)."""
        self._check_fitted()
        values = frame["y"].to_numpy(np.float64)
        ids, fitted = [], []
        for sid, idx in frame.groupby("unique_id", sort=False).indices.items():
            y = values[idx]
            if cut:
                y = y[: max(1, int(np.floor(len(y) * (1 - self.validation_size))))]
            if not np.isfinite(y).all():
                frames.check_no_missing(frame.iloc[idx], what="normalising")
                raise SeqcastError(f"series {str(sid)!r} holds infinite values; remove them")
            ids.append(str(sid))
            fitted.append(pipeline.fit_transform(y, self.season))
        return SeriesTransforms.of(ids, fitted)

    def scaling(self, frame: pd.DataFrame) -> SeriesTransforms:
        """The transforms of every series from its whole history in `frame` (kept with the
        model for `predict()` without data)."""
        return self.fit_transforms(frame)

    def training_windows(self, frame: pd.DataFrame, steps: int, strategy: str, dtype=np.float32):
        """(X, Y, series, start) over every series, z from the transform of its training part,
        each window shifted by its last z (targets with it)."""
        transforms = self.fit_transforms(frame, cut=True)
        values, z = frame["y"].to_numpy(np.float64), np.empty(len(frame), dtype=np.float64)
        for row, idx in enumerate(frame.groupby("unique_id", sort=False).indices.values()):
            z[idx] = transforms.z(row, values[idx], np.arange(len(idx)))
        scaled = pd.DataFrame({"unique_id": frame["unique_id"], "ds": frame["ds"], "y": z})
        target = "seq2seq" if strategy == "seq2seq" else "vector"
        win = windows_from_frame(scaled, self.window, steps, target, dtype=dtype)
        x, y = np.array(win.X), np.array(win.Y)
        level = x[:, -1:, 0].copy()  # (n, 1)
        x[..., 0] -= level
        y = y - level[:, :, None] if y.ndim == 3 else y - level
        return x, y, win.series, win.start

    def last_windows(
        self, frame: pd.DataFrame, scaling: SeriesTransforms | None = None
    ) -> NormalizedWindows:
        """The last `window` points of every series as z minus its last z. Each series'
        transform is `scaling`'s (the stored context's, whose rows end its fitted history)
        when given, else fitted on all its rows in `frame`."""
        self._check_fitted()
        transforms = self.fit_transforms(frame) if scaling is None else None
        groups = frame.groupby("unique_id", sort=False)
        ids = [str(i) for i in groups.indices]
        if scaling is not None:
            transforms = scaling.take(scaling.rows_of(ids))
        x = np.empty((len(ids), self.window, 1))
        y_all = frame["y"].to_numpy(np.float64)
        for row, (sid, idx) in enumerate(groups.indices.items()):
            if len(idx) < self.window:
                raise SeqcastError(
                    f"series {str(sid)!r} has {len(idx)} points but the model needs the last "
                    f"{self.window} (its window) to forecast"
                )
            y = y_all[idx[-self.window :]]
            if not np.isfinite(y).all():
                frames.check_no_missing(frame.iloc[idx], what="prediction")
            end = int(transforms.n[row])  # the rows given end the history the transform saw
            x[row, :, 0] = transforms.z(row, y, np.arange(end - self.window, end))
        level = x[:, -1:, 0].copy()
        x[..., 0] -= level
        last = frame["ds"].iloc[[idx[-1] for idx in groups.indices.values()]].to_list()
        return NormalizedWindows(x, level, ids, last, transforms)

    def to_original(self, values: np.ndarray, win: NormalizedWindows) -> np.ndarray:
        """Forecasts (series, horizon) as z minus level back to data units."""
        return win.transforms.to_original(np.asarray(values, np.float64) + win.level)

    def to_dict(self) -> dict[str, Any]:
        return {}  # no scaler: the transforms come from each history (or the saved context)

    @classmethod
    def restored(cls, window: int, season: Any, validation_size: float):
        out = cls(window, season, validation_size)
        out._fitted = True
        return out
