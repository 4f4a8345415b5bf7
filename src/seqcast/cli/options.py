"""Options shared by the commands, and checks of their values before any work starts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from seqcast.errors import SeqcastError

Data = Annotated[
    str, typer.Argument(help="CSV or Parquet file (long, or two columns: time, value)")
]
TimeCol = Annotated[str | None, typer.Option("--time-col", help="time column (auto-detected)")]
Target = Annotated[str | None, typer.Option("--target", help="value column (auto-detected)")]
IdCol = Annotated[str | None, typer.Option("--id-col", help="series id column, for many series")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
Impute = Annotated[
    bool,
    typer.Option(
        "--impute",
        help="fill missing values first (see `seqcast impute`); without it they are an error",
    ),
]
ImputeMethod = Annotated[
    str | None,
    typer.Option(
        "--impute-method",
        help="auto (per series, RNN or linear interpolation: the better on held-out values), "
        "rnn or linear; implies --impute",
    ),
]


Normalize = Annotated[
    str,
    typer.Option(
        "--normalize",
        help="auto: each series on a log / deseasonalised scale relative to its last value "
        "(as model auto's networks); none: a per-series standard scaler",
    ),
]


def normalize_option(value: str) -> str | None:
    """--normalize's value as `Forecaster(normalize=...)` takes it."""
    if value not in ("none", "auto"):
        raise SeqcastError(f"--normalize must be one of none, auto, got {value!r}")
    return None if value == "none" else value


def column_options(time_col: str | None, target: str | None, id_col: str | None) -> dict[str, Any]:
    """The column options given, as keyword arguments of `seqcast.data.frames.load_frame`."""
    opts = {"time_col": time_col, "target": target, "id_col": id_col}
    return {k: v for k, v in opts.items() if v is not None}


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise SeqcastError(f"--{name} must be a positive integer, got {value}")


def seasons(text: str | None) -> int | list[int] | None:
    """--season: one length ("12") or several ("24,168")."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SeqcastError(
            f"--season must be a positive integer or a comma-separated list of them (e.g. 24,168), "
            f"got {text!r}"
        )
    values = [int(p) for p in parts]
    return values[0] if len(values) == 1 else values


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(text: str | None) -> float | None:
    """--time-limit: seconds ("90"), or with a unit ("90s", "10m", "1.5h")."""
    if text is None:
        return None
    value = str(text).strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :]
    try:
        seconds = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise SeqcastError(
            f"--time-limit must be a positive duration like 90s, 10m or 1h, got {text!r}"
        )
    return seconds


Season = Annotated[
    str | None,
    typer.Option(help="season length, or several (24,168); auto infers them from the time stamps"),
]
TimeLimit = Annotated[
    str | None,
    typer.Option("--time-limit", help="auto: time budget of the fit, e.g. 90s, 10m, 1h"),
]
