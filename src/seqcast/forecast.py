"""`Forecaster`: fit / predict / evaluate / backtest / save / load. The one place that ties
data, model, strategy, trainer and intervals together; each step's work lives in its own
module:

    data.preprocess   per-series scaling, local level, windows, last windows, inverse
    data.normalized   normalize="auto": model="auto"'s per-series log / season / level
    training          the training loop
    strategies        direct / recursive / seq2seq forecasts from a window
    uncertainty       conformal and MC-dropout intervals
    scoring           hold-out evaluation and rolling-origin backtests
    auto              model="auto", the automatic recipe
    io                the model directory (safetensors + JSON)

    fc = Forecaster("lstm", window=24, horizon=12, season=12).fit("airline.csv")
    fc.predict(intervals=[80, 95])        # long frame: unique_id, ds, y_hat, y_lo_80, ...
    fc.save("model/"); Forecaster.load("model/")
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqcast import auto, model_dir, scoring, strategies, stream_fit, training, uncertainty
from seqcast.data import frames, pipeline
from seqcast.data.normalized import NORMALIZE, NormalizedPipeline
from seqcast.data.preprocess import (
    SCALERS,
    LastWindows,
    WindowPipeline,
    split_windows,
)
from seqcast.data.stream import is_parquet_source
from seqcast.errors import NotFittedError, SeqcastError, check_choice
from seqcast.models import BASELINES, ModelSpec, build_model
from seqcast.sequential import Sequential

log = logging.getLogger(__name__)

score = scoring.score  # where it was before the scoring module; kept for existing imports
MC_COVERAGE_WINDOWS = 2000  # held-out windows that measure MC-dropout coverage, at most
FORECAST_BATCH = 8192  # windows per forward pass in predict


class Forecaster:
    """A global forecasting model over one or many series (long frame: unique_id, ds, y).

    Constructor arguments are stored as given (scikit-learn style) and checked by `fit`;
    `train_options` takes any other field of `seqcast.training.TrainSettings` (a schedule,
    the Lightning engine's devices, a log_dir...).
    `model` is a name from `seqcast.models.list_models()`, a built `Sequential` mapping
    (batch, window, features) to the strategy's output layout (see `seqcast.models.spec`), or
    "auto": the automatic recipe of `seqcast.auto` (an ensemble of global networks combined
    with statistical forecasts, chosen by backtest), which needs only `horizon` and `season`
    and takes `auto_options` (fields of `seqcast.auto.AutoSettings`) instead of the network
    and training arguments.
    `normalize="auto"` puts each series on the scale model="auto"'s networks use instead of
    `scaler` and `local_level` (`seqcast.data.normalized`: log ratios to the window's last
    value for a positive series, deseasonalised where a season of length `season` is found);
    None (the default) scales by `scaler` as before.
    """

    def __init__(
        self,
        model: str | Sequential = "lstm",
        window: int = 24,
        horizon: int = 12,
        strategy: str = "direct",
        season: int | list[int] | None = None,
        units: int = 20,
        dropout: float = 0.0,
        covariates: list[str] | None = None,
        scaler: str | None = "standard",
        local_level: bool = True,
        normalize: str | None = None,
        epochs: int = 100,
        batch_size: int = 32,
        optimizer: str = "adam",
        lr: float | None = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        early_stopping: int | None = None,
        validation_size: float = 0.2,
        interval_method: str = "conformal",
        mc_samples: int = 100,
        seed: int | None = 0,
        progress: bool = False,
        auto_options: dict[str, Any] | None = None,
        train_options: dict[str, Any] | None = None,
    ) -> None:
        # stored as given, checked by `fit` (scikit-learn's convention)
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and k[0] != "_"}

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else "custom"

    @property
    def context_(self) -> pd.DataFrame | None:
        """The series `predict()` forecasts from by default (the end of the training data);
        None for a model saved without it (`save(..., context=False)`)."""
        return self._context

    @context_.setter
    def context_(self, frame: pd.DataFrame | None) -> None:
        self._context = frame
        self._context_windows = None  # computed on first use, for this frame only

    # -- fit ------------------------------------------------------------------------------------
    def fit(
        self, data: Any, *, on_epoch_end=None, callbacks=None, on_progress=None, **load_options
    ) -> Forecaster:
        """Train on every series of `data` (a path, frame, array or Series; `load_options` go
        to `seqcast.data.load_frame`; a directory of Parquet parts, or a `ParquetSource`, is
        streamed: see `seqcast.stream_fit`). `on_epoch_end(epoch, values)` and Lightning
        `callbacks` go to the training loop; model="auto" reports `on_progress(member, done,
        total)` instead. Missing values are an error: fill them first (`--impute`)."""
        self._hooks = {"on_epoch_end": on_epoch_end, "callbacks": callbacks}
        self._progress = on_progress
        start = time.perf_counter()
        vars(self).pop("model_", None)  # a fit that raises leaves the Forecaster unfitted
        self._check_params()
        if is_parquet_source(data):  # Parquet parts: streamed a part at a time, never one frame
            return stream_fit.fit(self, data, start, **load_options)
        frame = self._frame(data, load_options)
        frames.check_no_missing(frame, what="training")
        spec = None if self.model_name == "auto" else self._spec(1 + len(self._covariates))
        if spec is not None:  # before the frequency, which wants 3 points a series
            frames.check_enough_history(frame, spec.window, _steps(spec))
        self.auto_, self.history_, self.freq_ = None, None, frames.infer_freq(frame)
        if spec is None:
            self._fit_auto(frame)
        else:
            self._fit_network(frame, spec)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_network(self, frame: pd.DataFrame, spec: ModelSpec) -> None:
        steps = _steps(spec)
        pipeline = self._pipeline().fit(frame)
        model = self._build(spec)
        dtype = torch.empty(0, dtype=_param_dtype(model)).numpy().dtype  # the model's dtype
        x, y, series, starts = pipeline.training_windows(frame, steps, spec.strategy, dtype)
        train, val = split_windows(
            series, starts, _lengths(frame), self.window, steps, spec.strategy == "seq2seq",
            self.validation_size,
        )  # fmt: skip
        y_fit = strategies.training_targets(y, spec.strategy, model, spec.window)
        if any(p.requires_grad for p in model.parameters()):
            validation = (x[val], y_fit[val]) if val.any() else None
            self.history_ = training.fit_arrays(
                model, x[train], y_fit[train], self._settings(), validation,
                groups=series[train], **self._hooks,  # a series trains on one process (DDP)
            )  # fmt: skip
        # trained: only now does the Forecaster hold a model (a fit that raised holds none)
        self.strategy_, self.pipeline_, self.model_ = spec.strategy, pipeline, model.eval()
        self.calibration_, errors = scoring.calibration_errors(self, frame)
        self.conformal_ = (len(errors), scoring.conformal_table(errors))
        self.mc_coverage_ = _mc_coverage(self, frame)
        # the training series' ends, scaled as in training, for predict() without data
        self.context_ = frame.groupby("unique_id", sort=False).tail(self.window)
        self.context_ = self.context_.reset_index(drop=True)
        self.context_scaling_ = self.pipeline_.scaling(frame)

    def _pipeline(self) -> WindowPipeline | NormalizedPipeline:
        if self.normalize == "auto":
            return NormalizedPipeline(self.window, self.season, self.validation_size)
        return WindowPipeline(self.window, self.scaler, self.local_level, self._covariates)

    def _fit_auto(self, frame: pd.DataFrame) -> None:
        if self._covariates:
            raise SeqcastError("model='auto' forecasts from the target alone; drop `covariates`")
        options = dict(self.auto_options or {})
        if self.seed is not None:
            options.setdefault("seeds", (int(self.seed),))
        season = self.season
        if season is None:  # the usual seasons of the time stamps' frequency
            season = pipeline.seasons_for_freq(self.freq_)
            if season:
                log.info("auto: seasons %s inferred from the %s time stamps",
                         ", ".join(map(str, season)), self.freq_)  # fmt: skip
        self.auto_ = auto.AutoModel(self.horizon, season, auto.AutoSettings(**options))
        self.auto_.season_inferred_ = self.season is None and bool(season)
        self.auto_.fit(_values_by_series(frame), progress=self._progress)
        self.model_, self.strategy_, self.calibration_ = None, "direct", "backtest"
        self.context_ = frame.reset_index(drop=True)  # the statistical members refit on it all

    def _check_params(self) -> None:
        check_choice("scaler", self.scaler, SCALERS)
        if not any(self.normalize is c or (isinstance(c, str) and self.normalize == c)
                   for c in NORMALIZE):  # fmt: skip
            raise SeqcastError(f"`normalize` must be one of None, 'auto', got {self.normalize!r}")
        if self.normalize == "auto" and self._covariates and self.model != "auto":
            raise SeqcastError(
                "normalize='auto' normalises the target alone; drop `covariates` or use "
                "normalize=None (the per-series `scaler` scales covariates too)"
            )
        check_choice("interval_method", self.interval_method, uncertainty.METHODS)
        if not 0.0 <= float(self.validation_size) < 1.0:
            raise SeqcastError(f"`validation_size` must be in [0, 1), got {self.validation_size!r}")
        self._settings()  # a bad training setting fails before any work
        if self.model == "auto" and self.interval_method != "conformal":
            raise SeqcastError(
                "model='auto' calibrates conformal intervals on its backtest; "
                "use interval_method='conformal'"
            )
        if not isinstance(self.model, (str, Sequential)):
            raise SeqcastError(
                "`model` must be a model name or a seqcast Sequential, "
                f"got {type(self.model).__name__}"
            )
        self._check_seasons()

    def _check_seasons(self) -> None:
        """Several seasons (a list) are for model='auto'; one season is checked with the
        model's spec."""
        if self.season is None or np.isscalar(self.season):
            return
        seasons = list(self.season)
        if not seasons or any(isinstance(m, bool) or not isinstance(m, (int, np.integer))
                              or m < 1 for m in seasons):  # fmt: skip
            raise SeqcastError(
                f"`season` must be a positive integer or a list of them, got {self.season!r}"
            )
        if self.model != "auto":
            raise SeqcastError(
                f"several seasons ({', '.join(map(str, seasons))}) are for model='auto'; give "
                f"{self.model_name!r} one season, e.g. season={max(seasons)}"
            )

    @property
    def _covariates(self) -> list[str]:
        return list(self.covariates or [])

    def _frame(self, data: Any, load_options: dict[str, Any]) -> pd.DataFrame:
        return _load(data, load_options, self._covariates)

    def _spec(self, n_features: int) -> ModelSpec:
        return ModelSpec(
            window=self.window,
            horizon=self.horizon,
            features=n_features,
            strategy="direct" if self.model_name in BASELINES else self.strategy,
            units=self.units,
            dropout=self.dropout,
            season=self.season,
        )

    def _build(self, spec: ModelSpec) -> Sequential:
        if self.seed is not None:
            torch.manual_seed(self.seed)
        if isinstance(self.model, Sequential):
            model = copy.deepcopy(self.model)
            if model.input_shape is None:
                raise SeqcastError("a custom model needs input_shape=(window, features)")
            return model
        return build_model(self.model, spec)

    def _settings(self) -> training.TrainSettings:
        names = ("epochs", "batch_size", "optimizer", "lr", "clip_norm", "clip_value")
        return training.TrainSettings.from_kwargs(
            **{n: getattr(self, n) for n in names},
            early_stopping=self.early_stopping, seed=self.seed, progress=self.progress,
            **(self.train_options or {}),
        ).validate()  # fmt: skip

    # -- predict --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("This Forecaster is not fitted yet. Call `fit` first.")

    def _dtype(self) -> torch.dtype:
        return _param_dtype(self.model_)

    def _device(self) -> torch.device:
        return next(iter(self.model_.parameters()), torch.empty(0)).device

    def _forecast_scaled(self, x: np.ndarray, horizon: int) -> np.ndarray:
        """The model's forecast for windows `x`, moved to the model's device and dtype, in
        batches of FORECAST_BATCH windows: each window's forecast depends on that window
        alone, and a batch's activations stay in cache instead of taking gigabytes for
        hundreds of thousands of series at once."""
        out, strategy = np.empty((len(x), horizon), dtype=np.float64), self.strategy_
        with torch.inference_mode():
            for start in range(0, len(x), FORECAST_BATCH):
                stop = start + FORECAST_BATCH
                batch = torch.as_tensor(x[start:stop]).to(self._device(), self._dtype())
                part = strategies.forecast(self.model_, batch, horizon, strategy, self.horizon)
                out[start:stop] = part.cpu().double().numpy()
        return out

    def _windows_of(self, data: Any, load_options: dict[str, Any]) -> LastWindows:
        if data is not None:
            return self.pipeline_.last_windows(self._frame(data, load_options))
        if self.context_ is None:
            raise SeqcastError(
                "this model was saved without its training series, so predict() needs data: "
                "give the history to forecast from"
            )
        if self._context_windows is None:  # reset whenever context_ is assigned
            scaling = getattr(self, "context_scaling_", None)
            self._context_windows = self.pipeline_.last_windows(self.context_, scaling)
        return self._context_windows

    def predict(
        self, data: Any = None, horizon: int | None = None, intervals: Any = None, **load_options
    ) -> pd.DataFrame:
        """Forecast `horizon` steps after the end of each series of `data` (default: the
        training data). Returns unique_id, ds, y_hat (+ y_lo_L / y_hi_L for each level L).

        Any series can be forecast, seen in training or not: each is normalised by the
        statistics of its whole history in `data` (not only its last window), as training
        normalised each training series by its whole training history; so a series given
        with the history it was trained on is scaled exactly as in training. Without `data`,
        the training series' ends are forecast with their training-time scaling."""
        self._check_fitted()
        horizon = self.horizon if horizon is None else horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
            raise SeqcastError(f"`horizon` must be a positive integer, got {horizon!r}")
        levels = uncertainty.parse_levels(intervals)
        if self.auto_ is not None:
            frame = self.context_ if data is None else self._frame(data, load_options)
            frames.check_no_missing(frame, what="prediction")
            columns = self.auto_.predict(_values_by_series(frame), horizon, levels)
            last = frame.groupby("unique_id", sort=False)["ds"].last()
            return _to_frame(self, columns, [str(i) for i in last.index], last.to_list())
        win = self._windows_of(data, load_options)
        point = self._forecast_scaled(win.x, horizon)
        columns = {"y_hat": point}
        for lvl, (lo, hi) in _intervals(self, win.x, point, horizon, levels).items():
            columns[f"y_lo_{lvl}"], columns[f"y_hi_{lvl}"] = lo, hi
        columns = {k: self.pipeline_.to_original(v, win) for k, v in columns.items()}
        return _to_frame(self, columns, win.ids, win.last)

    def forecast_many(self, contexts: list[pd.DataFrame]) -> list[pd.DataFrame]:
        """Point forecasts after each of several long frames; a network forecasts all of
        their series in one batch. Each frame's series are normalised by that frame alone,
        so a backtest's scaling never sees the points after its cutoff."""
        if self.auto_ is not None:
            return [self.predict(c) for c in contexts]
        wins = [self.pipeline_.last_windows(c) for c in contexts]
        point = self._forecast_scaled(np.concatenate([w.x for w in wins]), self.horizon)
        out, offset = [], 0
        for w in wins:
            block = point[offset : offset + len(w.x)]
            offset += len(w.x)
            y_hat = self.pipeline_.to_original(block, w)
            out.append(_to_frame(self, {"y_hat": y_hat}, w.ids, w.last))
        return out

    # -- evaluate / backtest --------------------------------------------------------------------
    def evaluate(self, data: Any, intervals: int = 80, **load_options: Any) -> dict[str, float]:
        """Metrics on the last `horizon` points of each series of `data`, forecast from the
        points before them: mae, rmse, mape, smape, mase, coverage_L and width_L."""
        self._check_fitted()
        return scoring.evaluate(self, self._frame(data, load_options), intervals)

    def backtest(
        self, data: Any, windows: int = 3, step: int | None = None, **load_options: Any
    ) -> pd.DataFrame:
        """Rolling-origin forecasts with the fitted model (no refit): `windows` origins, `step`
        points apart (default: the horizon), the latest ending at the last point. All origins
        of all series go through the model in one batch. Returns unique_id, cutoff, ds, y, y_hat."""
        self._check_fitted()
        step = self.horizon if step is None else step
        for name, value in (("windows", windows), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SeqcastError(f"`{name}` must be a positive integer, got {value!r}")
        return scoring.backtest(self, self._frame(data, load_options), windows, step)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path, context: bool = True) -> Path:
        """Write config.json + model.safetensors + scaler.json into directory `path`
        (written beside it, then renamed into place; a second process saving to the same
        path at the same time is refused). Its size does not depend on the number of
        training series, except for the context: each training series' last window, kept so
        that `predict()` runs without data; `context=False` leaves it out."""
        self._check_fitted()
        if not training.is_global_zero():  # every process of a DDP fit ends with rank 0's model
            return Path(path)
        return model_dir.save(self, Path(path), context)

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Rebuild a saved Forecaster on the CPU (GPU-trained models included); a damaged or
        inconsistent directory is refused before any tensor is read."""
        return model_dir.load(cls, path)


def _intervals(fc: Forecaster, x, point, horizon, levels):
    """{level: (lo, hi)} around `point`, in scaled units."""
    if not levels:
        return {}
    if fc.interval_method == "mc_dropout":
        coverage = getattr(fc, "mc_coverage_", None)  # None: not measured, nothing to check
        return uncertainty.mc_dropout_quantiles(
            _sampler(fc, x, horizon), fc.model_, fc.mc_samples, levels,
            coverage=None if coverage is None else np.asarray(coverage, dtype=np.float64),
        )  # fmt: skip
    n, table = fc.conformal_
    radius = {lvl: scoring.conformal_radius(table, n, lvl, horizon) for lvl in levels}
    return {lvl: (point - r, point + r) for lvl, r in radius.items()}


def _sampler(fc: Forecaster, x: np.ndarray, horizon: int):
    """A function drawing the model's forecast for windows `x` (dropout as the caller sets)."""
    x = torch.as_tensor(x).to(device=fc._device(), dtype=fc._dtype())
    return lambda: strategies.forecast(fc.model_, x, horizon, fc.strategy_, fc.horizon)


def _mc_coverage(fc: Forecaster, frame: pd.DataFrame) -> list[float] | None:
    """The coverage (percent, levels 1..99) of MC-dropout intervals on the held-out windows
    (at most MC_COVERAGE_WINDOWS of them, drawn with the seed), which `predict` checks each
    level it is asked for against; None for conformal intervals or without held-out windows."""
    if fc.interval_method != "mc_dropout":
        return None
    kind, x, y = scoring.calibration_windows(fc, frame)
    if kind != "held-out":
        return None
    if len(x) > MC_COVERAGE_WINDOWS:
        rng = np.random.default_rng(fc.seed)
        pick = np.sort(rng.choice(len(x), MC_COVERAGE_WINDOWS, replace=False))
        x, y = x[pick], y[pick]
    sample = _sampler(fc, x, fc.horizon)
    coverage = uncertainty.mc_dropout_coverage(sample, fc.model_, fc.mc_samples, y)
    return [float(v) for v in coverage]


def _to_frame(
    fc: Forecaster, columns: dict[str, np.ndarray], ids: list[str], last: list
) -> pd.DataFrame:
    """A long forecast frame; the future time stamps of the last call are kept, as repeated
    `predict()` calls ask for the same and building them costs more than the model."""
    horizon = next(iter(columns.values())).shape[1]
    key = (tuple(ids), tuple(last), horizon, fc.freq_)
    cached = fc.__dict__.get("_stamps")
    if cached is None or cached[0] != key:
        stamps = frames.future_stamps_many(last, fc.freq_, horizon)
        # one string object per series, shared by its rows
        keys = {"unique_id": np.repeat(np.asarray(ids, dtype=object), horizon),
                "ds": np.asarray(stamps)}  # fmt: skip
        fc._stamps = cached = (key, keys)
    rows = dict(cached[1])
    rows |= {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in columns.items()}
    return pd.DataFrame(rows)


def _load(data: Any, load_options: dict[str, Any], covariates: list[str]) -> pd.DataFrame:
    """A validated long frame (unique_id, ds, y, covariates) from any supported source."""
    if isinstance(data, pd.DataFrame) and {"unique_id", "ds", "y"} <= set(data.columns):
        load_options = {"time_col": "ds", "target": "y", "id_col": "unique_id"} | dict(load_options)
    if covariates and "covariates" not in load_options:
        load_options = {**load_options, "covariates": covariates}
    frame = frames.load_frame(data, **load_options)
    missing = [c for c in covariates if c not in frame.columns]
    if missing:
        raise SeqcastError(
            f"covariate column(s) {missing} not in the data; available: {list(frame.columns)}"
        )
    wanted = ["unique_id", "ds", "y", *covariates]
    return frame if list(frame.columns) == wanted else frame[wanted]  # no copy when all wanted


def _steps(spec: ModelSpec) -> int:
    """Target steps a training window needs after it: 1 for a recursive model."""
    return 1 if spec.strategy == "recursive" else spec.horizon


def _param_dtype(model: Sequential) -> torch.dtype:
    return next(iter(model.parameters()), torch.empty(0)).dtype


def _lengths(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby("unique_id", sort=False).size().to_numpy()


def _values_by_series(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each series' target as a float64 array, in the frame's series order."""
    return [part.to_numpy(np.float64) for _, part in frame.groupby("unique_id", sort=False)["y"]]
