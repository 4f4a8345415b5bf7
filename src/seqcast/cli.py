"""The `seqcast` command: a thin shell over the Python API.

Bad input prints one line on stderr and exits 2; an internal failure exits 1. Files are
written only after all the work has succeeded, so a failed command leaves no half-written
output behind.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from seqcast.errors import SeqcastError, check_choice, format_shape

app = typer.Typer(
    name="seqcast",
    help="Forecast time series with recurrent and convolutional networks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console()
if not out.is_terminal:  # pipes and CI logs: wide enough that leaderboard columns stay whole
    out = Console(width=140)

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
OUTPUT_TYPES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
SERIES_LINES = 10  # `seqcast impute` prints one line per series up to this, then a table


def _load_options(time_col: str | None, target: str | None, id_col: str | None) -> dict[str, Any]:
    opts = {"time_col": time_col, "target": target, "id_col": id_col}
    return {k: v for k, v in opts.items() if v is not None}


def _table(frame, title: str | None = None, digits: int = 3) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row])
    return table


def _staged(target: Path):
    """A temporary folder beside `target` whose files are moved into it by `_publish`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))


def _publish(staging: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        dest = target / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        item.replace(dest)
    staging.rmdir()


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise SeqcastError(f"--{name} must be a positive integer, got {value}")


# -- missing values -----------------------------------------------------------------------------


def _impute_method(impute: bool, method: str | None) -> str | None:
    """The imputation method asked for on the command line, or None for no imputation."""
    from seqcast.impute import METHODS

    if method is not None:
        check_choice("--impute-method", method, METHODS)
        return method
    return "auto" if impute else None


def _gaps_filled(data, load_options, method, seed, scored=None):
    """(data, load_options) for the command: as given when `method` is None; otherwise the
    long frame with its missing values filled by `seqcast.impute`, after one line saying how
    many were filled and how. `scored` (points at the end of each series that get scored)
    adds a note when some of them are imputed values rather than observations."""
    if method is None:
        return data, load_options
    from seqcast.data.frames import load_frame
    from seqcast.impute import impute

    frame = load_frame(data, **load_options)
    if not frame["y"].isna().any():
        out.print("--impute: no missing values, nothing to fill")
        return frame, {}
    missing = frame["y"].isna().to_numpy()
    by_rnn = by_linear = 0
    if scored:
        # fill the part that trains from itself alone, so no held-out value leaks into it;
        # then whatever is missing among the held-out points, from everything before them
        from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
        head = frame[from_end >= scored]
        if head["y"].isna().any():
            first = impute(head, method=method, seed=seed)
            by_rnn, by_linear = first.report["filled_rnn"], first.report["filled_linear"]
            frame = frame.copy()
            frame.loc[from_end >= scored, "y"] = first.frame["y"].to_numpy()
    result = impute(frame, method=method, seed=seed)
    r = result.report
    filled = result.frame.assign(imputed=missing)
    n_filled = int((missing & filled["y"].notna().to_numpy()).sum())
    out.print(
        f"--impute: filled {n_filled} missing value{'s' * (n_filled != 1)} in "
        f"{_count(int(filled.loc[missing, 'unique_id'].nunique()), 'series', 'series')} "
        f"({by_rnn + r['filled_rnn']} by the RNN, {by_linear + r['filled_linear']} by linear "
        "interpolation; `seqcast impute` shows the choice per series)"
    )
    if scored:
        _note_scored_imputations(filled, scored)
    return filled.drop(columns="imputed"), {}


def _note_scored_imputations(filled, scored: int) -> None:
    """Say so when values that get scored (the last `scored` of a series) were imputed."""
    from_end = filled.groupby("unique_id", sort=False).cumcount(ascending=False)
    held_out = filled["imputed"][from_end.to_numpy() < scored]
    if held_out.any():
        out.print(
            f"note: {int(held_out.sum())} of the {len(held_out)} held-out values scored below "
            "are imputed, not observed; their errors measure agreement with the imputation"
        )


@contextlib.contextmanager
def _epoch_bar(hidden: bool, epochs: int):
    """A progress bar on stderr fed by the training loop's on_epoch_end hook (None: hidden).
    It appears with the first finished epoch, so input refused before training prints only
    its one error line; early stopping may end it before the last epoch."""
    if hidden:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} epochs"), TimeElapsedColumn())  # fmt: skip
    bar = Progress(*columns, console=Console(stderr=True))
    task = None

    def on_epoch_end(epoch: int, values: dict[str, float]) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("training", total=epochs)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "lr")
        bar.update(task, completed=epoch + 1, description=shown)

    try:
        yield on_epoch_end
    finally:
        bar.stop()


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# -- commands -----------------------------------------------------------------------------------


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the results go")] = Path(
        "seqcast-demo"
    ),
    epochs: Annotated[int, typer.Option(help="training epochs per model")] = 150,
    quiet: Quiet = False,
) -> None:
    """Airline passengers, last 12 months held out: baselines, auto and RNN/CNN models."""
    from seqcast.data.datasets import airline_passengers

    _compare(
        airline_passengers(),
        12,
        12,
        "auto,linear,deep_rnn,ln_rnn,lstm,peephole_lstm,gru,conv_gru,wavenet",
        24,
        epochs,
        0,
        out_dir,
        quiet,
        {},
        title="Airline passengers, 1960 held out",
    )


