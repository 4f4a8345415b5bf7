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


def column_options(time_col: str | None, target: str | None, id_col: str | None) -> dict[str, Any]:
    """The column options given, as keyword arguments of `seqcast.data.frames.load_frame`."""
    opts = {"time_col": time_col, "target": target, "id_col": id_col}
    return {k: v for k, v in opts.items() if v is not None}


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise SeqcastError(f"--{name} must be a positive integer, got {value}")
