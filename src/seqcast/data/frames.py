"""Read time series from files, frames and arrays into one validated long frame.

The long frame is the ecosystem's format (NeuralForecast, StatsForecast): one row per
(series, time stamp) with columns

    unique_id  str      which series the row belongs to
    ds         datetime64 or int64, strictly increasing within each series
    y          float64  the target; NaN marks a missing value (kept, never dropped)
    <covariates> float64, optional extra inputs

`load_frame` never drops rows: bad input is an error that names the row. It returns the rows
in one canonical order: grouped by series, series in sorted `unique_id` order, each series in
its time order. Database exports often interleave series (rows sorted by date); everything
downstream cuts each series out of the frame as one contiguous block (its last window, its
last `horizon` points, its windows), so the frame is put in that order here, once, for every
caller. The sort is stable and moves whole series only: the order of a series' own rows must
already be its time order (a series that is not is refused with a message that says to sort
it, never sorted silently), so any interleaving of the same rows gives the same frame, and
the same frame gives bit-identical forecasts.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast.data.columns import numeric as _numeric
from seqcast.data.columns import parse_time as _parse_time
from seqcast.data.columns import to_datetime as _to_datetime
from seqcast.data.readers import as_table, read_file, reject_table_options
from seqcast.data.readers import column_names as _names
from seqcast.errors import SeqcastError, check_positive_int

__all__ = [
    "load_frame",
    "load_frame_with_rows",
    "check_time_order",
    "missing_report",
    "check_no_missing",
    "check_enough_history",
    "infer_freq",
    "future_stamps",
    "split_by_time",
]

DEFAULT_ID = "series_0"
TIME_NAMES = ("ds", "date", "datetime", "time", "timestamp", "month", "period", "year", "week")


# ----------------------------------------------------------------------------- entry point
def load_frame(
    source: Any,
    time_col: str | None = None,
    target: str | None = None,
    id_col: str | None = None,
    covariates: str | Sequence[str] | None = None,
    *,
    series_id: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read `source` into a validated long frame (`unique_id`, `ds`, `y`, covariates...).

    `source` may be a CSV or Parquet path, a DataFrame, a pandas Series or a numpy array
    (1-D: one series of shape (time,); 2-D: shape (time, n_series)). Tables need no flags when
    the choice is clear: the time column is the one named like ds/date/time/month/timestamp or
    the one that parses as dates; the target is `y` or the one remaining numeric column; the id
    column is `unique_id` when present. Series and arrays without a DatetimeIndex get integer
    time stamps 0..n-1. A table without an id column, a Series and a 1-D array form one series
    called `series_id` (default "series_0"); a 2-D array's columns are "series_0", "series_1"...
    unless `series_id` lists their names.

    Raises SeqcastError for a missing file, an empty table, unknown columns, unparseable time
    stamps, a non-numeric target, time stamps not strictly increasing within a series and
    duplicate stamps. Missing target values (NaN) are kept: see `missing_report`.

    Rows come back grouped by series, series in sorted id order, each in time order (see the
    module docstring), with a fresh RangeIndex.
    """
    frame, _ = load_frame_with_rows(
        source, time_col, target, id_col, covariates, series_id=series_id
    )
    return frame


