"""`Forecaster("auto")`: the automatic recipe for many short real series.

What the M4 winner (ES-RNN), N-BEATS and Hewamalage et al.'s guidelines for recurrent
forecasters found to work, in one place:

1. Per-series normalisation from each series' own history (log scale for positive series,
   seasonal components where a test finds seasonality, a level per window:
   `seqcast.data.pipeline`), so one global network serves every series of a frequency,
   seen in training or not.
2. Global networks on windows of several lengths (multiples of the horizon or season), with
   direct multi-step output, trained with sMAPE, MASE and MAE losses and several seeds; early
   stopping on the last horizon of each series' training part; then a refit on all of it for
   the epochs early stopping found. Their median is the neural forecast.
3. Statistical members from statsforecast (AutoETS, AutoTheta), fit on each series alone.
4. The combination (mean of some members) chosen by a rolling-origin backtest on the end of
   the training part (`seqcast.selection`): never on the forecast period.
5. Conformal intervals from the same backtest's errors over all series, on the log scale for
   positive series (so they scale with the series) and relative to each series' own noise
   level (so smooth series get narrow intervals and noisy ones wide).

Series shorter than a window are padded with a mask channel (counted in `notes`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from seqcast import ensemble, selection, training, uncertainty
from seqcast.data import pipeline
from seqcast.errors import SeqcastError
from seqcast.sequential import Sequential

log = logging.getLogger(__name__)


@dataclass
class AutoSettings:
    """The recipe's knobs; their defaults are what the competition benchmark runs."""

    lookbacks: tuple[float, ...] = (1.5, 3.0)  # input windows, as multiples of max(H, season)
    # None: the loss of `metric` (what the forecasts will be judged by), MASE and MAE
    losses: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    units: int = 256
    epochs: int = 40  # at most; early stopping picks the number
    patience: int = 5
    batch_size: int = 512
    lr: float = 1e-3
    statistical: tuple[str, ...] = ("ets", "theta")
    # AutoARIMA joins the statistical members when the data has at most this many points in
    # all: its model search costs 10 to 100 times ETS's (statsforecast's published figures)
    arima_max_points: int = 20_000
    metric: str = "smape"  # what the forecasts are judged by: smape, mase or mape
    refit: bool = True
    max_windows_per_series: int = 400  # the most recent ones; bounds long series' weight
    n_jobs: int = -1  # statsforecast's processes (-1: one per core)
    threads: int | None = None  # torch threads while training (None: seqcast's default)

    @property
    def loss_names(self) -> tuple[str, ...]:
        if self.losses is not None:
            return tuple(self.losses)
        return tuple(dict.fromkeys((self.metric, "mase", "mae")))

    def check(self) -> AutoSettings:
        if self.metric not in selection.METRICS:
            raise SeqcastError(
                f"auto metric must be one of {', '.join(selection.METRICS)}, got {self.metric!r}"
            )
        for name in self.loss_names:
            if name not in ensemble.LOSSES:
                raise SeqcastError(
                    f"unknown auto loss {name!r}; expected some of {', '.join(ensemble.LOSSES)}"
                )
        if not self.lookbacks or min(self.lookbacks) <= 0:
            raise SeqcastError(f"auto lookbacks must be positive multiples, got {self.lookbacks}")
        return self


@dataclass
class _Member:
    lookback: int
    loss: str
    seed: int
    epochs: int
    model: Sequential | None = field(default=None, repr=False)


