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
_CSV_EXT = (".csv", ".csv.gz", ".txt", ".tsv")
_PARQUET_EXT = (".parquet", ".pq")


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
    if isinstance(source, str | os.PathLike):
        table, name = _read_file(Path(source)), Path(source).name
        where: Callable[[int], str] = lambda i: f"line {i + 2} of {name}"  # noqa: E731
    elif isinstance(source, pd.DataFrame):
        table, where = source, lambda i: f"row {i}"
    else:
        _reject_table_options(
            source, time_col=time_col, target=target, id_col=id_col, covariates=covariates
        )
        table, where = _as_table(source, series_id)
    frame = _from_table(table, time_col, target, id_col, covariates, series_id, where)
    return _canonical(frame)


def _canonical(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with series as contiguous blocks in sorted id order, source row of each row).

    A stable sort on the id alone: rows of one series keep their relative order, which
    `_check_order` has already found to be time order."""
    codes, _ = pd.factorize(frame["unique_id"], sort=True)
    if (np.diff(codes) >= 0).all():  # already canonical (one series, or sorted by id): no copy
        return frame, np.arange(len(frame))
    rows = np.argsort(codes, kind="stable")
    return frame.iloc[rows].reset_index(drop=True), rows


def _reject_table_options(source: Any, **options: Any) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise SeqcastError(
            f"{', '.join(f'`{g}`' for g in given)} name columns of a table, but the source is a "
            f"{type(source).__name__} with no columns; drop those arguments or pass a DataFrame"
        )


# ----------------------------------------------------------------------------- readers
def _read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise SeqcastError(f"no such file: {path}")
    if path.is_dir():
        raise SeqcastError(f"{path} is a directory; expected a CSV or Parquet file")
    name = path.name.lower()
    if name.endswith(_PARQUET_EXT):
        table = pd.read_parquet(path)
    elif name.endswith(_CSV_EXT):
        sep = "\t" if name.endswith(".tsv") else ","
        try:
            table = pd.read_csv(path, sep=sep)
        except pd.errors.EmptyDataError:
            raise SeqcastError(f"file {path} is empty; expected a header and data rows") from None
    else:
        known = ", ".join(_CSV_EXT + _PARQUET_EXT)
        raise SeqcastError(
            f"unsupported file type {path.suffix or '(none)'!r} for {path}; expected one of "
            f"{known} (or read it with pandas and pass the DataFrame)"
        )
    if len(table) == 0:
        raise SeqcastError(f"file {path} has no data rows (columns: {_names(table.columns)})")
    return table


def _as_table(source: Any, series_id: Any) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """A Series or array as a table `_from_table` reads: dates (if any) in `ds`, values in `y`,
    and for a 2-D array one `unique_id` per column; plus how to point at a bad value."""
    if isinstance(source, pd.Series):
        index = source.index
        if isinstance(index, pd.PeriodIndex):
            index = index.to_timestamp()
        table = pd.DataFrame({"y": source.to_numpy()})
        if isinstance(index, pd.DatetimeIndex):
            table.insert(0, "ds", index)
        return _nonempty(table, "Series"), lambda i: f"position {i}"
    if not isinstance(source, np.ndarray | list | tuple) and not hasattr(source, "__array__"):
        raise SeqcastError(
            f"cannot read time series from a {type(source).__name__}; expected a CSV/Parquet "
            "path, a pandas DataFrame or Series, or a numpy array"
        )
    values = np.asarray(source)
    if values.ndim not in (1, 2):
        raise SeqcastError(
            f"expected a 1-D array (time,) or a 2-D array (time, n_series), got shape "
            f"{values.shape}"
        )
    if values.ndim == 1:
        return _nonempty(pd.DataFrame({"y": values}), "array"), lambda i: f"position {i}"
    n_time, n_series = values.shape
    ids = np.repeat(_array_ids(series_id, n_series), n_time)
    table = pd.DataFrame({"unique_id": ids, "y": values.T.reshape(-1)})  # column by column
    return _nonempty(table, "array"), lambda i: f"row {i % n_time}, column {i // n_time}"


def _nonempty(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    if len(table) == 0:
        raise SeqcastError(f"the {kind} is empty; expected at least one value")
    return table


def _array_ids(series_id: Any, n_series: int) -> list[str]:
    if series_id is None:
        return [f"series_{j}" for j in range(n_series)]
    ids = [str(series_id)] if isinstance(series_id, str) else [str(s) for s in series_id]
    if len(ids) != n_series or len(set(ids)) != n_series:
        raise SeqcastError(
            f"`series_id` gives {len(ids)} name(s) {ids} for {n_series} series (array columns); "
            "give one distinct name per column"
        )
    return ids


# ----------------------------------------------------------------------------- tables
def _from_table(
    table: pd.DataFrame,
    time_col: str | None,
    target: str | None,
    id_col: str | None,
    covariates: str | Sequence[str] | None,
    series_id: Any,
    where: Callable[[int], str],
) -> pd.DataFrame:
    if len(table) == 0:
        raise SeqcastError(f"the DataFrame has no rows (columns: {_names(table.columns)})")
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
    out["unique_id"] = _ids(table, id_col, series_id, where)
    if time_col is None:  # a lone value column: integer time 0..n-1 within each series
        out["ds"] = out.groupby("unique_id", sort=False).cumcount().astype(np.int64)
    else:
        out["ds"] = _parse_time(table[time_col].reset_index(drop=True), time_col, where)
    out["y"] = _numeric(table[target].reset_index(drop=True), target, where)
    for name in covs:
        out[name] = _numeric(table[name].reset_index(drop=True), name, where)
    _check_order(out, where)
    return out


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


def _ids(table: pd.DataFrame, id_col: str | None, series_id: Any, where) -> pd.Series:
    if id_col is None:
        sid = DEFAULT_ID if series_id is None else str(series_id)
        return pd.Series([sid] * len(table), dtype=str)
    ids = table[id_col].reset_index(drop=True)
    bad = np.flatnonzero(ids.isna().to_numpy())
    if len(bad):
        raise SeqcastError(
            f"id column {id_col!r} is empty at {where(bad[0])}; give every row an id"
        )
    return ids.astype(str)


# ----------------------------------------------------------------------------- columns
def _to_datetime(values: pd.Series) -> pd.Series:
    with warnings.catch_warnings():  # "could not infer format": we report bad values ourselves
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, errors="coerce")
        if parsed.isna().sum() > values.isna().sum():
            mixed = pd.to_datetime(values, errors="coerce", format="mixed")
            parsed = mixed if mixed.isna().sum() < parsed.isna().sum() else parsed
    return parsed


def _parse_time(values: pd.Series, name: str, where) -> pd.Series:
    """Dates -> datetime64 ([ns] where it fits); whole numbers -> int64; anything else errors."""
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.to_timestamp()
    if pd.api.types.is_bool_dtype(values):
        raise SeqcastError(f"time column {name!r} holds booleans; expected dates or integers")
    if pd.api.types.is_numeric_dtype(values):
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if len(bad):
            i = bad[0]
            raise SeqcastError(
                f"time column {name!r} has value {_show(values.iloc[i])} at {where(i)}; "
                "numeric time stamps must be whole numbers (or pass dates)"
            )
        return pd.Series(array.astype(np.int64))
    parsed = values if pd.api.types.is_datetime64_any_dtype(values) else _to_datetime(values)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = bad[0]
        raise SeqcastError(
            f"cannot parse time stamp {_show(values.iloc[i])} in column {name!r} at {where(i)}; "
            "expected dates such as '1949-01-01' or integers (fix or remove that row)"
        )
    if parsed.dt.tz is None and parsed.dt.year.between(1678, 2261).all():
        parsed = parsed.astype("datetime64[ns]")  # one resolution, whatever the source
    return parsed


def _numeric(values: pd.Series, name: str, where) -> pd.Series:
    """A float64 copy of `values`; NaN stays (missing), text or infinity is an error."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(np.float64)
    else:
        numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    array = numbers.to_numpy()
    bad = np.flatnonzero((np.isnan(array) & values.notna().to_numpy()) | np.isinf(array))
    if len(bad):
        i = bad[0]
        raise SeqcastError(
            f"column {name!r} must hold numbers, but has {_show(values.iloc[i])} at {where(i)}; "
            "fix that value (leave the cell empty for a missing value)"
        )
    return numbers


