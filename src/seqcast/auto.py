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
3. Statistical members from statsforecast (AutoETS, AutoTheta, and AutoARIMA where a timed
   probe says its search fits the budget), fit on each series alone; long and multiple
   seasons are taken out by MSTL first (`seqcast.statistical`).
4. The combination (mean of some members) chosen by a rolling-origin backtest on the end of
   the training part (`seqcast.selection`): never on the forecast period.
5. Conformal intervals from the same backtest's signed errors over all series, in units of
   each series' MASE scale (its in-sample seasonal-naive MAE: smooth series get narrow
   intervals, noisy ones wide, and the interval score MSIS is measured in the same unit),
   each tail its own quantile (a forecast that tends to fall short gets a band shifted up),
   additive and never below 0 for positive series. On the training data alone (backtest
   windows split by series, one half calibrating the other) this gave M1 95% MSIS 14.0 and
   Tourism 19.0, against 55.1 and 23.1 for log-scale bands over a mean-based noise level,
   which exponentiated a few fast-growing short series' noise into bounds 10^5 times wide.

Series shorter than a window are padded with a mask channel (counted in `notes`).

Member families (`AutoSettings.families`): "stat" (the statistical members), "mlp" (fully
connected networks), "rnn" (recurrent) and "cnn" (convolutional); each network family's median
is one candidate of the backtest. `AutoSettings.time_limit` bounds a fit: members whose probed
cost would break it are skipped, one still running at the deadline is stopped, and both are
named in the log, in `skipped_` and in the saved config.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from seqcast import ensemble, selection, statistical, training, uncertainty
from seqcast.data import pipeline
from seqcast.errors import SeqcastError
from seqcast.layers import build_kernels_in_background
from seqcast.sequential import Sequential

log = logging.getLogger(__name__)

#: progress(member, done, total)
Progress = Callable[[str, int, int], None]


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
    # AutoARIMA joins the statistical members when a timed probe on the longest series puts
    # its fits for the whole recipe (backtest and final) at most this many seconds: its model
    # search costs 10 to 100 times ETS's and grows with the season
    # (measured on the machine that fits, so a busy machine may leave it out where a quiet one
    # keeps it: give "arima" in `statistical` to always run it)
    arima_budget: float = 60.0
    # which member families run: "stat", "mlp", "rnn", "cnn" (`seqcast.models.families`).
    # "rnn" and "cnn" stay opt-in: on the M3 --quick subset (benchmarks/competitions.py,
    # first 20 series per frequency) adding "cnn" gave sMAPE 23.00 / MASE 1.43 over all
    # points against 22.88 / 1.39 without (better on quarterly and monthly, worse on yearly),
    # adding "rnn" and "cnn" 23.14 / 1.44 at about 3x the fit time; on the airline split
    # (1960 held out) MASE stayed 0.484 with "cnn" and rose to 0.523 with both
    families: tuple[str, ...] = ("stat", "mlp")
    # seconds for the whole fit (None: no limit); see the module docstring
    time_limit: float | None = None
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
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise SeqcastError(
                f"unknown auto family {unknown[0] if unknown else '(none given)'!r}; expected "
                f"some of {', '.join(FAMILIES)}"
            )
        if self.time_limit is not None and not float(self.time_limit) > 0:
            raise SeqcastError(f"auto time_limit must be a positive number of seconds, got "
                               f"{self.time_limit!r}")  # fmt: skip
        if not self.lookbacks or min(self.lookbacks) <= 0:
            raise SeqcastError(f"auto lookbacks must be positive multiples, got {self.lookbacks}")
        return self


FAMILIES = ("stat", "mlp", "rnn", "cnn")
NETWORK_FAMILIES = ("mlp", "rnn", "cnn")
#: the share of the time left that the statistical members' probed cost may take
_STAT_SHARE = 0.5
#: the longest a probe of one statistical member may run, as a share of the time left
_PROBE_SHARE = 0.1


@dataclass
class _Member:
    lookback: int
    loss: str
    seed: int
    epochs: int
    model: Sequential | None = field(default=None, repr=False)
    family: str = "mlp"