@app.command()
def compare(
    data: Data,
    horizon: Annotated[int, typer.Option(help="points held out and forecast")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for leaderboard.csv and forecast.png")
    ],
    season: Annotated[int | None, typer.Option(help="season length (12 for monthly)")] = None,
    models: Annotated[str | None, typer.Option(help="comma-separated model names")] = None,
    window: Annotated[int | None, typer.Option(help="input window (default 2 seasons)")] = None,
    epochs: Annotated[int, typer.Option()] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    quiet: Quiet = False,
) -> None:
    """Leaderboard of models (baselines always included) on the last HORIZON points."""
    from seqcast import compare as comparing

    _positive("horizon", horizon)
    _positive("season", season)
    _positive("window", window)
    method = _impute_method(impute, impute_method)
    comparing.parse_models(models)  # fail on a bad name before any imputing or training
    data, load_options = _gaps_filled(
        data, _load_options(time_col, target, id_col), method, seed, scored=horizon
    )
    _compare(
        data,
        horizon,
        season,
        models,
        window,
        epochs,
        seed,
        out_dir,
        quiet,
        load_options,
    )


def _compare(
    data,
    horizon,
    season,
    models,
    window,
    epochs,
    seed,
    out_dir,
    quiet,
    load_options,
    title: str | None = None,
) -> None:
    from seqcast import compare as comparing
    from seqcast import plots
    from seqcast import report as reporting

    comparing.parse_models(models)  # fail on a bad name before any training

    def report(name: str, row: dict) -> None:
        if not quiet:
            out.print(f"  {name:<15} mase {row['mase']:.3f}   {row['fit_seconds']:.1f} s")

    started = time.perf_counter()
    result = comparing.compare(
        data,
        horizon,
        season,
        models,
        window,
        on_model=report,
        load_options=load_options,
        epochs=epochs,
        seed=seed,
    )
    board = result.leaderboard
    staging = _staged(out_dir)
    try:
        # the report's table prints the same figures, so it shares the float format
        board.to_csv(
            staging / "leaderboard.csv", index=False, float_format=reporting.CSV_FLOAT_FORMAT
        )
        best = result.best
        fig = plots.plot_forecast(
            result.train,
            result.forecasts[best],
            truth=result.test,
            levels=[80],
            title=f"{title or 'Forecast'}: {best} (MASE {board['mase'].iloc[0]:.3f})",
        )
        _add_baseline(fig, result, board)
        plots.save_figure(fig, staging / "forecast.png")
        plots.save_figure(plots.plot_leaderboard(board), staging / "leaderboard.png")
        result.forecasters[best].save(staging / "best_model")
        reporting.write_html(result, staging / "report.html", title=title)
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out.print(_table(board, title=title or "Leaderboard (sorted by MASE)"))
    out.print(
        f"best: {best}; wrote {out_dir}/report.html, leaderboard.csv, forecast.png, "
        f"leaderboard.png, best_model/ in {time.perf_counter() - started:.0f} s"
    )


def _add_baseline(fig, result, board) -> None:
    """Draw the seasonal-naive (or naive) forecast beside the best model's, dashed."""
    baseline = next((b for b in ("seasonal_naive", "naive") if b in result.forecasts), None)
    if baseline is None or baseline == result.best:
        return
    pred = result.forecasts[baseline]
    mase = float(board.set_index("model").loc[baseline, "mase"])
    ax = fig.axes[0]
    first = pred[pred["unique_id"] == pred["unique_id"].iloc[0]]
    ax.plot(first["ds"], first["y_hat"], "--", color="gray", label=f"{baseline} (MASE {mase:.3f})")
    ax.legend(loc="upper left")