def load_frame_with_rows(
    source: Any,
    time_col: str | None = None,
    target: str | None = None,
    id_col: str | None = None,
    covariates: str | Sequence[str] | None = None,
    *,
    series_id: str | Sequence[str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """`load_frame`, plus where each of its rows came from: `rows[i]` is the position in the
    source (a table's row; a 2-D array's values column by column) of the frame's row i.
    For results that go back in the caller's order: `result.iloc[np.argsort(rows)]`.
    """
    where: Callable[[int], str]
    if isinstance(source, str | os.PathLike):
        table, where = read_file(Path(source))
    elif isinstance(source, pd.DataFrame):
        table, where = source, lambda i: f"row {i}"
    else:
        reject_table_options(
            source, time_col=time_col, target=target, id_col=id_col, covariates=covariates
        )
        table, where = as_table(source, series_id)
    frame, codes = _from_table(table, time_col, target, id_col, covariates, series_id, where)
    return _canonical(frame, codes)


def _canonical(frame: pd.DataFrame, codes: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with series as contiguous blocks in sorted id order, source row of each row).

    `codes` numbers the ids in sorted order (`_id_codes`). A stable sort on the id alone:
    rows of one series keep their relative order, which `_check_order` has already found to
    be time order."""
    if (np.diff(codes) >= 0).all():  # already canonical (one series, or sorted by id): no copy
        return frame, np.arange(len(frame))
    rows = np.argsort(codes, kind="stable")
    return frame.iloc[rows].reset_index(drop=True), rows


# ----------------------------------------------------------------------------- tables
def _from_table(
    table: pd.DataFrame,
    time_col: str | None,
    target: str | None,
    id_col: str | None,
    covariates: str | Sequence[str] | None,
    series_id: Any,
    where: Callable[[int], str],
) -> tuple[pd.DataFrame, np.ndarray]:
    """(the long frame in the table's row order, `_id_codes` of its ids)."""
    if len(table) == 0:
        raise SeqcastError(f"the DataFrame has no rows (columns: {_names(table.columns)})")
    twice = table.columns[table.columns.duplicated()]
    if len(twice):
        raise SeqcastError(
            f"column {str(twice[0])!r} appears more than once in the table; give every column "
            "a distinct name (e.g. `df.columns = [...]`)"
        )
    table = _index_as_column(table, time_col)
    covs = [covariates] if isinstance(covariates, str) else list(covariates or [])
    for name, role in [(time_col, "time_col"), (target, "target"), (id_col, "id_col")]:
        _require_column(table, name, role)
    for name in covs:
        _require_column(table, name, "covariates")
    if id_col is None and "unique_id" in table.columns:
        id_col = "unique_id"
    taken = {id_col, *covs} - {None}
    time_col = time_col or _detect_time(table, taken | {target})
    target = target or _detect_target(table, taken | {time_col})

    out = pd.DataFrame(index=pd.RangeIndex(len(table)))
    out["unique_id"], codes = _ids(table, id_col, series_id, where)
    if time_col is None:  # a lone value column: integer time 0..n-1 within each series
        out["ds"] = out.groupby("unique_id", sort=False).cumcount().astype(np.int64)
    else:
        out["ds"] = _parse_time(table[time_col].reset_index(drop=True), time_col, where)
    out["y"] = _numeric(table[target].reset_index(drop=True), target, where)
    for name in covs:
        out[name] = _numeric(table[name].reset_index(drop=True), name, where)
    _check_order(out, where, codes)
    return out, codes


def _index_as_column(table: pd.DataFrame, time_col: str | None) -> pd.DataFrame:
    """A DataFrame indexed by dates gets that index as a column, so detection sees it."""
    if time_col is None and isinstance(table.index, pd.DatetimeIndex | pd.PeriodIndex):
        name = table.index.name or "ds"
        if name not in table.columns:
            return table.reset_index(names=name)
    return table


def _require_column(table: pd.DataFrame, name: str | None, role: str) -> None:
    if name is None or name in table.columns:
        return
    hint = [str(c) for c in table.columns if str(c).lower() == str(name).lower()]
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    raise SeqcastError(
        f"column {name!r} (given as `{role}`) not found; available columns: "
        f"{_names(table.columns)}{extra}"
    )


def _detect_time(table: pd.DataFrame, taken: set) -> str | None:
    """The time column's name, or None for a table whose only free column is the values."""
    free = [c for c in table.columns if c not in taken]
    by_name = [c for c in free if str(c).strip().lower() in TIME_NAMES]
    if len(by_name) == 1:
        return by_name[0]
    by_value = [c for c in free if _looks_like_dates(table[c])]
    candidates = by_name or by_value
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and len(free) == 1:
        return None
    found = f"several candidates ({_names(candidates)})" if candidates else "no date-like column"
    raise SeqcastError(
        f"cannot tell which column holds the time stamps: {found} among "
        f"{_names(table.columns)}; pass `time_col=` naming it"
    )


def _looks_like_dates(column: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(column) or isinstance(column.dtype, pd.PeriodDtype):
        return True
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    head = column.dropna().head(20)
    return len(head) > 0 and bool(_to_datetime(head).notna().all())


def _detect_target(table: pd.DataFrame, taken: set) -> str:
    if "y" in table.columns and "y" not in taken:
        return "y"
    free = [c for c in table.columns if c not in taken]
    numeric = [c for c in free if pd.api.types.is_numeric_dtype(table[c])]
    if len(free) == 1:
        return free[0]
    if len(numeric) == 1:
        return numeric[0]
    raise SeqcastError(
        f"cannot tell which column is the target among {_names(free or table.columns)}; "
        "pass `target=` naming it (and `covariates=` for extra inputs, `time_col=` for the time)"
    )


def _ids(
    table: pd.DataFrame, id_col: str | None, series_id: Any, where
) -> tuple[pd.Series, np.ndarray]:
    """(the ids as strings, their `_id_codes`)."""
    if id_col is None:
        sid = DEFAULT_ID if series_id is None else str(series_id)
        return pd.Series([sid] * len(table), dtype=str), np.zeros(len(table), dtype=np.intp)
    ids = table[id_col].reset_index(drop=True)
    bad = np.flatnonzero(ids.isna().to_numpy())
    if len(bad):
        raise SeqcastError(
            f"id column {id_col!r} is empty at {where(bad[0])}; give every row an id"
        )
    if isinstance(ids.dtype, pd.CategoricalDtype):  # e.g. a dictionary-encoded Parquet column
        # each category's string once, shared by its rows (not one new string per row)
        names = np.asarray(ids.cat.categories.astype(str), dtype=object)
        rank, _ = pd.factorize(names, sort=True)  # two categories may print the same
        row_codes = ids.cat.codes.to_numpy()
        return pd.Series(names.take(row_codes), dtype=object), rank.take(row_codes)
    ids = ids.astype(str)
    return ids, _id_codes(ids)


def _id_codes(ids: pd.Series) -> np.ndarray:
    """Each row's id as its position among the distinct ids in sorted order."""
    return pd.factorize(ids, sort=True)[0]


# ----------------------------------------------------------------------------- validation
def check_time_order(frame: pd.DataFrame) -> None:
    """Raise SeqcastError unless the stamps of every series are unique and increase down the
    frame (rows of different series may interleave). `load_frame` output always passes."""
    _check_order(frame, lambda i: f"row {i}", _id_codes(frame["unique_id"]))


def _check_order(frame: pd.DataFrame, where, codes: np.ndarray) -> None:
    """Time stamps must be unique and strictly increasing within every series (`codes`: the
    `_id_codes` of its ids)."""
    if _increasing_within_series(frame["ds"], codes):
        return  # the common case, checked on arrays; the search below names the first problem
    dup = frame.duplicated(["unique_id", "ds"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        sid, stamp = frame["unique_id"].iat[i], _fmt_stamp(frame["ds"].iat[i])
        raise SeqcastError(
            f"series {sid!r} has duplicate time stamp {stamp} (again at {where(i)}); "
            "keep one row per series and time stamp"
        )
    previous = frame.groupby("unique_id", sort=False)["ds"].shift()  # compared, not subtracted:
    back = np.flatnonzero((frame["ds"] < previous).to_numpy())  # a diff of dates can overflow
    if len(back):
        i = int(back[0])
        sid, stamp = frame["unique_id"].iat[i], _fmt_stamp(frame["ds"].iat[i])
        raise SeqcastError(
            f"series {sid!r} is not sorted by time: stamp {stamp} at {where(i)} comes after a "
            "later one; sort the rows by series and time (e.g. "
            "`df.sort_values(['unique_id', 'ds'])`) before loading"
        )


def _increasing_within_series(ds: pd.Series, codes: np.ndarray) -> bool:
    """Whether every series' stamps strictly increase down the frame, for integer and naive
    datetime stamps (False for any other kind: the caller checks those row by row)."""
    stamps = ds.to_numpy()
    if stamps.dtype.kind not in "iM":
        return False
    if not (np.diff(codes) >= 0).all():  # series interleave: bring each one's rows together
        order = np.argsort(codes, kind="stable")
        codes, stamps = codes[order], stamps[order]
    same = codes[1:] == codes[:-1]
    return bool((stamps[1:] > stamps[:-1])[same].all())


def missing_report(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per series: `unique_id`, `length`, `missing` (NaN count in `y`),
    `first_missing` (its first `ds`, or None) and `positions` (up to 5 positions in the series).
    """
    rows = []
    for sid, group in frame.groupby("unique_id", sort=False):
        where = np.flatnonzero(group["y"].isna().to_numpy())
        first = group["ds"].iat[where[0]] if len(where) else None
        rows.append((sid, len(group), len(where), first, where[:5].tolist()))
    columns = ["unique_id", "length", "missing", "first_missing", "positions"]
    return pd.DataFrame(rows, columns=columns)


def check_no_missing(frame: pd.DataFrame, what: str = "training") -> None:
    """Raise SeqcastError naming the first series with NaN in `y` (or in a covariate)."""
    value_cols = [c for c in frame.columns if c not in ("unique_id", "ds")]
    nan = frame[value_cols].isna()
    if not nan.to_numpy().any():
        return
    for col in value_cols:  # report `y` first, then covariates
        hits = np.flatnonzero(nan[col].to_numpy())
        if len(hits):
            sid = frame["unique_id"].iat[hits[0]]
            count = int(nan[col][frame["unique_id"] == sid].sum())
            stamp = _fmt_stamp(frame["ds"].iat[hits[0]])
            raise SeqcastError(
                f"series {sid!r} has {count} missing value{'s' * (count != 1)} in {col} "
                f"(first at {stamp}); {what} needs complete series: fill them with "
                "seqcast.impute (`--impute` on the command line) or drop those rows yourself"
            )


def check_enough_history(frame: pd.DataFrame, window: int, horizon: int) -> None:
    """Every series needs at least `window + horizon` points to form one training window."""
    need = check_positive_int("window", window) + check_positive_int("horizon", horizon)
    sizes = frame.groupby("unique_id", sort=False).size()
    short = sizes[sizes < need]
    if len(short):
        sid, n = short.index[0], int(short.iloc[0])
        others = f" ({len(short) - 1} more series are too short)" if len(short) > 1 else ""
        raise SeqcastError(
            f"series {sid!r} has {n} points but window {window} + horizon {horizon} needs at "
            f"least {need}{others}; use a smaller window or horizon, or drop that series"
        )


# ----------------------------------------------------------------------------- time
def infer_freq(frame: pd.DataFrame) -> str | int:
    """The pandas offset alias of the stamps ("MS", "D", "h"...), or the step for integer time.

    Every series with at least 3 points must agree; irregular stamps raise SeqcastError.
    """
    if not pd.api.types.is_datetime64_any_dtype(frame["ds"]):
        steps = frame.groupby("unique_id", sort=False)["ds"].diff().dropna().unique()
        if len(steps) > 1:
            raise SeqcastError(
                f"integer time stamps have uneven steps {sorted(int(s) for s in steps)[:5]}; "
                "expected one constant step (fill the gaps first)"
            )
        return int(steps[0]) if len(steps) else 1
    found: dict[str, str] = {}
    for sid, ds in frame.groupby("unique_id", sort=False)["ds"]:
        if len(ds) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(pd.DatetimeIndex(ds))
        if freq is None:
            raise SeqcastError(
                f"cannot infer the frequency of series {sid!r}: its time stamps are irregular "
                f"(first ones: {', '.join(_fmt_stamp(s) for s in ds.iloc[:3])}); fill the gaps "
                "or pass the frequency explicitly"
            )
        found.setdefault(getattr(freq, "freqstr", freq), sid)
    if len(found) != 1:
        if not found:
            raise SeqcastError(
                "cannot infer the frequency of the time stamps: no series has 3 or more points; "
                "give longer series"
            )
        detail = ", ".join(f"{f!r} ({s!r})" for f, s in found.items())
        raise SeqcastError(
            f"cannot infer one frequency for all series: {detail}; pass the frequency explicitly"
        )
    return next(iter(found))


def future_stamps(last_ds: Any, freq: str | int, horizon: int) -> pd.Index:
    """The `horizon` time stamps after `last_ds`: dates stepped by offset `freq` or integers
    stepped by int `freq`. Returns a DatetimeIndex or an int64 Index of length `horizon`."""
    check_positive_int("horizon", horizon)
    if isinstance(last_ds, int | np.integer) and not isinstance(last_ds, bool):
        if not isinstance(freq, int | np.integer) or freq <= 0:
            raise SeqcastError(f"integer time needs a positive integer step, got freq={freq!r}")
        start = int(last_ds)
        return pd.Index(start + int(freq) * np.arange(1, horizon + 1), dtype=np.int64)
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        raise SeqcastError(
            f"unknown frequency {freq!r}; expected a pandas offset alias such as 'D', 'MS', 'h'"
        ) from None
    last = pd.Timestamp(last_ds)
    return pd.DatetimeIndex([last + k * offset for k in range(1, horizon + 1)])


def future_stamps_many(last_ds: Sequence[Any], freq: str | int, horizon: int) -> pd.Index:
    """`future_stamps` of every series at once: the `horizon` stamps after each of `last_ds`,
    series after series (length len(last_ds) * horizon), in `horizon` vectorised offset
    additions instead of one Python call per series."""
    if not len(last_ds):
        return pd.Index([])
    first = last_ds[0]
    if not (isinstance(first, int | np.integer) and not isinstance(first, bool)):
        try:
            last = pd.DatetimeIndex(last_ds)
        except (TypeError, ValueError):  # mixed zones or types: one series at a time
            return _each_series(last_ds, freq, horizon)
        future_stamps(last[0], freq, horizon)  # checks freq and horizon, with its messages
        offset = pd.tseries.frequencies.to_offset(freq)
        later = [last + k * offset for k in range(1, horizon + 1)]  # k-th step of every series
        order = (np.arange(horizon)[None, :] * len(last) + np.arange(len(last))[:, None]).ravel()
        return later[0].append(later[1:]).take(order)
    future_stamps(first, freq, horizon)  # checks the integer step and horizon
    last = np.asarray(last_ds, dtype=np.int64)
    return pd.Index((last[:, None] + int(freq) * np.arange(1, horizon + 1)).ravel())


def _each_series(last_ds: Sequence[Any], freq: str | int, horizon: int) -> pd.Index:
    stamps = [future_stamps(d, freq, horizon) for d in last_ds]
    return stamps[0].append(stamps[1:])


def split_by_time(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): test holds the last `horizon` points of every series, train the rest."""
    check_positive_int("horizon", horizon)
    sizes = frame.groupby("unique_id", sort=False).size()
    short = sizes[sizes <= horizon]
    if len(short):
        raise SeqcastError(
            f"series {short.index[0]!r} has {int(short.iloc[0])} points, so holding out the last "
            f"{horizon} leaves nothing to train on; use a smaller horizon"
        )
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
    test = from_end < horizon
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


# ----------------------------------------------------------------------------- helpers
def _fmt_stamp(stamp: Any) -> str:
    if isinstance(stamp, pd.Timestamp):
        return stamp.isoformat().removesuffix("T00:00:00")
    return str(stamp)
