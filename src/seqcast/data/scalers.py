"""Per-series scalers for long frames, in scikit-learn's style.

Each scaler learns one affine map per series (`unique_id`) and column (`y`, then covariates):

    scaled = (value - loc_) / scale_        value = scaled * scale_ + loc_

`loc_` and `scale_` have shape (n_series, n_columns), rows in `ids_` order, columns in
`columns_` order. A constant series gets scale 1, so nothing divides by zero. Fit on the
training part only; `transform` then applies the training parameters to any later data.
Parameters round-trip through `to_dict()` / `scaler_from_dict()` as plain JSON (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from seqcast.errors import NotFittedError, SeqcastError

__all__ = ["MinMaxScaler", "StandardScaler", "scaler_from_dict"]

FORMAT_VERSION = 1
_KEYS = ("unique_id", "ds")


class _PerSeriesScaler:
    """Shared fit / transform / inverse machinery; subclasses define `_fit_params`."""

    _fitted_extra: tuple[str, ...] = ()  # subclass attributes saved by `to_dict`

    # -- subclass hook -------------------------------------------------------------------
    def _fit_params(self, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        """(loc, scale), each (n_series, n_columns), from a pandas GroupBy over the columns."""
        raise NotImplementedError

    # -- sklearn-style API ---------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def fit(self, frame: pd.DataFrame) -> _PerSeriesScaler:
        """Learn per-series parameters from `frame` (`y` and every other numeric column)."""
        _check_frame(frame, type(self).__name__)
        if len(frame) == 0:
            raise SeqcastError(f"{type(self).__name__}.fit got a frame with no rows")
        columns = _value_columns(frame)
        groups = frame.groupby("unique_id", sort=False)[columns]
        loc, scale = self._fit_params(groups)
        self.ids_ = [str(i) for i in groups.size().index]  # first-appearance order, as params
        self.columns_ = columns
        self.loc_ = loc
        self.scale_ = scale
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with every fitted column scaled by its series' parameters."""
        rows, columns = self._rows_and_columns(frame, "transform")
        out = frame.copy()
        for j, col in enumerate(self.columns_):
            if col in columns:
                loc, scale = self.loc_[rows, j], self.scale_[rows, j]
                out[col] = (frame[col].to_numpy(np.float64) - loc) / scale
        return out

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)

    def inverse_transform(self, data: pd.DataFrame | tuple) -> Any:
        """Undo `transform`. Takes a frame (returns a frame) or a tuple `(unique_ids, values)`
        (returns an array like `values`; see `inverse_transform_array`)."""
        if isinstance(data, tuple) and len(data) == 2:
            return self.inverse_transform_array(*data)
        rows, columns = self._rows_and_columns(data, "inverse_transform")
        out = data.copy()
        for j, col in enumerate(self.columns_):
            if col in columns:
                loc, scale = self.loc_[rows, j], self.scale_[rows, j]
                out[col] = data[col].to_numpy(np.float64) * scale + loc
        return out

    def transform_array(self, unique_ids: Any, values: Any, column: str = "y") -> Any:
        """Scale `values` of shape (n, ...) where row i belongs to series `unique_ids[i]` (or
        all rows to one series if `unique_ids` is a string). numpy in, numpy out; a torch tensor
        in gives a tensor of the same dtype and device."""
        values = values if _is_torch(values) else np.asarray(values)
        loc, scale = self.params_for(unique_ids, values, column)
        return (values - loc) / scale

    def inverse_transform_array(self, unique_ids: Any, values: Any, column: str = "y") -> Any:
        """Undo `transform_array`: e.g. predictions (batch, horizon, 1) back to data units."""
        values = values if _is_torch(values) else np.asarray(values)
        loc, scale = self.params_for(unique_ids, values, column)
        return values * scale + loc

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state: class name, constructor arguments and fitted parameters."""
        state: dict[str, Any] = {
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "params": _jsonable(self.get_params()),
        }
        if self._is_fitted():
            state["fitted"] = {
                "ids": list(self.ids_),
                "columns": list(self.columns_),
                "loc": self.loc_.tolist(),
                "scale": self.scale_.tolist(),
                **{name: getattr(self, name).tolist() for name in self._fitted_extra},
            }
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> _PerSeriesScaler:
        """Rebuild a scaler from `to_dict()` output (any scaler class when called on the base)."""
        return scaler_from_dict(state, expected=None if cls is _PerSeriesScaler else cls)

    # -- internals -----------------------------------------------------------------------
    def _is_fitted(self) -> bool:
        return hasattr(self, "scale_")

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet. Call `fit` first.")

    def _rows(self, unique_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each id in the parameter tables; unknown ids raise SeqcastError."""
        rows = pd.Index(self.ids_).get_indexer(pd.Index(np.asarray(unique_ids, dtype=str)))
        if (rows < 0).any():
            unknown = str(np.asarray(unique_ids, dtype=str)[rows < 0][0])
            shown = ", ".join(repr(i) for i in self.ids_[:5]) + (", ..." * (len(self.ids_) > 5))
            raise SeqcastError(
                f"series {unknown!r} was not seen when this {type(self).__name__} was fit "
                f"(it knows {len(self.ids_)} series: {shown}); fit the scaler on data that "
                "includes that series"
            )
        return rows

    def _rows_and_columns(self, frame: pd.DataFrame, method: str) -> tuple[np.ndarray, set]:
        self._check_fitted()
        _check_frame(frame, f"{type(self).__name__}.{method}")
        extra = [c for c in _value_columns(frame) if c not in self.columns_]
        if extra:
            raise SeqcastError(
                f"{type(self).__name__}.{method}: column(s) {extra} were not seen in `fit` "
                f"(fitted columns: {self.columns_}); fit on a frame with the same columns"
            )
        return self._rows(frame["unique_id"].to_numpy()), set(frame.columns)

    def params_for(self, unique_ids: Any, values: Any, column: str = "y") -> tuple[Any, Any]:
        """(loc, scale) for each row of `values` (row i belongs to series `unique_ids[i]`),
        shaped to broadcast over its other axes: data = scaled * scale + loc."""
        self._check_fitted()
        if column not in self.columns_:
            raise SeqcastError(f"unknown column {column!r}; this scaler knows {self.columns_}")
        j = self.columns_.index(column)
        n = len(values)
        ids = [unique_ids] * n if isinstance(unique_ids, str) else list(unique_ids)
        if len(ids) != n:
            raise SeqcastError(
                f"got {len(ids)} series ids for {n} rows of values (shape {tuple(values.shape)}); "
                "give one id per row, or one string for all rows"
            )
        rows = self._rows(ids)
        shape = (n,) + (1,) * (np.ndim(values) - 1)
        loc, scale = self.loc_[rows, j].reshape(shape), self.scale_[rows, j].reshape(shape)
        if _is_torch(values):
            import torch

            return (
                torch.as_tensor(loc, dtype=values.dtype, device=values.device),
                torch.as_tensor(scale, dtype=values.dtype, device=values.device),
            )
        dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
        return loc.astype(dtype), scale.astype(dtype)