class AutoModel:
    """The fitted recipe for one horizon and season over a set of series."""

    def __init__(self, horizon: int, season: int | None, settings: AutoSettings | None = None):
        self.horizon = int(horizon)
        self.season = int(season or 1)
        self.settings = (settings or AutoSettings()).check()

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, values: list[np.ndarray]) -> AutoModel:
        start = time.perf_counter()
        s, h = self.settings, self.horizon
        requested = list(s.statistical)
        if "arima" not in requested and sum(len(v) for v in values) <= s.arima_max_points:
            requested.append("arima")
        self.statistical_, self.unavailable_ = ensemble.available_statistical(requested)
        if self.unavailable_:
            log.warning("auto runs without its statistical members: %s", self.unavailable_)
        span = max(h, self.season)
        self.lookbacks_ = sorted({max(2, int(round(f * span))) for f in s.lookbacks})
        typical = int(np.median([len(v) for v in values]))
        self.origins_ = selection.origins(len(values), h, typical)
        backtest = _Backtest.cut(values, h, self.season, self.origins_)
        full = _Backtest.cut(values, h, self.season, 0) if s.refit else None
        self.members_ = []
        nn_backtest = []
        for lookback in self.lookbacks_:
            # the windows depend on the lookback alone: cut once for every loss and seed
            data, val = backtest.training_windows(lookback, s.max_windows_per_series)
            all_data = None
            if full is not None or val is None:
                full = full or _Backtest.cut(values, h, self.season, 0)
                all_data = full.training_windows(lookback, s.max_windows_per_series)[0]
            for loss in s.loss_names:
                for seed in s.seeds:
                    member, rel = self._fit_member(lookback, loss, seed, data, val, all_data)
                    self.members_.append(member)
                    nn_backtest.append(None if rel is None else _to_original(rel, val[1]))
        self._choose(backtest, nn_backtest)
        self.notes_ = {
            "series": len(values),
            "padded_series": int(sum(len(v) < max(self.lookbacks_) for v in values)),
            "backtest_series": int(len(set(backtest.series.tolist()))),
            "backtest_origins": self.origins_,
            "statistical_unavailable": self.unavailable_,
        }
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _train_settings(self, epochs: int, patience: int | None, seed: int):
        s = self.settings
        return training.TrainSettings(
            epochs=epochs, batch_size=s.batch_size, lr=s.lr, early_stopping=patience,
            seed=seed, progress=False, threads=s.threads, trainer="lean",
        )  # fmt: skip

    def _fit_member(self, lookback: int, loss: str, seed: int, data, val, all_data):
        """Early-stopped on the backtest windows `val`, then (settings.refit) trained again on
        `all_data`, every window of each series, for the epochs that did best. Returns the
        member and its backtest forecasts relative to each window's level (None without a
        backtest)."""
        s = self.settings
        rel, epochs = None, s.epochs
        model = self._network(lookback, seed)
        if val is not None:
            history = ensemble.train_member(
                model, data, loss, self._train_settings(s.epochs, s.patience, seed), val
            )
            epochs = int(np.argmin(history.history["val_loss"])) + 1
            rel = ensemble.member_forecast(model, val[0])
        if s.refit or val is None:
            model = self._network(lookback, seed)
            ensemble.train_member(model, all_data, loss, self._train_settings(epochs, None, seed))
        log.info("auto member lookback=%d loss=%s seed=%d: %d epochs", lookback, loss, seed, epochs)
        return _Member(lookback, loss, seed, epochs, model.eval()), rel

    def _network(self, lookback: int, seed: int) -> Sequential:
        torch.manual_seed(seed)
        return ensemble.network(lookback, self.horizon, self.settings.units)

    def _choose(self, backtest: _Backtest, nn_backtest: list[np.ndarray | None]) -> None:
        """Backtest every combination of the neural median and the statistical members; keep
        the best one and its errors for the intervals."""
        self.residuals_ = np.zeros((0, self.horizon))
        if backtest.empty or any(f is None for f in nn_backtest):
            self.choice_ = "+".join(["nn", *self.statistical_])
            self.scores_ = []
            return
        forecasts = {"nn": np.median(np.stack(nn_backtest), axis=0)}
        forecasts |= ensemble.statistical_forecasts(
            backtest.histories(), self.season, self.horizon, self.statistical_, self.settings.n_jobs
        )
        candidates = ensemble.combinations(["nn", *self.statistical_])
        board = selection.score_candidates(
            forecasts, backtest.truth, backtest.mase_scale, candidates, self.settings.metric
        )
        self.choice_ = selection.choose(board, self.settings.metric)
        self.scores_ = board.to_dict("records")
        chosen = ensemble.combine(forecasts, candidates[self.choice_])
        self.residuals_ = backtest.residuals(chosen)

    # -- predict --------------------------------------------------------------------------------
    def predict(
        self, values: list[np.ndarray], horizon: int, levels: list[int]
    ) -> dict[str, np.ndarray]:
        """(series, horizon) arrays: y_hat and y_lo_L / y_hi_L for each level."""
        if horizon > self.horizon:
            raise SeqcastError(
                f"this auto model forecasts up to {self.horizon} steps, not {horizon}; fit it "
                f"with horizon={horizon}"
            )
        h = self.horizon
        transforms = [pipeline.fit_transform(v, self.season) for v in values]
        forecasts: dict[str, np.ndarray] = {}
        if "nn" in self.choice_.split("+"):
            forecasts["nn"] = self._neural(values, transforms)
        stats = [m for m in self.choice_.split("+") if m != "nn"]
        forecasts |= ensemble.statistical_forecasts(
            values, self.season, h, stats, self.settings.n_jobs
        )
        point = ensemble.combine(forecasts, self.choice_.split("+"))
        out = {"y_hat": point[:, :horizon]}
        for level in levels:
            radius = uncertainty.conformal_radius(self.residuals_, level)
            noise = np.array(
                [noise_scale(t, v, self.season) for t, v in zip(transforms, values, strict=True)]
            )
            lo, hi = _band(point, radius[None, :] * noise[:, None], transforms)
            out[f"y_lo_{level}"], out[f"y_hi_{level}"] = lo[:, :horizon], hi[:, :horizon]
        return out

    def _neural(self, values, transforms) -> np.ndarray:
        h = self.horizon
        by_lookback = {}
        for lookback in self.lookbacks_:
            parts = [
                pipeline.windows(t.forward(v), lookback, h, np.array([len(v) - 1]))
                for v, t in zip(values, transforms, strict=True)
            ]
            x = np.concatenate([p[0] for p in parts])
            level = np.concatenate([p[3] for p in parts])
            by_lookback[lookback] = (x, level)
        comps = np.stack([t.future_components(h) for t in transforms])
        outs = []
        for member in self.members_:
            x, level = by_lookback[member.lookback]
            rel = ensemble.member_forecast(member.model, x)
            u = rel + level[:, None] + comps
            outs.append(np.stack([t.from_u(row) for t, row in zip(transforms, u, strict=True)]))
        return np.median(np.stack(outs), axis=0)

    # -- persistence ----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able config, tensors) for a model directory."""
        config = {
            "horizon": self.horizon,
            "season": self.season,
            "settings": asdict(self.settings),
            "lookbacks": self.lookbacks_,
            "origins": self.origins_,
            "statistical": self.statistical_,
            "choice": self.choice_,
            "backtest_scores": self.scores_,
            "notes": self.notes_,
            "members": [
                {
                    "lookback": m.lookback, "loss": m.loss, "seed": m.seed, "epochs": m.epochs,
                    "architecture": m.model.get_config(),
                }
                for m in self.members_
            ],
        }  # fmt: skip
        tensors = {"residuals": torch.as_tensor(self.residuals_)}
        for i, m in enumerate(self.members_):
            tensors |= {f"member{i}.{k}": v for k, v in m.model.state_dict().items()}
        return config, tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> AutoModel:
        settings = dict(config["settings"])
        for key in ("lookbacks", "losses", "seeds", "statistical"):
            if settings[key] is not None:
                settings[key] = tuple(settings[key])
        model = cls(config["horizon"], config["season"], AutoSettings(**settings))
        model.lookbacks_ = [int(v) for v in config["lookbacks"]]
        model.origins_ = int(config["origins"])
        model.statistical_ = list(config["statistical"])
        model.unavailable_ = config["notes"].get("statistical_unavailable")
        model.choice_ = str(config["choice"])
        model.scores_ = list(config["backtest_scores"])
        model.notes_ = dict(config["notes"])
        model.residuals_ = tensors["residuals"].double().numpy().reshape(-1, model.horizon)
        model.members_ = []
        for i, spec in enumerate(config["members"]):
            net = Sequential.from_config(spec["architecture"])
            prefix = f"member{i}."
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
            model.members_.append(
                _Member(spec["lookback"], spec["loss"], spec["seed"], spec["epochs"], net.eval())
            )
        return model

    def describe(self) -> str:
        best = self.scores_[0] if self.scores_ else None
        metric = self.settings.metric
        score = f" (backtest {_METRIC_NAMES[metric]} {best[metric]:.2f})" if best else ""
        return (
            f"auto: {len(self.members_)} networks + {', '.join(self.statistical_) or 'none'}; "
            f"chose {self.choice_}{score}"
        )


