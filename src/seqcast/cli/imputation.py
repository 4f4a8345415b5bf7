"""`seqcast impute`: fill a table's missing values and write it, saying per series (or, for
many series, per method) how they were filled and how well each method did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqcast.cli.files import output_type, write_table
from seqcast.cli.options import Data, IdCol, Target, TimeCol, column_options, positive
from seqcast.cli.output import count, out, table
from seqcast.errors import check_choice

SERIES_LINES = 10  # one line per series up to this, then a table


def impute_command(
    data: Data,
    out_file: Annotated[
        Path, typer.Option("--out", help="filled table to write: .csv or .parquet")
    ],
    method: Annotated[
        str,
        typer.Option(
            help="auto (per series, RNN or linear interpolation: the better on held-out "
            "values), rnn or linear"
        ),
    ] = "auto",
    window: Annotated[int, typer.Option(help="RNN training window")] = 24,
    units: Annotated[int, typer.Option(help="GRU units per direction")] = 32,
    epochs: Annotated[int, typer.Option()] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
) -> None:
    """Fill missing values; write the long table (unique_id, ds, y, imputed) to --out."""
    import numpy as np

    from seqcast.data.frames import load_frame_with_rows
    from seqcast.impute import METHODS, impute

    check_choice("--method", method, METHODS)
    for name, value in (("window", window), ("units", units), ("epochs", epochs)):
        positive(name, value)
    kind = output_type(out_file)
    frame, rows = load_frame_with_rows(data, **column_options(time_col, target, id_col))
    frame = frame.iloc[np.argsort(rows)].reset_index(drop=True)  # the file's own row order
    if frame["y"].isna().any():
        result = impute(frame, window, units, epochs, seed=seed, method=method)
        filled = result.frame
        _print_imputation(result)
    else:  # nothing to learn or choose: the table goes out as it came in
        filled = frame.assign(imputed=False)
        out.print("no missing values: the table is written unchanged")
    write_table(filled, out_file, kind)
    out.print(f"wrote {len(filled)} rows to {out_file}")


def _print_imputation(result) -> None:
    """Which method filled each series and how both did on its checks: a line per series,
    or for many series a table per method."""
    from seqcast.impute import describe_series

    series = result.series
    if len(series) <= SERIES_LINES:
        for row in series.itertuples(index=False):
            out.print(describe_series(row), markup=False, highlight=False)
    else:
        out.print(table(_by_method(series), title="Imputation by method", digits=4))
    r = result.report
    out.print(
        f"filled {r['n_filled']} of {r['n_missing']} missing values: {r['filled_rnn']} by the "
        f"RNN ({count(r['series_rnn'], 'series', 'series')}), {r['filled_linear']} by linear "
        f"interpolation ({count(r['series_linear'], 'series', 'series')})",
        highlight=False,
    )
    if r["n_check"]:
        out.print(
            f"on {r['n_check']} held-out observed values: MAE {r['mae_chosen']:.4g} as filled, "
            f"{r['mae_rnn']:.4g} all by the RNN, {r['mae_linear']:.4g} all by interpolation",
            highlight=False,
        )


def _by_method(series):
    """Series per method with their filled values and MAE over all their checks."""
    import pandas as pd

    rows = []
    for (method, reason), part in series.groupby(["method", "reason"], sort=True):
        checks = part["n_check"].sum()
        rows.append(
            {
                "method": method,
                "reason": reason,
                "series": len(part),
                "filled": int(part["n_missing"].sum()),
                "checks": int(checks),
                "mae_rnn": _pooled(part["mae_rnn"], part["n_check"]),
                "mae_linear": _pooled(part["mae_linear"], part["n_check"]),
            }
        )
    return pd.DataFrame(rows)


def _pooled(mae, weights) -> float:
    """MAE over all the checks of several series, from each series' MAE and check count."""
    import numpy as np

    keep = (weights > 0) & mae.notna()
    if not keep.any():
        return float("nan")
    return float(np.average(mae[keep], weights=weights[keep]))