class AutoModel:
    """The fitted recipe for one horizon and season (or several) over a set of series."""

    def __init__(self, horizon: int, season, settings: AutoSettings | None = None):
        self.horizon = int(horizon)
        self.seasons = pipeline.as_seasons(season)
        # the shortest season: MASE's lag, the noise scale's and the windows' span
        self.season = self.seasons[0] if self.seasons else 1
        self.settings = (settings or AutoSettings()).check()
        self.season_inferred_ = False  # set by the Forecaster when it inferred the seasons
        self.skipped_: dict[str, str] = {}

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, values: list[np.ndarray], progress: Progress | None = None) -> AutoModel:
        """Fit on every series of `values`; `progress(member, done, total)` reports each
        member's fits (series for statistical members, epochs for networks)."""
        start = time.perf_counter()
        s, h = self.settings, self.horizon
        self._deadline = None if s.time_limit is None else time.monotonic() + float(s.time_limit)
        self._progress = progress
        self.skipped_: dict[str, str] = {}
        self._optional: set[str] = set()  # left out as designed (arima over its budget)
        span = max(h, self.season)
        self.lookbacks_ = sorted({max(2, int(round(f * span))) for f in s.lookbacks})
        typical = int(np.median([len(v) for v in values]))
        self.origins_ = selection.origins(len(values), h, typical)
        backtest = _Backtest.cut(values, h, self.seasons, self.origins_)
        if any(f in NETWORK_FAMILIES for f in s.families):
            build_kernels_in_background()  # its first load overlaps the statistical members
        with statistical.Workers(statistical.resolve_jobs(s.n_jobs)) as workers:
            stats = self._statistical_backtest(workers, values, backtest)
            nets = self._fit_networks(values, backtest)
        self._choose(backtest, nets, stats)
        self.notes_ = {
            "series": len(values),
            "padded_series": int(sum(len(v) < max(self.lookbacks_) for v in values)),
            "backtest_series": int(len(set(backtest.series.tolist()))),
            "backtest_origins": self.origins_,
            "statistical_unavailable": self.unavailable_,
            "seasons": list(self.seasons),
            "seasons_inferred": self.season_inferred_,
            "skipped": dict(self.skipped_),
        }
        cut = {k: v for k, v in self.skipped_.items() if k not in self._optional}
        if cut:
            log.warning("auto skipped or stopped: %s", "; ".join(
                f"{k}: {v}" for k, v in cut.items()))  # fmt: skip
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _left(self) -> float:
        return math.inf if self._deadline is None else self._deadline - time.monotonic()

    def _report(self, member: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(member, done, total)

    # -- statistical members ---------------------------------------------------------------------
    def _statistical_backtest(self, workers, values, backtest) -> dict[str, np.ndarray]:
        """Backtest forecasts of the statistical members that fit the budget."""
        s = self.settings
        self.statistical_, self.unavailable_ = [], None
        if "stat" not in s.families:
            return {}
        requested = list(dict.fromkeys([*s.statistical, "arima"]))
        available, self.unavailable_ = statistical.available(requested)
        if self.unavailable_:
            log.warning("auto runs without its statistical members: %s", self.unavailable_)
        histories = backtest.histories() if not backtest.empty else []
        fits = len(histories) + len(values)  # the backtest's, then predict's on every series
        out = {}
        for name in available:
            optional = name not in s.statistical  # arima: only when its probe says it is cheap
            budget = s.arima_budget if optional else math.inf
            budget = min(budget, _STAT_SHARE * self._left())
            if budget < math.inf:
                limit = min(_PROBE_SHARE * self._left(), max(budget, 1.0))
                each = statistical.probe(workers, name, values, self.seasons, self.horizon, limit)
                cost = each * fits / workers.n
                if cost > budget:
                    self._skip(name, optional, f"probed cost {_seconds(cost)} over its budget "
                               f"{_seconds(budget)}")  # fmt: skip
                    continue
            if histories:
                try:
                    started = time.monotonic()
                    out[name] = statistical.forecasts(
                        workers, name, histories, self.seasons, self.horizon, self._deadline,
                        lambda done, total, n=name: self._report(n, done, total),
                    )  # fmt: skip
                except statistical.TimeLimitReached:
                    self._skip(name, False, "stopped at the time limit")
                    continue
                log.info("auto member %s: %d backtest fits in %.1f s", name, len(histories),
                         time.monotonic() - started)  # fmt: skip
            self.statistical_.append(name)
        return out

    def _skip(self, name: str, quiet: bool, why: str) -> None:
        """Record a member left out; an optional one left out for cost says so at INFO only."""
        self.skipped_[name] = why
        if quiet:
            self._optional.add(name)
        log.info("auto member %s left out: %s", name, why)

    # -- networks -------------------------------------------------------------------------------
    def _fit_networks(self, values, backtest) -> dict[str, list[np.ndarray | None]]:
        """Train every network member; their backtest forecasts by family (None entries
        where there is no backtest)."""
        s, h = self.settings, self.horizon
        families = [f for f in s.families if f in NETWORK_FAMILIES]
        full = _Backtest.cut(values, h, self.seasons, 0) if s.refit else None
        self.members_ = []
        out: dict[str, list[np.ndarray | None]] = {}
        plan = [(f, lb) for f in families for lb in self._lookbacks(f)]
        per_lookback = len(s.loss_names) * len(s.seeds)
        left_members = len(plan) * per_lookback
        for family, lookback in plan:
            data, val = backtest.training_windows(lookback, s.max_windows_per_series)
            all_data = None
            if full is not None or val is None:
                full = full or _Backtest.cut(values, h, self.seasons, 0)
                all_data = full.training_windows(lookback, s.max_windows_per_series)[0]
            for loss in s.loss_names:
                for seed in s.seeds:
                    label = f"{family} lookback={lookback} loss={loss} seed={seed}"
                    share = self._left() / max(left_members, 1)
                    left_members -= 1
                    if share <= 0:
                        self._skip(label, False, "no time left")
                        continue
                    member, rel = self._fit_member(
                        family, lookback, loss, seed, data, val, all_data, share, label
                    )
                    self.members_.append(member)
                    out.setdefault(family, []).append(
                        None if rel is None else _to_original(rel, val[1])
                    )
        return out

    def _lookbacks(self, family: str) -> list[int]:
        """Input windows of a network family: the recipe's multiples of max(horizon, shortest
        season); sequence models also reach back over the longest season."""
        if family == "mlp" or len(self.seasons) < 2:
            return self.lookbacks_
        return sorted({*self.lookbacks_, max(self.lookbacks_[-1], self.seasons[-1])})

    def _train_settings(self, epochs: int, patience: int | None, seed: int, seconds: float):
        s = self.settings
        return training.TrainSettings(
            epochs=epochs, batch_size=s.batch_size, lr=s.lr, early_stopping=patience,
            seed=seed, progress=False, threads=s.threads, trainer="lean",
            time_limit=None if seconds == math.inf else max(seconds, 1e-3),
        )  # fmt: skip

    def _fit_member(self, family, lookback, loss, seed, data, val, all_data, seconds, label):
        """Early-stopped on the backtest windows `val`, then (settings.refit) trained again on
        `all_data`, every window of each series, for the epochs that did best; within
        `seconds` in all (half for each phase when there are two). Returns the member and its
        backtest forecasts relative to each window's level (None without a backtest)."""
        s = self.settings
        rel, epochs, start = None, s.epochs, time.monotonic()
        phases = 1 + int(val is not None and s.refit)
        total = s.epochs * phases
        model = self._network(family, lookback, seed)
        if val is not None:
            settings = self._train_settings(s.epochs, s.patience, seed, seconds / phases)
            history = ensemble.train_member(
                model, data, loss, settings, val, self._epoch_hook(label, 0, total)
            )
            epochs = int(np.argmin(history.history["val_loss"])) + 1
            rel = ensemble.member_forecast(model, val[0])
            if history.stopped_at_time_limit:
                self.skipped_[label] = f"stopped at its time share after {history.epochs} epochs"
        left = seconds - (time.monotonic() - start)
        if val is not None and s.refit and min(left, self._left()) <= 0:
            # out of time: keep the early-stopped network rather than pass the deadline
            self.skipped_[label + " refit"] = "no time left; the backtest-trained network is kept"
        elif s.refit or val is None:
            model = self._network(family, lookback, seed)
            ensemble.train_member(
                model, all_data, loss, self._train_settings(epochs, None, seed, left), None,
                self._epoch_hook(label, total - s.epochs, total),
            )  # fmt: skip
        log.info("auto member %s: %d epochs", label, epochs)
        self._report(label, total, total)  # early stopping ends a member before its last epoch
        return _Member(lookback, loss, seed, epochs, model.eval(), family), rel

    def _epoch_hook(self, label: str, offset: int, total: int):
        if self._progress is None:
            return None
        return lambda epoch, values: self._report(label, offset + epoch + 1, total)

    def _network(self, family: str, lookback: int, seed: int) -> Sequential:
        torch.manual_seed(seed)
        return ensemble.network(lookback, self.horizon, self.settings.units, family,
                                self.seasons)  # fmt: skip

    # -- choice ---------------------------------------------------------------------------------
    def _choose(self, backtest: _Backtest, nets: dict, stats: dict[str, np.ndarray]) -> None:
        """Backtest every combination of the network families' medians and the statistical
        members; keep the best one and its errors for the intervals."""
        self.residuals_ = np.zeros((0, self.horizon))
        self.interval_scheme_ = "signed_mase"
        families = [f for f in NETWORK_FAMILIES if f in nets]
        members = [*families, *self.statistical_]
        if not members:
            raise SeqcastError(
                "auto has no member left to forecast with (every one was skipped: "
                f"{self.skipped_}); raise time_limit or allow more families"
            )
        if backtest.empty or any(f is None for fam in families for f in nets[fam]):
            self.choice_ = "+".join(members)
            self.scores_ = []
            return
        forecasts = {f: np.median(np.stack(nets[f]), axis=0) for f in families} | stats
        candidates = ensemble.combinations(members)
        board = selection.score_candidates(
            forecasts, backtest.truth, backtest.mase_scale, candidates, self.settings.metric
        )
        self.choice_ = selection.choose(board, self.settings.metric)
        self.scores_ = board.to_dict("records")
        chosen = ensemble.combine(forecasts, candidates[self.choice_])
        self.residuals_ = backtest.scaled_errors(chosen)
        self.interval_scheme_ = "signed_mase"

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
        transforms = [pipeline.fit_transform(v, self.seasons) for v in values]
        chosen = self.choice_.split("+")
        forecasts: dict[str, np.ndarray] = {}
        for family in NETWORK_FAMILIES:
            if family in chosen:
                forecasts[family] = self._neural(values, transforms, family)
        stats = [m for m in chosen if m not in NETWORK_FAMILIES]
        with statistical.Workers(statistical.resolve_jobs(self.settings.n_jobs)) as workers:
            for name in stats:
                forecasts[name] = statistical.forecasts(workers, name, values, self.seasons, h)
        point = ensemble.combine(forecasts, chosen)
        out = {"y_hat": point[:, :horizon]}
        scale = np.array([_mase_scale(v, self.season) for v in values])[:, None]
        for level in levels:
            lo, hi = self._interval(point, values, transforms, scale, level)
            out[f"y_lo_{level}"], out[f"y_hi_{level}"] = lo[:, :horizon], hi[:, :horizon]
        return out

    def _interval(self, point, values, transforms, scale, level: int):
        """Bounds around `point` (series, horizon). "signed_mase": the backtest's signed
        errors in units of each series' MASE scale (`scale`: its in-sample seasonal-naive MAE),
        each tail its own conformal quantile, the band additive on the series' scale and
        never below 0 for a positive series. "abs_noise" (directories saved before it): absolute
        errors on the log / normalised scale over each series' noise level."""
        if self.interval_scheme_ == "abs_noise":
            radius = uncertainty.conformal_radius(self.residuals_, level)
            noise = np.array(
                [noise_scale(t, v, self.season) for t, v in zip(transforms, values, strict=True)]
            )
            return _band(point, radius[None, :] * noise[:, None], transforms)
        low, high = uncertainty.conformal_bounds(self.residuals_, level)
        lo, hi = point + low[None, :] * scale, point + high[None, :] * scale
        positive = np.array([bool(np.all(np.asarray(v) > 0)) for v in values])[:, None]
        return np.where(positive, np.maximum(lo, 0.0), lo), hi

    def _neural(self, values, transforms, family: str) -> np.ndarray:
        h = self.horizon
        members = [m for m in self.members_ if m.family == family]
        by_lookback = {}
        for lookback in sorted({m.lookback for m in members}):
            parts = [
                pipeline.windows(t.forward(v), lookback, h, np.array([len(v) - 1]))
                for v, t in zip(values, transforms, strict=True)
            ]
            x = np.concatenate([p[0] for p in parts])
            level = np.concatenate([p[3] for p in parts])
            by_lookback[lookback] = (x, level)
        comps = np.stack([t.future_components(h) for t in transforms])
        outs = []
        for member in members:
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
            "season": list(self.seasons) if len(self.seasons) > 1 else self.season,
            "settings": asdict(self.settings),
            "skipped": self.skipped_,
            "lookbacks": self.lookbacks_,
            "origins": self.origins_,
            "statistical": self.statistical_,
            "choice": self.choice_,
            "backtest_scores": self.scores_,
            "notes": self.notes_,
            "members": [
                {
                    "family": m.family, "lookback": m.lookback, "loss": m.loss, "seed": m.seed,
                    "epochs": m.epochs, "architecture": m.model.get_config(),
                }
                for m in self.members_
            ],
        }  # fmt: skip
        config["interval_scheme"] = self.interval_scheme_
        tensors = {"residuals": torch.as_tensor(self.residuals_)}
        for i, m in enumerate(self.members_):
            tensors |= {f"member{i}.{k}": v for k, v in m.model.state_dict().items()}
        return config, tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> AutoModel:
        known = {f.name for f in fields(AutoSettings)}
        # older directories: arima_max_points (now arima_budget), no families
        settings = {k: v for k, v in config["settings"].items() if k in known}
        for key in ("lookbacks", "losses", "seeds", "statistical", "families"):
            if settings.get(key) is not None:
                settings[key] = tuple(settings[key])
        model = cls(config["horizon"], config["season"], AutoSettings(**settings))
        model.skipped_ = dict(config.get("skipped", {}))
        model.season_inferred_ = bool(config["notes"].get("seasons_inferred", False))
        model.lookbacks_ = [int(v) for v in config["lookbacks"]]
        model.origins_ = int(config["origins"])
        model.statistical_ = list(config["statistical"])
        model.unavailable_ = config["notes"].get("statistical_unavailable")
        # older directories name the fully connected networks' median "nn"
        model.choice_ = "+".join("mlp" if m == "nn" else m for m in config["choice"].split("+"))
        model.scores_ = list(config["backtest_scores"])
        model.notes_ = dict(config["notes"])
        model.residuals_ = tensors["residuals"].double().numpy().reshape(-1, model.horizon)
        model.interval_scheme_ = config.get("interval_scheme", "abs_noise")
        model.members_ = []
        for i, spec in enumerate(config["members"]):
            net = Sequential.from_config(spec["architecture"])
            prefix = f"member{i}."
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
            model.members_.append(
                _Member(spec["lookback"], spec["loss"], spec["seed"], spec["epochs"], net.eval(),
                        spec.get("family", "mlp"))
            )  # fmt: skip
        return model

    def describe(self) -> str:
        best = self.scores_[0] if self.scores_ else None
        metric = self.settings.metric
        score = f" (backtest {_METRIC_NAMES[metric]} {best[metric]:.2f})" if best else ""
        counts = {}
        for m in self.members_:
            counts[m.family] = counts.get(m.family, 0) + 1
        nets = ", ".join(f"{n} {f}" for f, n in counts.items()) or "no networks"
        seasons = ",".join(map(str, self.seasons)) or "none"
        stats = [k for k in self.skipped_ if k in statistical.STATISTICAL]
        phases = len(self.skipped_) - len(stats)
        cut = ([f"left out {', '.join(stats)}"] if stats else []) + (
            [f"{phases} network phase(s) cut by the time limit"] if phases else []
        )
        skipped = f"; {'; '.join(cut)}" if cut else ""
        return (
            f"auto (seasons {seasons}): {nets} + {', '.join(self.statistical_) or 'no statistics'}"
            f"; chose {self.choice_}{score}{skipped}"
        )