_METRIC_NAMES = {"smape": "sMAPE", "mase": "MASE", "mape": "MAPE"}


def _band(point: np.ndarray, radius: np.ndarray, transforms) -> tuple[np.ndarray, np.ndarray]:
    """Intervals around `point` (series, horizon) from radii on the normalised scale, one row
    per series: multiplicative (a ratio) for log series with a positive forecast, else
    additive in the series' scale."""
    lo, hi = np.empty_like(point), np.empty_like(point)
    for i, t in enumerate(transforms):
        p = point[i]
        if t.log:
            ratio = np.exp(np.minimum(radius[i], 700.0))
            positive = p > 0
            width = np.abs(p) * (ratio - 1)
            lo[i] = np.where(positive, p / ratio, p - width)
            hi[i] = np.where(positive, p * ratio, p + width)
        else:
            lo[i], hi[i] = p - radius[i] * t.scale, p + radius[i] * t.scale
    return lo, hi


@dataclass
class _Backtest:
    """Each series cut `horizon + k` points before its end (k = 0..origins-1): the windows
    before the cut train the networks, the `origins` windows after it validate them and score
    the combinations. `origins=0` means no cut: every window trains."""

    values: list[np.ndarray]
    horizon: int
    origins: int
    season: int
    series: np.ndarray  # (windows,) which series each backtest window belongs to
    ends: np.ndarray  # (windows,) its last input index
    # each series' normalisation, from the points before its earliest origin
    transforms: dict[int, pipeline.SeriesTransform] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, v in enumerate(self.values):
            end = self._train_end(i)
            if end >= 1:
                self.transforms[i] = pipeline.fit_transform(v[:end], self.season)

    @classmethod
    def cut(cls, values: list[np.ndarray], horizon: int, season: int, origins: int) -> _Backtest:
        series, ends = [], []
        for i, v in enumerate(values):
            first = len(v) - horizon - origins  # index of the earliest backtest target
            if origins and first >= pipeline.MIN_HISTORY:
                for k in range(origins):
                    series.append(i)
                    ends.append(first - 1 + k)
        return cls(values, horizon, origins, season, np.array(series, int), np.array(ends, int))

    @property
    def empty(self) -> bool:
        return self.origins == 0 or len(self.series) == 0

    def _train_end(self, i: int) -> int:
        """Points of series i the training windows may see: those before its earliest origin;
        for a series too short to take part in the backtest, all but its last horizon (or all
        of it, when that leaves fewer than 2)."""
        n = len(self.values[i])
        if self.origins == 0:
            return n
        first = n - self.horizon - self.origins
        if first >= pipeline.MIN_HISTORY:
            return first
        return n - self.horizon if n - self.horizon >= 2 else n

    def training_windows(self, lookback: int, most: int):
        """((X, Y), (X_val, Y_val) or None) with Y in ensemble's six-channel layout."""
        horizon, season = self.horizon, self.season
        train_x, train_y, val_x, val_y = [], [], [], []
        val_ends = {}
        for i, e in zip(self.series, self.ends, strict=True):
            val_ends.setdefault(int(i), []).append(int(e))
        for i, t in self.transforms.items():
            v, end = self.values[i], self._train_end(i)
            z = t.forward(v)
            scale = _mase_scale(v[:end], season)
            ends = np.arange(max(0, end - 1 - most), end - 1)
            if len(ends):
                x, y = _channels(z[:end], t, scale, lookback, horizon, ends)
                train_x.append(x)
                train_y.append(y)
            if i in val_ends:
                x, y = _channels(z, t, scale, lookback, horizon, np.array(val_ends[i]))
                val_x.append(x)
                val_y.append(y)
        if not train_x:
            raise SeqcastError(
                "auto found no training window: every series is shorter than 2 points; give "
                "each series at least 2 observations"
            )
        data = (np.concatenate(train_x), np.concatenate(train_y))
        val = (np.concatenate(val_x), np.concatenate(val_y)) if val_x else None
        return data, val

    def histories(self) -> list[np.ndarray]:
        return [self.values[i][: e + 1] for i, e in zip(self.series, self.ends, strict=True)]

    @property
    def truth(self) -> np.ndarray:
        h = self.horizon
        return np.stack(
            [self.values[i][e + 1 : e + 1 + h] for i, e in zip(self.series, self.ends, strict=True)]
        )

    @property
    def mase_scale(self) -> np.ndarray:
        return np.array([_mase_scale(h, self.season) for h in self.histories()])

    def residuals(self, forecast: np.ndarray) -> np.ndarray:
        """Absolute errors on the normalised scale (log ratios for log series, forecasts at or
        below 0 counting as infinitely far; multiples of the scale s otherwise), each divided
        by its series' own noise level (`noise_scale` of the history before the origin)."""
        truth = self.truth
        out = np.empty_like(forecast)
        for row, (i, e) in enumerate(zip(self.series, self.ends, strict=True)):
            t = self.transforms[int(i)]
            noise = noise_scale(t, self.values[int(i)][: e + 1], self.season)
            if t.log:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.log(truth[row]) - np.log(np.where(forecast[row] > 0, forecast[row],
                                                                 np.nan))  # fmt: skip
                out[row] = np.where(np.isfinite(ratio), np.abs(ratio), np.inf) / noise
            else:
                out[row] = np.abs(truth[row] - forecast[row]) / t.scale / noise
        return out


