"""`Forecaster`: fit / predict / evaluate / backtest / save / load. The one place that ties
data, model, strategy, trainer and intervals together.

    fc = Forecaster("lstm", window=24, horizon=12, season=12).fit("airline.csv")
    fc.predict(intervals=[80, 95])        # long frame: unique_id, ds, y_hat, y_lo_80, ...
    fc.save("model/"); Forecaster.load("model/")

Pipeline: per-series scaler fit on the training frame only -> strided windows -> optional
"local level" (each window shifted by its last observed value, so trends extrapolate) ->
chronological split (validation windows' targets lie after every training target) -> train
-> conformal residuals on the validation windows.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqcast import __version__, auto, io, metrics, strategies, training, uncertainty
from seqcast.data import frames
from seqcast.data.scalers import MinMaxScaler, StandardScaler, scaler_from_dict
from seqcast.data.windows import windows_from_frame
from seqcast.errors import NotFittedError, SeqcastError, check_choice
from seqcast.models import BASELINES, ModelSpec, build_model
from seqcast.sequential import Sequential

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, None: None}


class Forecaster:
    """A global forecasting model over one or many series (long frame: unique_id, ds, y).

    Constructor arguments are stored as given (scikit-learn style) and checked by `fit`.
    `model` is a name from `seqcast.models.list_models()`, a built `Sequential` mapping
    (batch, window, features) to the strategy's output layout (see `seqcast.models.spec`), or
    "auto": the automatic recipe of `seqcast.auto` (an ensemble of global networks combined
    with statistical forecasts, chosen by backtest), which needs only `horizon` and `season`
    and takes `auto_options` (fields of `seqcast.auto.AutoSettings`) instead of the network
    and training arguments.
    """

    def __init__(
        self,
        model: str | Sequential = "lstm",
        window: int = 24,
        horizon: int = 12,
        strategy: str = "direct",
        season: int | None = None,
        units: int = 20,
        dropout: float = 0.0,
        covariates: list[str] | None = None,
        scaler: str | None = "standard",
        local_level: bool = True,
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
    ) -> None:
        self.model = model
        self.window = window
        self.horizon = horizon
        self.strategy = strategy
        self.season = season
        self.units = units
        self.dropout = dropout
        self.covariates = covariates
        self.scaler = scaler
        self.local_level = local_level
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.early_stopping = early_stopping
        self.validation_size = validation_size
        self.interval_method = interval_method
        self.mc_samples = mc_samples
        self.seed = seed
        self.progress = progress
        self.auto_options = auto_options

    def get_params(self) -> dict[str, Any]:
        params = dict(vars(self))
        return {k: v for k, v in params.items() if not k.endswith("_") and not k.startswith("_")}

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else "custom"

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, data: Any, **load_options: Any) -> Forecaster:
        """Train on every series of `data` (a path, frame, array or Series; `load_options` go
        to `seqcast.data.load_frame`). Missing values are an error: fill them first
        (`seqcast.impute`)."""
        start = time.perf_counter()
        self._check_params()
        frame = self._frame(data, load_options)
        frames.check_no_missing(frame, what="training")
        self.auto_ = None
        if self.model_name == "auto":
            return self._fit_auto(frame, start)
        spec = self._spec(n_features=1 + len(self._covariates))
        self.strategy_ = spec.strategy
        target_steps = 1 if spec.strategy == "recursive" else spec.horizon
        frames.check_enough_history(frame, spec.window, max(target_steps, 1))
        self.scaler_ = self._make_scaler().fit(frame) if self.scaler else None
        scaled = self._scale(frame)
        self.model_ = self._build(spec)
        fit_set = self._windows(scaled, target_steps, spec.strategy)
        train, val = self._split(fit_set, frame)
        y_fit = strategies.training_targets(fit_set[1], spec.strategy, self.model_, spec.window)
        self.history_ = None
        if any(p.requires_grad for p in self.model_.parameters()):
            validation = (fit_set[0][val], y_fit[val]) if val.any() else None
            self.history_ = training.fit_arrays(
                self.model_, fit_set[0][train], y_fit[train], self._settings(), validation
            )
        self.model_.eval()
        self._calibrate(scaled, frame)
        self.freq_ = frames.infer_freq(frame)
        self.context_ = (
            frame.groupby("unique_id", sort=False).tail(spec.window).reset_index(drop=True)
        )
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_auto(self, frame: pd.DataFrame, start: float) -> Forecaster:
        if self._covariates:
            raise SeqcastError("model='auto' forecasts from the target alone; drop `covariates`")
        options = dict(self.auto_options or {})
        if self.seed is not None:
            options.setdefault("seeds", (int(self.seed),))
        self.auto_ = auto.AutoModel(self.horizon, self.season, auto.AutoSettings(**options))
        self.auto_.fit(_values_by_series(frame))
        self.model_ = None
        self.strategy_ = "direct"
        self.history_ = None
        self.calibration_ = "backtest"
        self.freq_ = frames.infer_freq(frame)
        self.context_ = frame.reset_index(drop=True)  # the statistical members refit on it all
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _check_params(self) -> None:
        check_choice("scaler", self.scaler, SCALERS)
        check_choice("interval_method", self.interval_method, uncertainty.METHODS)
        if not 0.0 <= float(self.validation_size) < 1.0:
            raise SeqcastError(f"`validation_size` must be in [0, 1), got {self.validation_size!r}")
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

    @property
    def _covariates(self) -> list[str]:
        return list(self.covariates or [])

    def _frame(self, data: Any, load_options: dict[str, Any]) -> pd.DataFrame:
        if (
            isinstance(data, pd.DataFrame)
            and {"unique_id", "ds", "y"} <= set(data.columns)
            and not load_options
        ):
            frame = frames.load_frame(
                data,
                time_col="ds",
                target="y",
                id_col="unique_id",
                covariates=self._covariates or None,
            )
        else:
            if self._covariates and "covariates" not in load_options:
                load_options = {**load_options, "covariates": self._covariates}
            frame = frames.load_frame(data, **load_options)
        missing = [c for c in self._covariates if c not in frame.columns]
        if missing:
            raise SeqcastError(
                f"covariate column(s) {missing} not in the data; available: {list(frame.columns)}"
            )
        return frame[["unique_id", "ds", "y", *self._covariates]]

    def _spec(self, n_features: int) -> ModelSpec:
        strategy = "direct" if self.model_name in BASELINES else self.strategy
        return ModelSpec(
            window=self.window,
            horizon=self.horizon,
            features=n_features,
            strategy=strategy,
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

    def _make_scaler(self):
        return SCALERS[self.scaler]()

    def _scale(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.scaler_.transform(frame) if self.scaler_ is not None else frame

    def _settings(self) -> training.TrainSettings:
        return training.TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            clip_norm=self.clip_norm,
            clip_value=self.clip_value,
            early_stopping=self.early_stopping,
            seed=self.seed,
            progress=self.progress,
        )

    def _windows(self, scaled: pd.DataFrame, steps: int, strategy: str):
        """(X, Y, series, start) with X shifted to each window's last value when local_level."""
        target = "seq2seq" if strategy == "seq2seq" else "vector"
        win = windows_from_frame(scaled, self.window, steps, target, self._covariates)
        x, y = np.array(win.X), np.array(win.Y)
        if self.local_level:
            level = x[:, -1:, 0].copy()  # (n, 1)
            x[..., 0] -= level
            y = y - level[:, :, None] if y.ndim == 3 else y - level
        return x, y, win.series, win.start

    def _split(self, windows, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Training windows end before each series' cut point; validation windows' targets
        start at or after it. Windows straddling the cut are used for neither."""
        _, y, series, start = windows
        lengths = frame.groupby("unique_id", sort=False).size().to_numpy()
        cut = np.floor(lengths * (1 - float(self.validation_size))).astype(int)[series]
        steps = 1 if self.strategy_ == "recursive" else self.horizon
        first_target = start + self.window
        last_target = first_target + steps - 1
        if self.strategy_ == "seq2seq":
            first_target = start + 1
        train = last_target < cut
        val = first_target >= cut
        if not train.any():
            raise SeqcastError(
                f"no training window fits before the validation part (validation_size="
                f"{self.validation_size}); use a smaller window or validation_size, or more data"
            )
        return train, val

    def _calibrate(self, scaled: pd.DataFrame, frame: pd.DataFrame) -> None:
        """Absolute H-step errors (scaled units) on validation windows, for conformal intervals."""
        self.calibration_ = "none"
        self.residuals_ = np.zeros((0, self.horizon))
        lengths = frame.groupby("unique_id", sort=False).size()
        if (lengths < self.window + self.horizon).any():
            return
        x, y, series, start = self._windows(scaled, self.horizon, "direct")
        cut = np.floor(lengths.to_numpy() * (1 - float(self.validation_size))).astype(int)[series]
        held_out = start + self.window >= cut
        self.calibration_ = "held-out"
        if not held_out.any():
            held_out = np.ones(len(x), dtype=bool)
            self.calibration_ = "in-sample"
        pred = self._forecast_scaled(torch.as_tensor(x[held_out]), self.horizon)
        self.residuals_ = np.abs(y[held_out].reshape(-1, self.horizon) - pred.numpy())

    # -- predict --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("This Forecaster is not fitted yet. Call `fit` first.")

    def _forecast_scaled(self, x: torch.Tensor, horizon: int) -> torch.Tensor:
        dtype = next(iter(self.model_.parameters()), torch.empty(0)).dtype
        with torch.inference_mode():
            return (
                strategies.forecast(self.model_, x.to(dtype), horizon, self.strategy_, self.horizon)
                .cpu()
                .double()
            )

    def _inputs(self, frame: pd.DataFrame):
        """Last window of every series -> (X (S, W, F), level (S, 1), ids, last stamps)."""
        tails = frame.groupby("unique_id", sort=False).tail(self.window)
        sizes = tails.groupby("unique_id", sort=False).size()
        short = sizes[sizes < self.window]
        if len(short):
            raise SeqcastError(
                f"series {short.index[0]!r} has {int(short.iloc[0])} points but the model needs "
                f"the last {self.window} (its window) to forecast"
            )
        frames.check_no_missing(tails, what="prediction")
        scaled = self._scale(tails)
        values = scaled[["y", *self._covariates]].to_numpy(np.float64)
        x = values.reshape(len(sizes), self.window, -1).copy()
        level = x[:, -1:, 0].copy() if self.local_level else np.zeros((len(x), 1))
        x[..., 0] -= level
        last = tails.groupby("unique_id", sort=False)["ds"].last()
        return torch.as_tensor(x), level, [str(i) for i in sizes.index], last.to_list()

    def _context_inputs(self):
        """`_inputs(self.context_)`, computed once and kept while the context, scaler, window,
        local level and covariates are the same objects / values: `predict()` on the fitted (or
        loaded) series then skips the pandas work, which cost several times the model's forward
        pass (benchmarks/latency.py). Assign a new `context_` rather than editing it in place."""
        key = (
            id(self.context_),
            id(self.scaler_),
            self.window,
            self.local_level,
            tuple(self._covariates),
        )
        cached = self.__dict__.get("_context_cache")
        if cached is None or cached[0] != key:
            # the cache holds the keyed objects, so their ids stay theirs while it lives
            cached = (key, self._inputs(self.context_), (self.context_, self.scaler_))
            self._context_cache = cached
        return cached[1]

    def predict(
        self,
        data: Any = None,
        horizon: int | None = None,
        intervals: Any = None,
        **load_options: Any,
    ) -> pd.DataFrame:
        """Forecast `horizon` steps after the end of each series of `data` (default: the
        training data). Returns unique_id, ds, y_hat (+ y_lo_L / y_hi_L for each level L)."""
        self._check_fitted()
        horizon = self.horizon if horizon is None else horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
            raise SeqcastError(f"`horizon` must be a positive integer, got {horizon!r}")
        levels = uncertainty.parse_levels(intervals)
        if getattr(self, "auto_", None) is not None:
            frame = self.context_ if data is None else self._frame(data, load_options)
            return self._predict_auto(frame, horizon, levels)
        if data is None:
            x, level, ids, last = self._context_inputs()
        else:
            x, level, ids, last = self._inputs(self._frame(data, load_options))
        point = self._forecast_scaled(x, horizon).numpy()
        out = {"y_hat": point}
        for lvl, (lo, hi) in self._intervals(x, point, horizon, levels).items():
            out[f"y_lo_{lvl}"], out[f"y_hi_{lvl}"] = lo, hi
        return self._to_frame(out, level, ids, last, horizon)

    def _predict_auto(self, frame: pd.DataFrame, horizon: int, levels: list[int]) -> pd.DataFrame:
        frames.check_no_missing(frame, what="prediction")
        columns = self.auto_.predict(_values_by_series(frame), horizon, levels)
        last = frame.groupby("unique_id", sort=False)["ds"].last()
        ids = [str(i) for i in last.index]
        stamps = [frames.future_stamps(d, self.freq_, horizon) for d in last.to_list()]
        rows = {
            "unique_id": np.repeat(ids, horizon),
            "ds": np.concatenate([np.asarray(s) for s in stamps]),
        }
        rows |= {name: values.reshape(-1) for name, values in columns.items()}
        return pd.DataFrame(rows)

    def _intervals(self, x, point, horizon, levels):
        if not levels:
            return {}
        if self.interval_method == "mc_dropout":
            return uncertainty.mc_dropout_quantiles(
                lambda: strategies.forecast(
                    self.model_, x.to(self._dtype()), horizon, self.strategy_, self.horizon
                ),
                self.model_,
                self.mc_samples,
                levels,
            )
        if horizon > self.residuals_.shape[1]:
            raise SeqcastError(
                f"conformal intervals are calibrated for {self.residuals_.shape[1]} steps, "
                f"not {horizon}; ask for a shorter horizon or use interval_method='mc_dropout'"
            )
        radius = {
            lvl: uncertainty.conformal_radius(self.residuals_[:, :horizon], lvl) for lvl in levels
        }
        return {lvl: (point - r, point + r) for lvl, r in radius.items()}

    def _dtype(self) -> torch.dtype:
        return next(iter(self.model_.parameters()), torch.empty(0)).dtype

    def _to_frame(self, columns: dict[str, np.ndarray], level, ids, last, horizon) -> pd.DataFrame:
        keys, affine = self._frame_parts(ids, last, horizon)
        rows = dict(keys)
        for name, values in columns.items():
            values = values + level
            if affine is not None:  # = scaler_.inverse_transform_array, parameters cached
                loc, scale = affine
                values = values * scale + loc
            rows[name] = np.asarray(values, dtype=np.float64).reshape(-1)
        return pd.DataFrame(rows)

    def _frame_parts(self, ids: list[str], last: list, horizon: int):
        """({unique_id, ds} columns, (loc, scale) of the target per series or None) for a
        forecast frame; the last one asked for is kept (repeated `predict()` calls ask for the
        same), since future time stamps and scaler look-ups cost more than the model."""
        key = (tuple(ids), tuple(last), horizon, self.freq_, id(self.scaler_))
        cached = self.__dict__.get("_frame_parts_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        stamps = [frames.future_stamps(d, self.freq_, horizon) for d in last]
        keys = {
            "unique_id": np.repeat(ids, horizon),
            "ds": np.concatenate([np.asarray(s) for s in stamps]),
        }
        affine = None
        if self.scaler_ is not None:
            # float64 like the forecasts: the same numbers inverse_transform_array would use
            affine = self.scaler_._params_for(ids, np.zeros((len(ids), horizon)), "y")
        self._frame_parts_cache = (key, (keys, affine), self.scaler_)
        return keys, affine

    # -- evaluate / backtest --------------------------------------------------------------------
    def evaluate(self, data: Any, intervals: int = 80, **load_options: Any) -> dict[str, float]:
        """Metrics on the last `horizon` points of each series of `data`, forecast from the
        points before them: mae, rmse, mape, smape, mase, coverage_L and width_L."""
        self._check_fitted()
        frame = self._frame(data, load_options)
        context, truth = frames.split_by_time(frame, self.horizon)
        pred = self.predict(context, intervals=[intervals])
        return score(pred, truth, context, self.season or 1, intervals)

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
        frame = self._frame(data, load_options)
        if getattr(self, "auto_", None) is not None:
            return self._backtest_auto(frame, windows, step)
        origins = []
        for k in range(windows):
            context, rest = _split_at(frame, self.horizon + k * step)
            origins.append(
                (self._inputs(context), rest.groupby("unique_id", sort=False).head(self.horizon))
            )
        x = torch.cat([inputs[0] for inputs, _ in origins])
        point = self._forecast_scaled(x, self.horizon).numpy()  # every origin in one batch
        parts, offset = [], 0
        for (x_k, level, ids, last), truth in origins:
            block = point[offset : offset + len(x_k)]
            offset += len(x_k)
            pred = self._to_frame({"y_hat": block}, level, ids, last, self.horizon)
            pred.insert(1, "cutoff", np.repeat(last, self.horizon))
            parts.append(
                pred.merge(truth[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="left")
            )
        return pd.concat(parts, ignore_index=True)[["unique_id", "cutoff", "ds", "y", "y_hat"]]

    def _backtest_auto(self, frame: pd.DataFrame, windows: int, step: int) -> pd.DataFrame:
        """One forecast per origin: the statistical members refit on each origin's history."""
        parts = []
        for k in range(windows):
            context, rest = _split_at(frame, self.horizon + k * step)
            pred = self.predict(context)
            last = context.groupby("unique_id", sort=False)["ds"].last()
            pred.insert(1, "cutoff", np.repeat(last.to_list(), self.horizon))
            truth = rest.groupby("unique_id", sort=False).head(self.horizon)
            parts.append(
                pred.merge(truth[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="left")
            )
        return pd.concat(parts, ignore_index=True)[["unique_id", "cutoff", "ds", "y", "y_hat"]]

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write config.json + model.safetensors + scaler.json into directory `path`."""
        self._check_fitted()
        params = self.get_params()
        params["model"] = self.model_name
        if getattr(self, "auto_", None) is not None:
            return self._save_auto(path, params)
        config = {
            "seqcast_version": __version__,
            "params": params,
            "architecture": self.model_.get_config(),
            "strategy": self.strategy_,
            "freq": self.freq_,
            "calibration": self.calibration_,
            "residuals": self.residuals_.tolist(),
            "context": _frame_to_json(self.context_),
            "fit_seconds": self.fit_seconds_,
            "history": None if self.history_ is None else self.history_.history,
        }
        scaler = self.scaler_.to_dict() if self.scaler_ is not None else {}
        return io.write_model_dir(path, config, self.model_.state_dict(), scaler)

    def _save_auto(self, path: str | Path, params: dict[str, Any]) -> Path:
        auto_config, tensors = self.auto_.state()
        config = {
            "seqcast_version": __version__,
            "params": params,
            "auto": auto_config,
            "freq": self.freq_,
            "calibration": self.calibration_,
            "context": _frame_to_json(self.context_),
            "fit_seconds": self.fit_seconds_,
        }
        return io.write_model_dir(path, config, tensors, {})

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Rebuild a saved Forecaster on the CPU (GPU-trained models included)."""
        config, state, scaler = io.read_model_dir(path)
        try:
            params = dict(config["params"])
            if params.get("model") == "auto":
                return cls._load_auto(params, config, state)
            model = Sequential.from_config(config["architecture"])
            if params["model"] == "custom":
                params["model"] = model
            fc = cls(**params)
            model.load_state_dict(state)
            fc.model_ = model.eval()
            fc.strategy_ = config["strategy"]
            fc.freq_ = config["freq"]
            fc.calibration_ = config["calibration"]
            fc.residuals_ = np.asarray(config["residuals"], dtype=np.float64).reshape(
                -1, fc.horizon
            )
            fc.context_ = _frame_from_json(config["context"])
            fc.scaler_ = scaler_from_dict(scaler) if scaler else None
            fc.fit_seconds_ = config.get("fit_seconds", float("nan"))
            fc.history_ = None
        except SeqcastError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SeqcastError(
                f"{path} holds a damaged or incompatible seqcast model "
                f"({str(err).splitlines()[0]}); fit and save it again"
            ) from None
        return fc

    @classmethod
    def _load_auto(cls, params, config, state) -> Forecaster:
        fc = cls(**params)
        fc.auto_ = auto.AutoModel.from_state(config["auto"], state)
        fc.model_ = None
        fc.strategy_ = "direct"
        fc.freq_ = config["freq"]
        fc.calibration_ = config["calibration"]
        fc.context_ = _frame_from_json(config["context"])
        fc.fit_seconds_ = config.get("fit_seconds", float("nan"))
        fc.history_ = None
        return fc


def _values_by_series(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each series' target as a float64 array, in the frame's series order."""
    return [part.to_numpy(np.float64) for _, part in frame.groupby("unique_id", sort=False)["y"]]


def score(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    history: pd.DataFrame,
    season: int,
    level: int | None = 80,
) -> dict[str, float]:
    """Metrics of forecasts `pred` against `truth` (both long frames), MASE scaled per series
    by the in-sample seasonal-naive error on `history`."""
    joined = pred.merge(truth[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="inner")
    if len(joined) != len(truth):
        raise SeqcastError("forecast stamps do not line up with the held-out stamps")
    y, y_hat = joined["y"].to_numpy(), joined["y_hat"].to_numpy()
    out = {
        "mae": metrics.mae(y, y_hat),
        "rmse": metrics.rmse(y, y_hat),
        "mape": metrics.mape(y, y_hat),
        "smape": metrics.smape(y, y_hat),
    }
    scaled = []
    for sid, part in joined.groupby("unique_id", sort=False):
        train = history.loc[history["unique_id"] == sid, "y"].to_numpy()
        scaled.append(metrics.mase(part["y"].to_numpy(), part["y_hat"].to_numpy(), train, season))
    out["mase"] = float(np.mean(scaled))
    if level is not None and f"y_lo_{level}" in joined:
        lo, hi = joined[f"y_lo_{level}"].to_numpy(), joined[f"y_hi_{level}"].to_numpy()
        out[f"coverage_{level}"] = metrics.coverage(y, lo, hi)
        out[f"width_{level}"] = metrics.interval_width(lo, hi)
    return out


def _split_at(frame: pd.DataFrame, drop: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
    return frame[from_end >= drop], frame[from_end < drop]


def _frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    ds = frame["ds"]
    is_time = pd.api.types.is_datetime64_any_dtype(ds)
    return {
        "columns": {c: frame[c].tolist() for c in frame.columns if c != "ds"},
        "ds": ds.dt.strftime("%Y-%m-%dT%H:%M:%S").tolist() if is_time else ds.tolist(),
        "ds_is_time": bool(is_time),
    }


def _frame_from_json(data: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(data["columns"])
    if data["ds_is_time"]:
        ds = pd.to_datetime(pd.Series(data["ds"])).astype("datetime64[ns]")
    else:
        ds = pd.Series(data["ds"], dtype="int64")
    frame.insert(1, "ds", ds)
    return frame
