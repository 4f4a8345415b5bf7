"""Commands on one model saved as a directory: `fit` writes it; `predict`, `evaluate` and
`summary` load it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from seqcast.cli import missing
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
from seqcast.cli.output import epoch_bar, member_bars, out, table
from seqcast.errors import SeqcastError, format_shape

ModelDir = Annotated[Path, typer.Argument(help="directory written by `seqcast fit`")]
ImputeSeed = Annotated[int, typer.Option(help="seed of the imputation")]


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
    season: Season = None,
    time_limit: TimeLimit = None,
    units: Annotated[int, typer.Option()] = 20,
    dropout: Annotated[float, typer.Option()] = 0.0,
    normalize: Normalize = "none",
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    quiet: Quiet = False,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option("--checkpoint-dir", help="keep the run's state here after every epoch"),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run whose checkpoint is in --checkpoint-dir")
    ] = False,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="checkpoint every N steps instead")
    ] = None,
    devices: Annotated[
        int, typer.Option(help="processes (CPU) or GPUs on this machine; above 1: DDP")
    ] = 1,
    num_nodes: Annotated[
        int, typer.Option("--num-nodes", help="machines, each started by torchrun (README)")
    ] = 1,
    accelerator: Annotated[str, typer.Option(help="cpu, gpu or auto")] = "auto",
    dist_strategy: Annotated[
        str,
        typer.Option(
            "--dist-strategy", help="Lightning strategy, e.g. ddp (auto: ddp for several processes)"
        ),
    ] = "auto",
) -> None:
    """Train one model and save it as a directory (config.json + model.safetensors). With
    several processes every one trains, and the first writes the model."""
    from seqcast import training
    from seqcast.forecast import Forecaster

    if window is None and model != "auto":
        raise SeqcastError(f"--window is required for model {model!r} (only auto chooses its own)")
    for name, value in (
        ("window", window),
        ("horizon", horizon),
        ("epochs", epochs),
        ("batch-size", batch_size),
        ("units", units),
        ("checkpoint-every", checkpoint_every),
        ("devices", devices),
        ("num-nodes", num_nodes),
    ):
        positive(name, value)
    season, limit = seasons(season), duration(time_limit)
    if limit is not None and model != "auto":
        raise SeqcastError(f"--time-limit is for model auto, not {model!r}")
    if isinstance(season, list) and model != "auto":
        raise SeqcastError(
            f"several seasons are for model auto; give {model!r} one, e.g. --season {max(season)}"
        )
    method = missing.impute_method(impute, impute_method)
    placement = dict(devices=devices, num_nodes=num_nodes, accelerator=accelerator,
                     strategy=dist_strategy)  # fmt: skip
    fc = Forecaster(
        model,
        window=window or 1,
        horizon=horizon,
        strategy=strategy,
        season=season,
        units=units,
        dropout=dropout,
        normalize=normalize_option(normalize) if model != "auto" else None,
        epochs=epochs,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
        progress=False,  # the bar below shows the epochs
        auto_options=None if limit is None else {"time_limit": limit},
        train_options={
            **{k: v for k, v in placement.items() if v not in (1, "auto")},
            **_checkpoint_options(checkpoint_dir, resume, checkpoint_every),
        }
        or None,
    )
    data, load_options = missing.gaps_filled(
        data, column_options(time_col, target, id_col), method, seed
    )
    with (
        epoch_bar(quiet or model == "auto", epochs) as on_epoch_end,
        member_bars(quiet or model != "auto") as on_progress,
    ):
        fc.fit(data, on_epoch_end=on_epoch_end, on_progress=on_progress, **load_options)
    if not training.is_global_zero():
        return  # every process ends with the same model; the first writes and reports it
    fc.save(out_dir)
    if getattr(fc, "auto_", None) is not None:
        if fc.auto_.season_inferred_:
            seasons_found = ", ".join(map(str, fc.auto_.seasons))
            out.print(f"seasons {seasons_found} inferred from the {fc.freq_} time stamps")
        out.print(f"fitted {fc.auto_.describe()} in {fc.fit_seconds_:.1f} s; saved to {out_dir}")
        return
    loss = fc.history_.history.get("loss", [float("nan")])[-1] if fc.history_ else float("nan")
    out.print(
        f"fitted {model} in {fc.fit_seconds_:.1f} s (final training loss {loss:.4g}); "
        f"saved to {out_dir}"
    )


def _checkpoint_options(directory: Path | None, resume: bool, every: int | None) -> dict:
    """The checkpoint settings given on the command line, as TrainSettings fields."""
    if directory is None:
        if resume or every is not None:
            raise SeqcastError("--resume and --checkpoint-every need --checkpoint-dir DIR")
        return {}
    return {"checkpoint_dir": str(directory), "resume": resume, "checkpoint_every": every}


def predict(
    model_dir: ModelDir,
    data: Annotated[
        str | None, typer.Argument(help="history to forecast from (default: training data)")
    ] = None,
    horizon: Annotated[int | None, typer.Option()] = None,
    intervals: Annotated[str | None, typer.Option(help="levels, e.g. 80,95")] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="CSV to write; for a DATA directory, the Parquet parts' directory"
        ),
    ] = None,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    seed: ImputeSeed = 0,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (DATA directory); default: local")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="local Dask worker processes (default: one per core)")
    ] = None,
) -> None:
    """Forecast after the end of each series; print it, or write it with --out. DATA may be a
    directory of Parquet parts: each part's forecasts go to one Parquet part in --out, on
    Dask (a local cluster, or --scheduler) when installed, else in this process."""
    from seqcast.forecast import Forecaster

    positive("horizon", horizon)
    positive("workers", workers)
    if data is not None and Path(data).is_dir():
        if impute:
            raise SeqcastError("--impute does not apply to Parquet parts; fill their gaps first")
        return _predict_parts(model_dir, data, out_file, horizon, intervals, scheduler, workers,
                              column_options(time_col, target, id_col))  # fmt: skip
    if scheduler is not None or workers is not None:
        raise SeqcastError("--scheduler and --workers apply to a DATA directory of Parquet parts")
    method = missing.impute_method(impute, impute_method)
    fc = Forecaster.load(model_dir)
    load_options = column_options(time_col, target, id_col)
    if data is not None:  # the training data the model keeps has no gaps
        data, load_options = missing.gaps_filled(data, load_options, method, seed)
    forecast = fc.predict(data, horizon=horizon, intervals=intervals, **load_options)
    if out_file is None:
        out.print(table(forecast, digits=2))
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    forecast.to_csv(partial, index=False)
    partial.replace(out_file)
    out.print(f"wrote {len(forecast)} rows to {out_file}")


def _predict_parts(model_dir, data, out_dir, horizon, intervals, scheduler, workers, columns):
    from seqcast import distributed

    if out_dir is None:
        raise SeqcastError("a DATA directory of Parquet parts needs --out DIRECTORY for the parts")
    rows = distributed.predict_parts(
        model_dir, data, out_dir, horizon=horizon, intervals=intervals, scheduler=scheduler,
        workers=workers, **columns,
    )  # fmt: skip
    out.print(f"wrote {rows} rows to {out_dir}")


def evaluate(
    model_dir: ModelDir,
    data: Data,
    time_col: TimeCol = None,
    target: Target = None,
    id_col: IdCol = None,
    impute: Impute = False,
    impute_method: ImputeMethod = None,
    seed: ImputeSeed = 0,
) -> None:
    """Metrics on the last HORIZON points of each series (forecast from the points before)."""
    import pandas as pd

    from seqcast.forecast import Forecaster

    method = missing.impute_method(impute, impute_method)
    fc = Forecaster.load(model_dir)
    data, load_options = missing.gaps_filled(
        data, column_options(time_col, target, id_col), method, seed, scored=fc.horizon
    )
    scores = fc.evaluate(data, **load_options)
    out.print(table(pd.DataFrame([scores]), title=f"{fc.model_name}, last {fc.horizon} points"))


def summary(model_dir: ModelDir) -> None:
    """The model's layers, output shapes and parameter counts."""
    from seqcast.forecast import Forecaster

    fc = Forecaster.load(model_dir)
    if getattr(fc, "auto_", None) is not None:
        _auto_summary(fc.auto_)
        return
    s = fc.model_.summary(print_fn=None)
    layers = Table(
        title=f"{fc.model_name} ({fc.strategy_}, window {fc.window}, horizon {fc.horizon})"
    )
    for col, justify in (("Layer (type)", "left"), ("Output Shape", "left"), ("Param #", "right")):
        layers.add_column(col, justify=justify)
    for r in s.rows:
        layers.add_row(f"{r.name} ({r.kind})", format_shape(r.output_shape), f"{r.params:,}")
    out.print(layers)
    out.print(f"Total params: {s.total_params:,}")


def _auto_summary(model) -> None:
    """What an auto model is made of and why it chose its combination."""
    import pandas as pd

    out.print(model.describe())
    members = pd.DataFrame(
        [
            {"family": m.family, "lookback": m.lookback, "loss": m.loss, "seed": m.seed,
             "epochs": m.epochs, "params": sum(p.numel() for p in m.model.parameters())}
            for m in model.members_
        ]
    )  # fmt: skip
    if len(members):
        out.print(table(members, title="networks (each family's median is one member)", digits=0))
    if model.skipped_:
        skipped = pd.DataFrame([{"member": k, "why": v} for k, v in model.skipped_.items()])
        out.print(table(skipped, title="left out or stopped (time budget)"))
    if model.scores_:
        out.print(table(pd.DataFrame(model.scores_), title="backtest on the training data"))
    notes = model.notes_
    out.print(
        f"{notes['series']} series, {notes['padded_series']} shorter than the longest window "
        f"(padded, masked); backtest: {notes['backtest_series']} series x "
        f"{notes['backtest_origins']} origin(s)"
    )
