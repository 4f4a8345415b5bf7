"""One column of a raw table as the frame's type: time stamps (datetime64 or int64) or float64
values. Cells that are not what the column needs raise SeqcastError naming the value and where
it is; nothing is dropped or replaced silently.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from seqcast.errors import SeqcastError

__all__ = ["to_datetime", "parse_time", "numeric"]

_INT_FIX = "numeric time stamps must be whole numbers within +-2**53 (or pass dates)"


def to_datetime(values: pd.Series) -> pd.Series:
    """datetime64 values (NaT where a value is not a date); stamps in several UTC offsets (a
    daylight-saving change) in UTC. Stamps with and without a zone mixed stay object."""
    with warnings.catch_warnings():  # "could not infer format": we report bad values ourselves
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # mixed offsets: handled below
        try:
            parsed = pd.to_datetime(values, errors="coerce")
            if parsed.isna().sum() > values.isna().sum():
                mixed = pd.to_datetime(values, errors="coerce", format="mixed")
                parsed = mixed if mixed.isna().sum() < parsed.isna().sum() else parsed
        except (TypeError, ValueError, OverflowError):  # values no parser takes, e.g. lists
            return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        if parsed.dtype == object and parsed.map(_has_zone, na_action="ignore").all():
            parsed = pd.to_datetime(parsed, utc=True)
    return parsed


def _has_zone(stamp: Any) -> bool:
    return getattr(stamp, "tzinfo", None) is not None


def parse_time(values: pd.Series, name: str, where) -> pd.Series:
    """Dates -> datetime64 ([ns] where it fits); whole numbers -> int64; anything else errors."""
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.to_timestamp()
    if pd.api.types.is_bool_dtype(values):
        raise SeqcastError(f"time column {name!r} holds booleans; expected dates or integers")
    if pd.api.types.is_integer_dtype(values) and not values.isna().any():
        if values.dtype == np.uint64 and (values > np.iinfo(np.int64).max).any():
            raise SeqcastError(f"time column {name!r} has stamps beyond 2**63; {_INT_FIX}")
        return pd.Series(values.to_numpy(dtype=np.int64))
    if pd.api.types.is_numeric_dtype(values):
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(array) | (array != np.round(array)) | (np.abs(array) > 2.0**53)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SeqcastError(
                f"time column {name!r} has value {_show(values.iloc[i])} at {where(i)}; {_INT_FIX}"
            )
        return pd.Series(array.astype(np.int64))
    parsed = values if pd.api.types.is_datetime64_any_dtype(values) else to_datetime(values)
    if not pd.api.types.is_datetime64_any_dtype(parsed):  # only zoned and naive stamps mixed
        raise SeqcastError(
            f"time column {name!r} mixes stamps with a time zone (UTC offset) and without one; "
            "write every stamp with its offset, or none of them"
        )
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


def numeric(values: pd.Series, name: str, where) -> pd.Series:
    """A float64 copy of `values`; NaN stays (missing), text or infinity is an error."""
    kind = _not_real(values)
    if kind:
        raise SeqcastError(
            f"column {name!r} holds {kind}, not real numbers; pass a numeric column (or name "
            "another one as the target)"
        )
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(np.float64)
    else:
        numbers = _to_float(values)
    array = numbers.to_numpy()
    bad = np.flatnonzero((np.isnan(array) & values.notna().to_numpy()) | np.isinf(array))
    if len(bad):
        i = bad[0]
        raise SeqcastError(
            f"column {name!r} must hold numbers, but has {_show(values.iloc[i])} at {where(i)}; "
            "fix that value (leave the cell empty for a missing value)"
        )
    return numbers


def _not_real(values: pd.Series) -> str | None:
    """What a column of dates, durations or complex numbers holds; None for any other."""
    if pd.api.types.is_datetime64_any_dtype(values) or isinstance(values.dtype, pd.PeriodDtype):
        return "dates"
    if pd.api.types.is_timedelta64_dtype(values):
        return "durations"
    if pd.api.types.is_complex_dtype(values):
        return "complex numbers"
    return None


def _to_float(values: pd.Series) -> pd.Series:
    """float64 of an object column, NaN where a cell is not a number. pandas' vectorised
    conversion where it gives real numbers; cell by cell where it fails or turns complex."""
    try:
        numbers = pd.to_numeric(values, errors="coerce")
        if pd.api.types.is_numeric_dtype(numbers) and not pd.api.types.is_complex_dtype(numbers):
            return numbers.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        pass
    return pd.Series([_number(v) for v in values], index=values.index, dtype=np.float64)


def _number(value: Any) -> float:
    """One cell as a float: NaN when it is not a number (text, a list, a complex value...)."""
    if isinstance(value, complex | np.complexfloating | bytes):
        return np.nan
    try:
        return float(pd.to_numeric(value))
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _show(value: Any) -> str:
    """repr of a cell value without numpy's wrapper: 'inf', not 'np.float64(inf)'."""
    return repr(value.item() if isinstance(value, np.generic) else value)
