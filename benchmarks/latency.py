"""Single-series prediction latency of a saved LSTM `Forecaster`, loaded in a fresh process.

    python benchmarks/latency.py --out latency.json
    options: --strategies recursive,direct,seq2seq  --repeats 200  --epochs 5  --threads 1

For each strategy, a `Forecaster("lstm", window=24, horizon=12, season=12)` (two LSTM(20)
layers and a Dense head, the defaults) is fitted briefly (`--epochs`) on the airline
passengers and saved to a temporary directory. A fresh Python process then measures, on
`--threads` torch threads (default 1; OMP_NUM_THREADS and MKL_NUM_THREADS are set too):

- `import_ms`        `import seqcast` (torch's own import included, and `import_torch_ms`
                     apart: the time of `import torch` alone, done first);
- `load_ms`          `Forecaster.load(dir)`;
- `first_predict_ms` the first `predict()` (horizon 12, the saved context, no intervals);
- `median_ms`, `p90_ms` over `--repeats` further `predict()` calls.

and the same figures for `predict(intervals=[80, 95])` (conformal intervals) and for
`predict(frame)`, the 144 months passed in again as a new long frame (so the call validates and
scales them, as for data the model has not seen; the forecast is the same). Those two come after
the plain calls, so their first call is warm, not a cold start. Timings are wall-clock
`time.perf_counter` per call; nothing is averaged away. The 2 ms target is for `predict()`
after load (the `call` "predict()" rows).

JSON (`--out`): {"settings": {...}, "rows": [one object per strategy and interval setting]};
a short table is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STRATEGIES = ("recursive", "direct", "seq2seq")
LEVELS = [80, 95]
#: the timed calls, in the order they run (the frame is filled in by the timing process)
CALLS = {
    "predict()": {},
    "predict(intervals=[80, 95])": {"intervals": LEVELS},
    "predict(frame)": {},
}
WINDOW, HORIZON, SEASON = 24, 12, 12


def fit_and_save(strategy: str, epochs: int, seed: int, path: Path) -> float:
    """Fit the benchmark's LSTM forecaster with `strategy` and save it; returns fit seconds."""
    from seqcast.datasets import airline_passengers
    from seqcast.forecast import Forecaster

    fc = Forecaster(
        "lstm",
        window=WINDOW,
        horizon=HORIZON,
        season=SEASON,
        strategy=strategy,
        epochs=epochs,
        seed=seed,
    )
    fc.fit(airline_passengers())
    fc.save(path)
    return fc.fit_seconds_


def _timed(call, repeats: int) -> tuple[float, list[float]]:
    """(first call ms, list of ms of `repeats` later calls)."""
    start = time.perf_counter()
    call()
    first = (time.perf_counter() - start) * 1e3
    later = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        later.append((time.perf_counter() - start) * 1e3)
    return first, later


def _p90(values: list[float]) -> float:
    return (
        statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    )


def child(path: str, repeats: int, threads: int) -> dict[str, Any]:
    """Runs in the fresh process: import, load, first call, then the repeated calls."""
    start = time.perf_counter()
    import torch

    torch_ms = (time.perf_counter() - start) * 1e3
    import seqcast

    import_ms = (time.perf_counter() - start) * 1e3
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fc = seqcast.Forecaster.load(path)
    load_ms = (time.perf_counter() - start) * 1e3
    out: dict[str, Any] = {"import_torch_ms": torch_ms, "import_ms": import_ms, "load_ms": load_ms}
    frame = seqcast.datasets.airline_passengers()
    for call, kwargs in CALLS.items():
        kwargs = {"data": frame} if call == "predict(frame)" else kwargs
        first, later = _timed(lambda kwargs=kwargs: fc.predict(**kwargs), repeats)
        out[call] = {
            "first_predict_ms": first,
            "median_ms": statistics.median(later),
            "p90_ms": _p90(later),
        }
    return out


def measure(path: Path, repeats: int, threads: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(path),
            "--repeats",
            str(repeats),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the timing process failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--repeats", type=int, default=200, help="timed predict() calls")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (brief)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads when timing")
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: the timing process
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.child:
        print(json.dumps(child(args.child, args.repeats, args.threads)))
        return
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategy {unknown}; expected some of {', '.join(STRATEGIES)}")

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqcast_latency_") as tmp:
        for strategy in strategies:
            path = Path(tmp) / strategy
            fit_s = fit_and_save(strategy, args.epochs, args.seed, path)
            got = measure(path, args.repeats, args.threads)
            for call in CALLS:
                row = {
                    "strategy": strategy,
                    "call": call,
                    "import_torch_ms": got["import_torch_ms"],
                    "import_ms": got["import_ms"],
                    "load_ms": got["load_ms"],
                    **got[call],
                    "repeats": args.repeats,
                    "fit_seconds": fit_s,
                }
                rows.append(row)
            medians = ", ".join(f"{c} {got[c]['median_ms']:.3f}" for c in CALLS)
            print(f"{strategy:9} median ms: {medians}", flush=True)
    settings = {
        "model": "lstm",
        "window": WINDOW,
        "horizon": HORIZON,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "seqcast_no_compile": os.environ.get("SEQCAST_NO_COMPILE", ""),
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": settings, "rows": rows}, f, indent=1)
    print(
        f"\n{'strategy':9} {'call':27} {'import':>7} {'load':>6} {'first':>6} "
        f"{'median':>7} {'p90':>7}   (ms)"
    )
    for r in rows:
        print(
            f"{r['strategy']:9} {r['call']:27} {r['import_ms']:7.0f} {r['load_ms']:6.1f} "
            f"{r['first_predict_ms']:6.1f} {r['median_ms']:7.3f} {r['p90_ms']:7.3f}"
        )


if __name__ == "__main__":
    main()
