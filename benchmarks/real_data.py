"""seqcast's baselines and RNN/CNN models beside statsforecast's SeasonalNaive, AutoETS and
AutoARIMA on real data, with the last part of every series held out.

    python benchmarks/real_data.py [--datasets airline12,sunspots] [--models linear,gru]
        [--peers SeasonalNaive,AutoETS,AutoARIMA | none] [--seeds 0,1,2] [--epochs 200]
        [--quick] [--out real_data.json]

Data sets (holdout = the last points, never seen by any model, scaler or selection step):
  airline12 / airline24  monthly airline passengers, last 12 / 24 months, season 12
  sunspots               statsmodels' yearly sunspots 1700-2008, last 20 years, season 11
                         (the ~11-year solar cycle: used for MASE, seasonal naive and as the
                         season_length of AutoETS / AutoARIMA)
  macro                  statsmodels' macrodata, quarterly realgdp, last 8 quarters, season 4;
                         seqcast models get realcons, realinv, unemp as covariates (past values
                         only: the input window ends where the forecast starts); statsforecast
                         models are univariate on realgdp (exogenous regressors would need the
                         held-out quarters' covariate values)
  macro_nocov            the same, seqcast models without covariates (does the extra input help?)

seqcast settings (fixed up front, identical for every model): direct strategy, window 24
(airline: 2 seasons), 22 (sunspots: 2 cycles), 12 (macro: 3 years), 20 units, Adam lr 1e-3,
batch 32, `--epochs` (default 200, no early stopping), standard scaler + local level,
validation_size 0.2 (0.3 for airline24, so that conformal intervals are calibrated on 13
windows rather than 1), 80% conformal intervals. Learned models run once per seed; their
metrics are the mean over seeds. torch runs on `--threads` (default 1) thread: these models
are tiny, and on shared cores more threads only contend.

Ensemble (seqcast row "ensemble_top3"): the mean forecast (and mean interval bounds) of the
three learned models with the lowest backtest MAE on the *training* part: 3 origins, `h // 4`
steps apart, whose targets all lie in the validation split (never trained on). Each member's
forecast is itself the mean over seeds. The test part plays no role in the choice.

Every row is scored by the same function (`seqcast.forecast.score`). JSON is a list of rows;
a short table per data set, sorted by MASE, and a summary line per data set are printed last.
Without statsforecast the seqcast rows still run and the peers are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from seqcast.data import frames
from seqcast.data.datasets import airline_passengers
from seqcast.forecast import Forecaster, score
from seqcast.models import BASELINES, list_models

PEERS = ("SeasonalNaive", "AutoETS", "AutoARIMA")
METRICS = ("mae", "rmse", "smape", "mase", "coverage_80")
MACRO_COVARIATES = ["realcons", "realinv", "unemp"]


@dataclass(frozen=True)
class Dataset:
    name: str
    holdout: int
    season: int
    window: int
    load: Callable[[], pd.DataFrame]
    covariates: list[str] = field(default_factory=list)
    validation_size: float = 0.2


def _sunspots() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    data = data[(data["YEAR"] >= 1700) & (data["YEAR"] <= 2008)]
    ds = pd.to_datetime(data["YEAR"].astype(int).astype(str), format="%Y")
    return pd.DataFrame(
        {
            "unique_id": "sunspots",
            "ds": ds.to_numpy(),
            "y": data["SUNACTIVITY"].to_numpy(np.float64),
        }
    )


def _macro() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.macrodata.load_pandas().data
    ds = pd.PeriodIndex.from_fields(
        year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q"
    ).to_timestamp()
    frame = pd.DataFrame({"unique_id": "realgdp", "ds": ds, "y": data["realgdp"].to_numpy()})
    for col in MACRO_COVARIATES:
        frame[col] = data[col].to_numpy(np.float64)
    return frame


DATASETS = {
    "airline12": Dataset("airline12", 12, 12, 24, airline_passengers),
    "airline24": Dataset("airline24", 24, 12, 24, airline_passengers, validation_size=0.3),
    "sunspots": Dataset("sunspots", 20, 11, 22, _sunspots),
    "macro": Dataset("macro", 8, 4, 12, _macro, covariates=MACRO_COVARIATES),
    "macro_nocov": Dataset("macro_nocov", 8, 4, 12, _macro),
}
LEARNED = [m for m in list_models() if m not in BASELINES]


# -- seqcast --------------------------------------------------------------------------------
def _forecaster(ds: Dataset, name: str, seed: int, epochs: int) -> Forecaster:
    return Forecaster(
        name,
        window=ds.window,
        horizon=ds.holdout,
        strategy="direct",
        season=ds.season,
        units=20,
        covariates=ds.covariates or None,
        epochs=epochs,
        batch_size=32,
        validation_size=ds.validation_size,
        seed=seed,
    )


def _load_options(ds: Dataset) -> dict:
    # a long frame with covariate columns must name them, or `fit` keeps only unique_id/ds/y
    if not ds.covariates:
        return {}
    return {"time_col": "ds", "target": "y", "id_col": "unique_id", "covariates": ds.covariates}


def run_seqcast(
    ds: Dataset, name: str, train: pd.DataFrame, test: pd.DataFrame, seeds: list[int], epochs: int
) -> tuple[dict, pd.DataFrame, float]:
    """(row, seed-mean forecast, seed-mean backtest MAE on the training part)."""
    opts = _load_options(ds)
    seeds = seeds[:1] if name in BASELINES else seeds  # nothing random to average
    scores, preds, backtests, secs = [], [], [], []
    for seed in seeds:
        fc = _forecaster(ds, name, seed, epochs).fit(train, **opts)
        secs.append(fc.fit_seconds_)
        pred = fc.predict(intervals=[80])
        preds.append(pred)
        scores.append(score(pred, test, train, ds.season, 80))
        bt = fc.backtest(train, windows=3, step=max(1, ds.holdout // 4), **opts)
        backtests.append(float(np.mean(np.abs(bt["y"] - bt["y_hat"]))))
    row = {m: float(np.mean([s[m] for s in scores])) for m in METRICS}
    row["width_80"] = float(np.mean([s["width_80"] for s in scores]))
    row["mase_sd"] = float(np.std([s["mase"] for s in scores]))
    row["fit_seconds"] = float(np.mean(secs))
    row["backtest_mae"] = float(np.mean(backtests))
    row["seeds"] = list(seeds)
    mean_pred = preds[0].copy()
    for col in ("y_hat", "y_lo_80", "y_hi_80"):
        mean_pred[col] = np.mean([p[col].to_numpy() for p in preds], axis=0)
    return row, mean_pred, row["backtest_mae"]


def ensemble_row(
    ds: Dataset,
    members: dict[str, tuple[pd.DataFrame, float, float]],
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 3,
) -> dict | None:
    """Mean of the `k` learned models with the lowest training-part backtest MAE."""
    ranked = sorted(members, key=lambda n: members[n][1])[:k]
    if len(ranked) < 2:
        return None
    pred = members[ranked[0]][0].copy()
    for col in ("y_hat", "y_lo_80", "y_hi_80"):
        pred[col] = np.mean([members[n][0][col].to_numpy() for n in ranked], axis=0)
    s = score(pred, test, train, ds.season, 80)
    row = {m: float(s[m]) for m in METRICS}
    row["width_80"] = float(s["width_80"])
    row["fit_seconds"] = float(sum(members[n][2] for n in ranked))
    row["note"] = "members (by training-part backtest MAE): " + ", ".join(ranked)
    return row


# -- statsforecast --------------------------------------------------------------------------
def _peer_model(name: str, season: int):
    from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

    return {
        "SeasonalNaive": lambda: SeasonalNaive(season_length=season),
        "AutoETS": lambda: AutoETS(season_length=season),
        "AutoARIMA": lambda: AutoARIMA(season_length=season),
    }[name]()


def statsforecast_version() -> str | None:
    try:
        import statsforecast
    except ImportError:
        return None
    return statsforecast.__version__


def run_peer(ds: Dataset, name: str, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    from statsforecast import StatsForecast

    freq = pd.infer_freq(pd.DatetimeIndex(train["ds"]))
    sf = StatsForecast(models=[_peer_model(name, ds.season)], freq=freq, n_jobs=1)
    start = time.perf_counter()
    out = sf.forecast(df=train[["unique_id", "ds", "y"]], h=ds.holdout, level=[80])
    secs = time.perf_counter() - start
    pred = pd.DataFrame(
        {
            "unique_id": out["unique_id"].astype(str).to_numpy(),
            "ds": out["ds"].to_numpy().astype(train["ds"].dtype),
            "y_hat": out[name].to_numpy(np.float64),
            "y_lo_80": out[f"{name}-lo-80"].to_numpy(np.float64),
            "y_hi_80": out[f"{name}-hi-80"].to_numpy(np.float64),
        }
    )
    s = score(pred, test, train, ds.season, 80)
    row = {m: float(s[m]) for m in METRICS}
    row.update(width_80=float(s["width_80"]), fit_seconds=secs)
    return row


def _warm_up(peers: list[str], have_sf: bool) -> None:
    """Pay one-off costs (Lightning import, compiled kernels, numba JIT) outside the timings."""
    data = airline_passengers()
    for name in ("gru", "lstm", "wavenet"):
        Forecaster(name, window=12, horizon=4, epochs=1).fit(data)
    if have_sf and peers:
        from statsforecast import StatsForecast

        models = [_peer_model(p, 12) for p in peers]
        StatsForecast(models=models, freq="MS", n_jobs=1).forecast(df=data, h=4, level=[80])


# -- driver ---------------------------------------------------------------------------------
def _base(ds: Dataset, model: str, library: str) -> dict:
    return {"dataset": ds.name, "holdout": ds.holdout, "model": model, "library": library}


def run(
    datasets: list[str],
    models: list[str],
    peers: list[str],
    seeds: list[int],
    epochs: int,
    ensemble: bool,
    log: Callable[[str], None],
) -> list[dict]:
    sf_version = statsforecast_version()
    _warm_up(peers, sf_version is not None)
    rows: list[dict] = []
    for key in datasets:
        ds = DATASETS[key]
        try:
            frame = ds.load()
        except ImportError as err:
            log(f"{key}: skipped ({err})")
            continue
        train, test = frames.split_by_time(frame, ds.holdout)
        config = {
            "window": ds.window,
            "horizon": ds.holdout,
            "season": ds.season,
            "strategy": "direct",
            "units": 20,
            "epochs": epochs,
            "batch_size": 32,
            "validation_size": ds.validation_size,
            "covariates": ds.covariates,
        }
        members: dict[str, tuple[pd.DataFrame, float, float]] = {}
        for name in models:
            row, pred, bt = run_seqcast(ds, name, train, test, seeds, epochs)
            rows.append({**_base(ds, name, "seqcast"), **row, "config": config})
            if name not in BASELINES:
                members[name] = (pred, bt, row["fit_seconds"])
            log(f"{key:12s} {name:16s} mase {row['mase']:.3f} ({row['fit_seconds']:.1f} s)")
        if ensemble:
            row = ensemble_row(ds, members, train, test)
            if row is not None:
                rows.append({**_base(ds, "ensemble_top3", "seqcast"), **row, "config": config})
        for name in peers:
            base = _base(ds, name, "statsforecast")
            if sf_version is None:
                rows.append(
                    {
                        **base,
                        **dict.fromkeys([*METRICS, "fit_seconds"]),
                        "status": "skipped: statsforecast is not installed",
                    }
                )
                continue
            row = run_peer(ds, name, train, test)
            rows.append(
                {**base, **row, "config": {"season_length": ds.season, "statsforecast": sf_version}}
            )
            log(f"{key:12s} {name:16s} mase {row['mase']:.3f} ({row['fit_seconds']:.1f} s)")
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def tables(rows: list[dict]) -> str:
    lines = []
    for key in dict.fromkeys(r["dataset"] for r in rows):
        part = [r for r in rows if r["dataset"] == key]
        part.sort(key=lambda r: math.inf if r.get("mase") is None else r["mase"])
        lines.append(f"\n{key} (holdout {part[0]['holdout']}), sorted by MASE")
        lines.append(
            f"  {'model':16s} {'library':13s} {'MAE':>9s} {'RMSE':>9s} {'sMAPE':>6s} "
            f"{'MASE':>6s} {'cov80':>5s} {'fit_s':>6s}"
        )
        for r in part:
            if r.get("status"):
                lines.append(f"  {r['model']:16s} {r['library']:13s} {r['status']}")
                continue
            lines.append(
                f"  {r['model']:16s} {r['library']:13s} {_fmt(r['mae'], '9.2f')} "
                f"{_fmt(r['rmse'], '9.2f')} {_fmt(r['smape'], '6.2f')} {_fmt(r['mase'], '6.3f')} "
                f"{_fmt(r['coverage_80'], '5.2f')} {_fmt(r['fit_seconds'], '6.1f')}"
            )
    lines.append("")
    lines.extend(summaries(rows))
    return "\n".join(lines)


def summaries(rows: list[dict]) -> list[str]:
    out = []
    for key in dict.fromkeys(r["dataset"] for r in rows):
        part = [r for r in rows if r["dataset"] == key]
        ours = [r for r in part if r["library"] == "seqcast" and r["model"] != "ensemble_top3"]
        best = min(ours, key=lambda r: r["mase"])
        peer = {r["model"]: r.get("mase") for r in part if r["library"] == "statsforecast"}
        vs = ", ".join(f"{p} {_peer_mase(peer, p)}" for p in PEERS)
        line = f"{key}: best seqcast model {best['model']} MASE {best['mase']:.3f} vs {vs}"
        ens = [r for r in part if r["model"] == "ensemble_top3"]
        if ens:
            line += f"; ensemble_top3 (chosen without the test part) {ens[0]['mase']:.3f}"
        out.append(line)
    return out


def _peer_mase(peer: dict, name: str) -> str:
    if name not in peer:
        return "not run"
    return "skipped" if peer[name] is None else f"{peer[name]:.3f}"


def _names(text: str, known: list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; expected some of {', '.join(known)}")
    return names


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--models", default=",".join(list_models()), help="seqcast models (comma-separated)"
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="statsforecast models, or 'none'")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--no-ensemble", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 epochs, first seed only (for tests: numbers mean nothing)",
    )
    parser.add_argument("--out", help="write the JSON rows here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        datasets = _names(args.datasets, list(DATASETS), "data set")
        models = _names(args.models, list_models(), "model")
        peers = _names(args.peers, list(PEERS), "peer")
    except ValueError as err:
        parser.error(str(err))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    epochs = args.epochs
    if args.quick:
        seeds, epochs = seeds[:1], 3
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    rows = run(datasets, models, peers, seeds, epochs, not args.no_ensemble, log)
    log(f"total {time.perf_counter() - start:.0f} s")
    text = json.dumps(_clean(rows), indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    print(tables(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
