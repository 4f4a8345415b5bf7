"""`seqcast demo` and `seqcast compare`: a leaderboard of models on held-out points, with
its figures, best model and HTML report written to a folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from seqcast.cli import missing
from seqcast.cli.files import publish, staged
from seqcast.cli.options import (
    Data,
    IdCol,
    Impute,
    ImputeMethod,
    Normalize,
    Quiet,
    Season,
    Target,
    TimeCol,
    TimeLimit,
    column_options,
    duration,
    normalize_option,
    positive,
    seasons,
)
from seqcast.cli.output import member_bars, out, table
from seqcast.errors import SeqcastError


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the results go")] = Path(
        "seqcast-demo"
    ),
    epochs: Annotated[int, typer.Option(help="training epochs per model")] = 150,
    normalize: Normalize = "auto",
    quiet: Quiet = False,
) -> None:
    """Airline passengers, last 12 months held out: baselines, auto and RNN/CNN models."""
    from seqcast.data.datasets import airline_passengers

    norm = normalize_option(normalize)
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
        normalize=norm,
    )


def compare(
    data: Data,
    horizon: Annotated[int, typer.Option(help="points held out and forecast")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for leaderboard.csv and forecast.png")
    ],
    season: Season = None,
    models: Annotated[str | None, typer.Option(help="comma-separated model names")] = None,
    window: Annotated[int | None, typer.Option(help="input window (default 2 seasons)")] = None,
    epochs: Annotated[int, typer.Option()] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    normalize: Normalize = "auto",
    time_limit: TimeLimit = None,
    quiet: Quiet = False,
) -> None:
    """Leaderboard of models (baselines always included) on the last HORIZON points."""
    from seqcast import compare as comparing

    norm = normalize_option(normalize)
    positive("horizon", horizon)
    season, limit = seasons(season), duration(time_limit)
    positive("window", window)
    method = missing.impute_method(impute, impute_method)
    if models is not None and not models.replace(",", "").strip():
        raise SeqcastError(
            f"--models {models!r} names no model; give comma-separated names such as "
            "lstm,gru (the naive baselines are always added), or leave --models out"
        )
    comparing.parse_models(models)  # fail on a bad name before any imputing or training
    data, load_options = missing.gaps_filled(
        data, column_options(time_col, target, id_col), method, seed, scored=horizon
    )
    _compare(
        data, horizon, season, models, window, epochs, seed, out_dir, quiet, load_options,
        normalize=norm, time_limit=limit,
    )  # fmt: skip


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
    normalize: str | None = "auto",
    time_limit: float | None = None,
) -> None:
    from seqcast import compare as comparing
    from seqcast import plots
    from seqcast import report as reporting

    comparing.parse_models(models)  # fail on a bad name before any training

    def report(name: str, row: dict) -> None:
        if not quiet:
            out.print(f"  {name:<15} mase {row['mase']:.3f}   {row['fit_seconds']:.1f} s")

    started = time.perf_counter()
    with member_bars(quiet) as on_progress:
        result = _run(comparing, data, horizon, season, models, window, report, load_options,
                      epochs, seed, normalize, time_limit, on_progress)  # fmt: skip
    if result.seasons_inferred and not quiet:
        out.print(f"seasons {', '.join(map(str, result.seasons))} inferred from the time stamps")
    board = result.leaderboard
    staging = staged(out_dir)
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
        publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out.print(table(board, title=title or "Leaderboard (sorted by MASE)"))
    out.print(
        f"best: {best}; wrote {out_dir}/report.html, leaderboard.csv, forecast.png, "
        f"leaderboard.png, best_model/ in {time.perf_counter() - started:.0f} s"
    )


def _run(comparing, data, horizon, season, models, window, report, load_options, epochs, seed,
         normalize, time_limit, on_progress):  # fmt: skip
    return comparing.compare(
        data, horizon, season, models, window, on_model=report, load_options=load_options,
        epochs=epochs, seed=seed, normalize=normalize, time_limit=time_limit,
        on_progress=on_progress,
    )  # fmt: skip


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