# ----------------------------------------------------------------------------- validation
def check_time_order(frame: pd.DataFrame) -> None:
    """Raise SeqcastError unless the stamps of every series are unique and increase down the
    frame (rows of different series may interleave). `load_frame` output always passes."""
    _check_order(frame, lambda i: f"row {i}")


def _check_order(frame: pd.DataFrame, where) -> None:
    """Time stamps must be unique and strictly increasing within every series."""
    dup = frame.duplicated(["unique_id", "ds"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        sid, stamp = frame["unique_id"].iat[i], _fmt_stamp(frame["ds"].iat[i])
        raise SeqcastError(
            f"series {sid!r} has duplicate time stamp {stamp} (again at {where(i)}); "
            "keep one row per series and time stamp"
        )
    step = frame.groupby("unique_id", sort=False)["ds"].diff()
    if pd.api.types.is_timedelta64_dtype(step):
        step = step.dt.total_seconds()
    back = np.flatnonzero((step < 0).to_numpy())
    if len(back):
        i = int(back[0])
        sid, stamp = frame["unique_id"].iat[i], _fmt_stamp(frame["ds"].iat[i])
        raise SeqcastError(
            f"series {sid!r} is not sorted by time: stamp {stamp} at {where(i)} comes after a "
            "later one; sort the rows by series and time (e.g. "
            "`df.sort_values(['unique_id', 'ds'])`) before loading"
        )


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
        detail = ", ".join(f"{f!r} ({s!r})" for f, s in found.items()) or "no series has 3 points"
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
def _names(columns: Any) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _show(value: Any) -> str:
    """repr of a cell value without numpy's wrapper: 'inf', not 'np.float64(inf)'."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fmt_stamp(stamp: Any) -> str:
    if isinstance(stamp, pd.Timestamp):
        return stamp.isoformat().removesuffix("T00:00:00")
    return str(stamp)