@app.command()
def fit(
    data: Data,
    model: Annotated[str, typer.Option(help="model name, e.g. auto, lstm, gru, wavenet")],
    horizon: Annotated[int, typer.Option(help="steps to forecast")],
    out_dir: Annotated[Path, typer.Option("--out", help="model directory to write")],
    window: Annotated[
        int | None, typer.Option(help="input window length (all models but auto)")
    ] = None,
    strategy: Annotated[str, typer.Option(help="direct, recursive or seq2seq")] = "direct",
    epochs: Annotated[int, typer.Option()] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    lr: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    season: Annotated[int | None, typer.Option()] = None,
    units: Annotated[int, typer.Option()] = 20,
    dropout: Annotated[float, typer.Option()] = 0.0,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    quiet: Quiet = False,
) -> None:
    """Train one model and save it as a directory (config.json + model.safetensors)."""
    from seqcast.forecast import Forecaster

    if window is None and model != "auto":
        raise SeqcastError(f"--window is required for model {model!r} (only auto chooses its own)")
    for name, value in (
        ("window", window),
        ("horizon", horizon),
        ("epochs", epochs),
        ("batch-size", batch_size),
        ("season", season),
        ("units", units),
    ):
        _positive(name, value)
    method = _impute_method(impute, impute_method)
    fc = Forecaster(
        model,
        window=window or 1,
        horizon=horizon,
        strategy=strategy,
        season=season,
        units=units,
        dropout=dropout,
        epochs=epochs,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
        progress=False,  # the bar below shows the epochs
    )
    data, load_options = _gaps_filled(data, _load_options(time_col, target, id_col), method, seed)
    with _epoch_bar(quiet or model == "auto", epochs) as on_epoch_end:
        fc.fit(data, on_epoch_end=on_epoch_end, **load_options)
    fc.save(out_dir)
    if getattr(fc, "auto_", None) is not None:
        out.print(f"fitted {fc.auto_.describe()} in {fc.fit_seconds_:.1f} s; saved to {out_dir}")
        return
    loss = fc.history_.history.get("loss", [float("nan")])[-1] if fc.history_ else float("nan")
    out.print(
        f"fitted {model} in {fc.fit_seconds_:.1f} s (final training loss {loss:.4g}); "
        f"saved to {out_dir}"
    )


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="directory written by `seqcast fit`")],
    data: Annotated[
        str | None, typer.Argument(help="history to forecast from (default: training data)")
    ] = None,
    horizon: Annotated[int | None, typer.Option()] = None,
    intervals: Annotated[str | None, typer.Option(help="levels, e.g. 80,95")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="CSV to write")] = None,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    seed: Annotated[int, typer.Option(help="seed of the imputation")] = 0,
) -> None:
    """Forecast after the end of each series; print it, or write it with --out."""
    from seqcast.forecast import Forecaster

    _positive("horizon", horizon)
    method = _impute_method(impute, impute_method)
    fc = Forecaster.load(model_dir)
    load_options = _load_options(time_col, target, id_col)
    if data is not None:  # the training data the model keeps has no gaps
        data, load_options = _gaps_filled(data, load_options, method, seed)
    forecast = fc.predict(data, horizon=horizon, intervals=intervals, **load_options)
    if out_file is None:
        out.print(_table(forecast, digits=2))
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    forecast.to_csv(partial, index=False)
    partial.replace(out_file)
    out.print(f"wrote {len(forecast)} rows to {out_file}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="directory written by `seqcast fit`")],
    data: Data,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    seed: Annotated[int, typer.Option(help="seed of the imputation")] = 0,
) -> None:
    """Metrics on the last HORIZON points of each series (forecast from the points before)."""
    import pandas as pd

    from seqcast.forecast import Forecaster

    method = _impute_method(impute, impute_method)
    fc = Forecaster.load(model_dir)
    data, load_options = _gaps_filled(
        data, _load_options(time_col, target, id_col), method, seed, scored=fc.horizon
    )
    scores = fc.evaluate(data, **load_options)
    out.print(_table(pd.DataFrame([scores]), title=f"{fc.model_name}, last {fc.horizon} points"))


