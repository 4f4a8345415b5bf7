"""Side-by-side comparison on a hold-out: the leaderboard behind `seqcast compare` and
`seqcast demo`. Baselines (naive, seasonal naive) are always in it, so a learned model's
score always has something honest to stand beside."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqcast.data import frames, pipeline
from seqcast.errors import SeqcastError
from seqcast.forecast import Forecaster, score
from seqcast.layers import build_kernels_in_background
from seqcast.models.registry import BASELINES, list_models, runs_recurrences

log = logging.getLogger(__name__)

COLUMNS = ["model", "mae", "rmse", "mape", "smape", "mase", "coverage_80", "fit_seconds"]
DEFAULT_MODELS = ("auto", "linear", "deep_rnn", "lstm", "gru", "conv_gru", "wavenet")


@dataclass
class Comparison:
    """The leaderboard (sorted by MASE), each model's forecast, and the fitted forecasters."""

    leaderboard: pd.DataFrame
    forecasts: dict[str, pd.DataFrame]
    forecasters: dict[str, Forecaster]
    train: pd.DataFrame
    test: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)
    seasons: tuple[int, ...] = ()  # as given, or inferred from the time stamps
    seasons_inferred: bool = False

    @property
    def best(self) -> str:
        return str(self.leaderboard["model"].iloc[0])


def parse_models(models: str | Sequence[str] | None) -> list[str]:
    names = (
        [m.strip() for m in models.split(",")]
        if isinstance(models, str)
        else list(models or DEFAULT_MODELS)
    )
    names = [n for n in names if n]
    if models is not None and not names:
        raise SeqcastError(
            f"no model names in models={models!r}; give at least one, e.g. 'lstm,gru', or "
            "leave it out for the default set"
        )
    known = ["auto", *list_models()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SeqcastError(f"unknown model {unknown[0]!r}; expected one of {', '.join(known)}")
    return list(dict.fromkeys(["naive", "seasonal_naive", *names]))


def compare(
    data: Any,
    horizon: int,
    season: int | None = None,
    models: str | Sequence[str] | None = None,
    window: int | None = None,
    on_model: Callable[[str, dict[str, float]], None] | None = None,
    load_options: dict[str, Any] | None = None,
    normalize: str | None = "auto",
    time_limit: float | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    **forecaster_options: Any,
) -> Comparison:
    """Hold out the last `horizon` points of every series, fit each model on the rest, and
    score its forecast (with 80% conformal intervals). `on_model(name, row)` is called as each
    model finishes. Every learned model but "auto" (which normalises by itself) gets
    `Forecaster(normalize=normalize)`: by default each series' log / season / level
    normalisation; the naive baselines forecast the raw series. Normalised models also train
    on every training point (validation_size=0 unless given: nothing stops early, and in a
    backtest on airline 1949-1958 holding out each series' last fifth raised the networks'
    mean MASE from 0.57 to 0.66), so their conformal intervals calibrate on in-sample errors."""
    frame = frames.load_frame(data, **(load_options or {}))
    frames.check_no_missing(frame, what="training")
    train, test = frames.split_by_time(frame, horizon)
    inferred = season is None
    seasons = pipeline.as_seasons(
        pipeline.seasons_for_freq(frames.infer_freq(train)) if inferred else season
    )
    # auto takes every season; the other models, the baselines and MASE the shortest
    season = seasons[0] if seasons else 1
    window = window or max(2 * season, 2 * horizon, 8)
    names = parse_models(models)
    if season == 1:
        names = [n for n in names if n != "seasonal_naive"]
    if any(n != "auto" and runs_recurrences(n) for n in names):
        build_kernels_in_background()  # the first-use build overlaps the models before
    rows, forecasts, fitted = [], {}, {}
    for name in names:
        options = dict(forecaster_options)
        if name not in BASELINES and name != "auto":
            options["normalize"] = normalize
            if normalize == "auto":
                options.setdefault("validation_size", 0.0)
        model_season = season
        if name == "auto":
            model_season = list(seasons) or None
            if time_limit:
                options["auto_options"] = {**options.get("auto_options", {}),
                                           "time_limit": time_limit}  # fmt: skip
        fc = Forecaster(name, window=window, horizon=horizon, season=model_season, **options)
        fc.fit(train, on_progress=on_progress if name == "auto" else None)
        pred = fc.predict(intervals=[80])
        row = {
            "model": name,
            **score(pred, test, train, season, 80),
            "fit_seconds": fc.fit_seconds_,
        }
        rows.append(row)
        forecasts[name], fitted[name] = pred, fc
        if on_model is not None:
            on_model(name, row)
    board = pd.DataFrame(rows).reindex(columns=COLUMNS)
    board = board.sort_values("mase", kind="stable").reset_index(drop=True)
    return Comparison(board, forecasts, fitted, train, test, seasons=seasons,
                      seasons_inferred=inferred and bool(seasons))  # fmt: skip


def beats(board: pd.DataFrame, model: str, baseline: str = "seasonal_naive") -> bool:
    by = board.set_index("model")["mase"]
    return bool(
        model in by and baseline in by and by[model] < by[baseline] and np.isfinite(by[model])
    )