def noise_scale(t: pipeline.SeriesTransform, history: np.ndarray, season: int) -> float:
    """How much a series moves from one season (or step) to the next on the normalised scale:
    the mean |u_t - u_(t-m)| of its history (lag 1 below two seasons; 1 for a flat series).

    Conformal residuals are divided by it, and radii multiplied back, so that one quantile
    over all series gives smooth series narrow intervals and noisy ones wide: normalised
    (locally weighted) split conformal prediction, as valid as the plain one when the
    residuals / scale are exchangeable."""
    u = t.to_u(np.asarray(history, dtype=np.float64))
    lag = season if season > 1 and len(u) > season else 1
    if len(u) <= lag:
        return 1.0
    value = float(np.mean(np.abs(u[lag:] - u[:-lag])))
    return value if value > 0 and np.isfinite(value) else 1.0


def _to_original(rel: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Forecasts relative to each window's level back on the series' scale, from the windows'
    six-channel targets `y` (ensemble's layout)."""
    u = rel + y[..., ensemble.OFFSET]
    return np.where(y[..., ensemble.IS_LOG] > 0, np.exp(np.minimum(u, 700.0)),
                    u * y[..., ensemble.SCALE])  # fmt: skip


def _mase_scale(history: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE (lag 1 when the history is shorter than two seasons);
    the mean absolute value, or 1, when that is 0."""
    lag = season if len(history) > season and season > 1 else 1
    if len(history) > lag:
        value = float(np.mean(np.abs(history[lag:] - history[:-lag])))
        if value > 0:
            return value
    value = float(np.mean(np.abs(history)))
    return value if value > 0 else 1.0


def _channels(z, t: pipeline.SeriesTransform, mase, lookback, horizon, ends):
    x, target, mask, level = pipeline.windows(z, lookback, horizon, ends)
    positions = ends[:, None] + 1 + np.arange(horizon)[None, :]
    offset = level[:, None] + t.components(positions)
    y = np.stack(
        [
            target,
            mask,
            offset,
            np.full_like(target, t.scale),
            np.full_like(target, float(t.log)),
            np.full_like(target, mase),
        ],
        axis=-1,
    )
    return x.astype(np.float32), y.astype(np.float32)