@app.command(name="impute")
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
        _positive(name, value)
    kind = _output_type(out_file)
    frame, rows = load_frame_with_rows(data, **_load_options(time_col, target, id_col))
    frame = frame.iloc[np.argsort(rows)].reset_index(drop=True)  # the file's own row order
    if frame["y"].isna().any():
        result = impute(frame, window, units, epochs, seed=seed, method=method)
        filled = result.frame
        _print_imputation(result)
    else:  # nothing to learn or choose: the table goes out as it came in
        filled = frame.assign(imputed=False)
        out.print("no missing values: the table is written unchanged")
    _write_table(filled, out_file, kind)
    out.print(f"wrote {len(filled)} rows to {out_file}")


def _output_type(path: Path) -> str:
    """'csv' or 'parquet' from the file name; anything else is refused before any work."""
    name = path.name.lower()
    kind = next((k for ext, k in OUTPUT_TYPES.items() if name.endswith(ext)), None)
    if kind is None:
        raise SeqcastError(
            f"cannot tell how to write {path}: expected a name ending in {', '.join(OUTPUT_TYPES)}"
        )
    if path.is_dir():
        raise SeqcastError(f"--out {path} is a directory; give a file name such as filled.csv")
    return kind


def _write_table(frame, path: Path, kind: str) -> None:
    """Write beside `path`, then move into place: a failure leaves no half-written file."""
    staging = _staged(path)
    try:
        partial = staging / path.name
        if kind == "parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False)
        partial.replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _print_imputation(result) -> None:
    """Which method filled each series and how both did on its checks: a line per series,
    or for many series a table per method."""
    from seqcast.impute import describe_series

    series = result.series
    if len(series) <= SERIES_LINES:
        for row in series.itertuples(index=False):
            out.print(describe_series(row), markup=False, highlight=False)
    else:
        out.print(_table(_by_method(series), title="Imputation by method", digits=4))
    r = result.report
    out.print(
        f"filled {r['n_filled']} of {r['n_missing']} missing values: {r['filled_rnn']} by the "
        f"RNN ({_count(r['series_rnn'], 'series', 'series')}), {r['filled_linear']} by linear "
        f"interpolation ({_count(r['series_linear'], 'series', 'series')})",
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


@app.command()
def summary(
    model_dir: Annotated[Path, typer.Argument(help="directory written by `seqcast fit`")],
) -> None:
    """The model's layers, output shapes and parameter counts."""
    from seqcast.forecast import Forecaster

    fc = Forecaster.load(model_dir)
    if getattr(fc, "auto_", None) is not None:
        _auto_summary(fc.auto_)
        return
    s = fc.model_.summary(print_fn=None)
    table = Table(
        title=f"{fc.model_name} ({fc.strategy_}, window {fc.window}, horizon {fc.horizon})"
    )
    for col, justify in (("Layer (type)", "left"), ("Output Shape", "left"), ("Param #", "right")):
        table.add_column(col, justify=justify)
    for r in s.rows:
        table.add_row(f"{r.name} ({r.kind})", format_shape(r.output_shape), f"{r.params:,}")
    out.print(table)
    out.print(f"Total params: {s.total_params:,}")


def _auto_summary(model) -> None:
    """What an auto model is made of and why it chose its combination."""
    import pandas as pd

    out.print(model.describe())
    members = pd.DataFrame(
        [
            {"lookback": m.lookback, "loss": m.loss, "seed": m.seed, "epochs": m.epochs,
             "params": sum(p.numel() for p in m.model.parameters())}
            for m in model.members_
        ]
    )  # fmt: skip
    out.print(_table(members, title="networks (their median is 'nn')", digits=0))
    if model.scores_:
        out.print(_table(pd.DataFrame(model.scores_), title="backtest on the training data"))
    notes = model.notes_
    out.print(
        f"{notes['series']} series, {notes['padded_series']} shorter than the longest window "
        f"(padded, masked); backtest: {notes['backtest_series']} series x "
        f"{notes['backtest_origins']} origin(s)"
    )


# -- entry point --------------------------------------------------------------------------------


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage and data errors -> one line on stderr, exit code 2."""
    try:
        app(args=argv, standalone_mode=False, prog_name="seqcast")
    except SeqcastError as err:
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except TyperException as err:  # usage: a missing option, a value of the wrong type, ...
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        print(f"error: {_one_line(message)} (see seqcast --help)", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # an internal failure: still one line, but a distinct exit code
        print(f"internal error: {type(err).__name__}: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