_METRIC_NAMES = {"smape": "sMAPE", "mase": "MASE", "mape": "MAPE"}


def _seconds(value: float) -> str:
    return "unbounded" if value == math.inf else f"{value:.1f} s"


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
    seasons: tuple[int, ...]
    series: np.ndarray  # (windows,) which series each backtest window belongs to
    ends: np.ndarray  # (windows,) its last input index
    # each series' normalisation, from the points before its earliest origin
    transforms: dict[int, pipeline.SeriesTransform] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, v in enumerate(self.values):
            end = self._train_end(i)
            if end >= 1:
                self.transforms[i] = pipeline.fit_transform(v[:end], self.seasons)

    @property
    def season(self) -> int:
        """The shortest season (1 without one): MASE's and the noise scale's lag."""
        return self.seasons[0] if self.seasons else 1

    @classmethod
    def cut(cls, values: list[np.ndarray], horizon: int, seasons: tuple[int, ...],
            origins: int) -> _Backtest:  # fmt: skip
        series, ends = [], []
        for i, v in enumerate(values):
            first = len(v) - horizon - origins  # index of the earliest backtest target
            if origins and first >= pipeline.MIN_HISTORY:
                for k in range(origins):
                    series.append(i)
                    ends.append(first - 1 + k)
        return cls(values, horizon, origins, tuple(seasons), np.array(series, int),
                   np.array(ends, int))  # fmt: skip

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

    def scaled_errors(self, forecast: np.ndarray) -> np.ndarray:
        """Signed errors truth - forecast, each window's in units of its series' MASE scale
        (the in-sample seasonal-naive MAE of the history before the origin)."""
        return (self.truth - forecast) / self.mase_scale[:, None]


def noise_scale(t: pipeline.SeriesTransform, history: np.ndarray, season: int) -> float:
    """How much a series moves from one season (or step) to the next on the normalised scale:
    the mean |u_t - u_(t-m)| of its history (lag 1 below two seasons; 1 for a flat series).
    The interval scale of directories saved with the "abs_noise" scheme.

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