class MinMaxScaler(_PerSeriesScaler):
    """Scale each series and column into `feature_range` using its own min and max.

    Fitted attributes: `ids_`, `columns_`, `data_min_`, `data_max_`, `loc_`, `scale_`
    (arrays of shape (n_series, n_columns)). NaN values are ignored by `fit` and kept by
    `transform`.
    """

    _fitted_extra = ("data_min_", "data_max_")

    def __init__(self, feature_range: tuple[float, float] = (0, 1)) -> None:
        self.feature_range = feature_range

    def get_params(self) -> dict[str, Any]:
        return {"feature_range": self.feature_range}

    def _fit_params(self, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        low, high = _check_range(self.feature_range)
        self.data_min_ = _fill(groups.min().to_numpy(np.float64), 0.0)
        self.data_max_ = _fill(groups.max().to_numpy(np.float64), 0.0)
        span = self.data_max_ - self.data_min_
        # constant series (or a span so small, ~1e-308, that dividing by it overflows): shift only
        span = np.where(_invertible(span / (high - low)), span, 1.0)
        scale = span / (high - low)
        return self.data_min_ - low * scale, scale


class StandardScaler(_PerSeriesScaler):
    """Center each series and column on its mean and divide by its (population) std.

    Fitted attributes: `ids_`, `columns_`, `mean_`, `loc_` (== `mean_`), `scale_` (std, or 1
    for a constant series), arrays of shape (n_series, n_columns).
    """

    _fitted_extra = ("mean_",)

    def _fit_params(self, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        self.mean_ = _fill(groups.mean().to_numpy(np.float64), 0.0)
        std = _fill(groups.std(ddof=0).to_numpy(np.float64), 1.0)
        return self.mean_, np.where(_invertible(std), std, 1.0)


def _invertible(scale: np.ndarray) -> np.ndarray:
    """Where 1 / scale is a finite positive number (not for 0, denormals, NaN)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return (scale > 0) & np.isfinite(1.0 / scale)


_SCALERS = {cls.__name__: cls for cls in (MinMaxScaler, StandardScaler)}


def scaler_from_dict(state: dict[str, Any], expected: type | None = None) -> _PerSeriesScaler:
    """Rebuild a scaler from `to_dict()` output (as read back from scaler.json)."""
    name = state.get("class") if isinstance(state, dict) else None
    if name not in _SCALERS:
        raise SeqcastError(
            f"unknown scaler {name!r} in saved state; expected one of {sorted(_SCALERS)}"
        )
    if expected is not None and name != expected.__name__:
        raise SeqcastError(f"the saved state is a {name}, not a {expected.__name__}")
    if state.get("format_version") != FORMAT_VERSION:
        raise SeqcastError(
            f"saved scaler has format_version {state.get('format_version')!r}; this seqcast "
            f"reads version {FORMAT_VERSION}"
        )
    params = dict(state.get("params", {}))
    if "feature_range" in params:
        params["feature_range"] = tuple(params["feature_range"])
    scaler = _SCALERS[name](**params)
    fitted = state.get("fitted")
    if fitted:
        scaler.ids_ = [str(i) for i in fitted["ids"]]
        scaler.columns_ = [str(c) for c in fitted["columns"]]
        scaler.loc_ = np.asarray(fitted["loc"], dtype=np.float64).reshape(len(scaler.ids_), -1)
        scaler.scale_ = np.asarray(fitted["scale"], dtype=np.float64).reshape(scaler.loc_.shape)
        for attr in scaler._fitted_extra:
            setattr(scaler, attr, np.asarray(fitted[attr], dtype=np.float64))
    return scaler


# ----------------------------------------------------------------------------- helpers
def _check_frame(frame: Any, who: str) -> None:
    if not isinstance(frame, pd.DataFrame) or "unique_id" not in frame.columns:
        got = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise SeqcastError(
            f"{who} expects a long frame with columns 'unique_id', 'ds', 'y' (see "
            f"seqcast.data.load_frame), got {got}"
        )


def _value_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric columns besides `unique_id` and `ds`: `y` and the covariates."""
    return [
        c for c in frame.columns if c not in _KEYS and pd.api.types.is_numeric_dtype(frame[c].dtype)
    ]


def _check_range(feature_range: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in feature_range)
    except (TypeError, ValueError):
        raise SeqcastError(
            f"`feature_range` must be a pair (min, max), got {feature_range!r}"
        ) from None
    if not low < high:
        raise SeqcastError(f"`feature_range` must have min < max, got {feature_range!r}")
    return low, high


def _fill(params: np.ndarray, value: float) -> np.ndarray:
    """All-NaN series/columns get a neutral parameter instead of NaN."""
    return np.where(np.isnan(params), value, params)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _is_torch(values: Any) -> bool:
    return type(values).__module__.startswith("torch")
