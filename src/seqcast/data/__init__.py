"""Data layer: load and validate long frames, scale per series, cut windows, built-in data."""

from seqcast.data.datasets import airline_passengers, generate_time_series
from seqcast.data.frames import (
    check_enough_history,
    check_no_missing,
    future_stamps,
    infer_freq,
    load_frame,
    missing_report,
    split_by_time,
)
from seqcast.data.scalers import MinMaxScaler, StandardScaler, scaler_from_dict
from seqcast.data.windows import (
    FrameWindows,
    make_windows,
    split_series,
    time_split_windows,
    windows_from_frame,
)

__all__ = [
    "FrameWindows",
    "MinMaxScaler",
    "StandardScaler",
    "airline_passengers",
    "check_enough_history",
    "check_no_missing",
    "future_stamps",
    "generate_time_series",
    "infer_freq",
    "load_frame",
    "make_windows",
    "missing_report",
    "scaler_from_dict",
    "split_by_time",
    "split_series",
    "time_split_windows",
    "windows_from_frame",
]
