"""Scale: training streamed from Parquet and prediction on Dask, at 10^3 .. 10^6 series.

    python benchmarks/scale.py --sizes 1000,10000,100000,1000000 --out benchmarks/scale.json

For each size N it writes two synthetic long-format data sets as Parquet parts of
`--series-per-part` series (integer time, seasonal: level + trend + a sine of period 7, 12
or 24 + noise; each series whole in one part):

- train: series of 50 to 500 points (uniform), for one epoch of the notes' LSTM
  (`Forecaster("lstm", window=24, horizon=12)`) streamed with `Forecaster.fit(DIR)`: up to
  `--windows-per-series` windows of each series, batch `--batch-size`. Reported: windows per
  second over the whole fit (part reads and validation included) and the process' peak RSS.
- predict: series of 100 points, forecast 12 steps by the model trained at the smallest
  size (so almost all series are unseen), through `seqcast.distributed.predict_parts` on a
  Dask LocalCluster of `--workers` single-threaded workers. Reported: wall time (cluster
  start-up included), series per CPU-minute (N / (wall x cores / 60)), the output row count
  (checked: N x 12) and the peak of the summed RSS of the driver and all of its child
  processes (the Dask nanny and worker processes), sampled every 0.1 s.

Each measurement runs in a child process, so one size's memory never counts for another.
JSON out, a short table last.

DDP rows (`--only ddp` runs just these, and keeps the size rows already in `--out`): one
epoch of the same LSTM on `--ddp-series` streamed series (parts of `--ddp-series-per-part`,
`--ddp-windows-per-series` windows a series), on the lean engine, on Lightning with one
process, on Lightning DDP with 2 processes (gloo, one thread each), and with two torchrun
agents meeting at a c10d rendezvous on localhost (two "nodes" of one process). Reported:
the windows trained on by all processes; the epoch's own time (rank 0's, from the fit's
history: start-up, the pass over the id column and calibration excluded); the child's whole
wall time (imports, the second process' start, the id-column pass and calibration
included); windows/s over each; the largest weight difference between ranks; and the
scaling efficiency of 2 processes, (windows/s with 2 / windows/s with 1) / 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WINDOW, HORIZON = 24, 12


# -- data ---------------------------------------------------------------------------------
def write_parts(path: Path, n: int, per_part: int, points: tuple[int, int], seed: int) -> int:
    """N synthetic series in Parquet parts of `per_part` series; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = 0
    for p, first in enumerate(range(0, n, per_part)):
        m = min(per_part, n - first)
        lengths = rng.integers(points[0], points[1] + 1, m)
        sid = np.repeat(np.arange(m, dtype=np.int32), lengths)
        t = np.arange(len(sid)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        period = rng.choice([7, 12, 24], m)[sid]
        level = rng.uniform(10, 1000, m)[sid]
        amp, trend = rng.uniform(0.05, 0.3, m)[sid] * level, rng.normal(0, 0.5, m)[sid]
        phase = rng.uniform(0, 2 * np.pi, m)[sid]
        y = level + trend * t + amp * np.sin(2 * np.pi * t / period + phase)
        y += rng.normal(0, 0.05, len(t)) * level
        names = pa.array([f"s{first + i:07d}" for i in range(m)])
        table = pa.table({
            "unique_id": pa.DictionaryArray.from_arrays(pa.array(sid), names),
            "ds": pa.array(t, pa.int64()),
            "y": pa.array(y, pa.float64()),
        })  # fmt: skip
        pq.write_table(table, path / f"part-{p:05d}.parquet")
        rows += len(t)
    return rows


# -- measurements, each in its own process --------------------------------------------------
def _peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child_train(data: str, model_out: str, per_series: int, batch: int) -> dict:
    import torch

    from seqcast import Forecaster

    torch.set_num_threads(1)
    fc = Forecaster("lstm", window=WINDOW, horizon=HORIZON, epochs=1, batch_size=batch, seed=0)
    start = time.perf_counter()
    fc.fit(data, windows_per_series=per_series)
    seconds = time.perf_counter() - start
    if model_out:
        fc.save(model_out)
    return {
        "windows": int(fc.windows_seen_),
        "seconds": seconds,
        "windows_per_s": fc.windows_seen_ / seconds,
        "loss": fc.history_.history["loss"][-1],
        "peak_rss_bytes": _peak_rss_self(),
    }


def child_ddp(data: str, per_series: int, batch: int, devices: int, nodes: int, trainer: str):
    """One epoch from `data` on `devices` x `nodes` processes; rank 0 prints the result."""
    import torch

    from seqcast import Forecaster, training

    options = {"trainer": trainer, "accelerator": "cpu", "threads": 1}
    if trainer == "lightning":
        options |= {"devices": devices, "num_nodes": nodes}
        options |= {"strategy": "ddp"} if devices * nodes > 1 else {}
    fc = Forecaster("lstm", window=WINDOW, horizon=HORIZON, epochs=1, batch_size=batch, seed=0,
                    train_options=options)  # fmt: skip
    start = time.perf_counter()
    fc.fit(data, windows_per_series=per_series)
    seconds = time.perf_counter() - start
    windows, world = torch.tensor(float(fc.windows_seen_)), 1
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(windows)  # every process' windows
        world = dist.get_world_size()
    result = {
        "trainer": trainer, "processes": world, "windows": int(windows),
        "fit_seconds": seconds, "epoch_seconds": fc.history_.seconds_per_epoch[0],
        "loss": fc.history_.history["loss"][-1], "peak_rss_bytes": _peak_rss_self(),
    }  # fmt: skip
    if dist.is_available() and dist.is_initialized():
        diffs = []
        for t in fc.model_.state_dict().values():  # max minus min over ranks: 0 when equal
            hi, lo = t.detach().clone(), -t.detach().clone()
            dist.all_reduce(hi, dist.ReduceOp.MAX)
            dist.all_reduce(lo, dist.ReduceOp.MAX)
            diffs.append(float((hi + lo).abs().max()))
        result["max_weight_difference_between_ranks"] = max(diffs)
        dist.barrier()
    if training.is_global_zero():
        print(json.dumps(result), flush=True)


def child_predict(model: str, data: str, out: str, workers: int) -> dict:
    from seqcast.distributed import predict_parts

    start = time.perf_counter()
    rows = predict_parts(model, data, out, workers=workers)
    return {"rows": rows, "seconds": time.perf_counter() - start}


def run_child(args: list[str], timeout: float) -> tuple[dict, int]:
    """(the child's JSON result, the peak summed RSS of it and its descendants)."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    root, peak, deadline = psutil.Process(proc.pid), 0, time.monotonic() + timeout
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{args[0]} ran past {timeout} s")
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak


def run_ddp(args: argparse.Namespace, root: Path) -> dict:
    """The DDP rows on one streamed data set (see the module's docstring)."""
    data = root / f"ddp-{args.ddp_series}"
    shutil.rmtree(data, ignore_errors=True)
    write_parts(data, args.ddp_series, args.ddp_series_per_part, (50, 500), seed=args.ddp_series)
    common = [str(data), str(args.ddp_windows_per_series), str(args.batch_size)]
    rows = {}
    for name, devices, trainer in (("lean, 1 process", 1, "lean"),
                                   ("lightning, 1 process", 1, "lightning"),
                                   ("lightning ddp, 2 processes", 2, "lightning")):  # fmt: skip
        start = time.perf_counter()
        result, tree = run_child(["_ddp", *common, str(devices), "1", trainer], timeout=1800)
        rows[name] = result | {"wall_seconds": time.perf_counter() - start,
                               "peak_rss_tree_bytes": tree}  # fmt: skip
    rows["torchrun, 2 nodes x 1 process"] = run_torchrun(common)
    for row in rows.values():
        row["windows_per_s_epoch"] = row["windows"] / row["epoch_seconds"]
        row["windows_per_s_wall"] = row["windows"] / row["wall_seconds"]
    one, two = rows["lightning, 1 process"], rows["lightning ddp, 2 processes"]
    shutil.rmtree(data, ignore_errors=True)
    return {
        "series": args.ddp_series, "series_per_part": args.ddp_series_per_part,
        "windows_per_series": args.ddp_windows_per_series, "rows": rows,
        "scaling_efficiency_epoch": two["windows_per_s_epoch"] / one["windows_per_s_epoch"] / 2,
        "scaling_efficiency_wall": two["windows_per_s_wall"] / one["windows_per_s_wall"] / 2,
    }  # fmt: skip


def run_torchrun(common: list[str]) -> dict:
    """Two torchrun agents (two "nodes" of one process) at a c10d rendezvous on localhost,
    the README's command; the result is rank 0's line."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
               f"localhost:{port}", "--rdzv-id", "scale", __file__, "_ddp", *common, "1", "2",
               "lightning"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env) for _ in range(2)]  # fmt: skip
    outputs = [node.communicate(timeout=1800)[0] for node in nodes]
    if any(node.returncode for node in nodes):
        raise RuntimeError(f"torchrun failed: {[n.returncode for n in nodes]}")
    lines = [line for out in outputs for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) | {"wall_seconds": time.perf_counter() - start,
                                    "command": " ".join(command[2:])}  # fmt: skip


# -- the driver ---------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--data", default="/tmp/seqcast-scale", help="where the parts are written")
    ap.add_argument("--series-per-part", type=int, default=5000)
    ap.add_argument("--windows-per-series", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--out", default="benchmarks/scale.json")
    ap.add_argument("--only", choices=["sizes", "ddp"], help="run only these rows")
    ap.add_argument("--ddp-series", type=int, default=10000)
    ap.add_argument("--ddp-series-per-part", type=int, default=1000)
    ap.add_argument("--ddp-windows-per-series", type=int, default=16)
    args = ap.parse_args()
    if args.only == "ddp":
        root = Path(args.data)
        root.mkdir(parents=True, exist_ok=True)
        out = Path(args.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        results["ddp"] = run_ddp(args, root) | {
            "machine": {"cores": os.cpu_count(), "load_1min_at_end": os.getloadavg()[0]}
        }
        out.write_text(json.dumps(results, indent=1))
        _ddp_table(results["ddp"])
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    model = root / "model"
    results = {
        "machine": {"cores": os.cpu_count(), "load_1min_at_start": os.getloadavg()[0]},
        "settings": vars(args),
        "sizes": [],
    }
    for n in sizes:
        row: dict = {"series": n}
        if not args.skip_train or not model.exists():
            train = root / f"train-{n}"
            start = time.perf_counter()
            row["train_rows"] = write_parts(train, n, args.series_per_part, (50, 500), seed=n)
            row["train_generate_s"] = time.perf_counter() - start
            keep_model = str(model) if not model.exists() else ""
            result, tree = run_child(
                ["_train", str(train), keep_model, str(args.windows_per_series),
                 str(args.batch_size)], timeout=7200,
            )  # fmt: skip
            row["train"] = result | {"peak_rss_tree_bytes": tree}
            if not args.keep:
                shutil.rmtree(train)
        data, out = root / f"predict-{n}", root / f"forecast-{n}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        row["predict_rows_in"] = write_parts(data, n, args.series_per_part, (100, 100), seed=n + 1)
        row["predict_generate_s"] = time.perf_counter() - start
        result, tree = run_child(
            ["_predict", str(model), str(data), str(out), str(args.workers)], timeout=3600
        )
        assert result["rows"] == n * HORIZON, result
        cores = os.cpu_count() or 1
        row["predict"] = result | {
            "rows_checked": True,
            "series_per_cpu_minute": n / (result["seconds"] * cores / 60),
            "peak_rss_tree_bytes": tree,
        }
        if not args.keep:
            shutil.rmtree(data)
            shutil.rmtree(out)
        results["sizes"].append(row)
        Path(args.out).write_text(json.dumps(results, indent=1))
    results["machine"]["load_1min_at_end"] = os.getloadavg()[0]
    if args.only != "sizes":
        results["ddp"] = run_ddp(args, root)
    Path(args.out).write_text(json.dumps(results, indent=1))
    _table(results["sizes"])
    if "ddp" in results:
        _ddp_table(results["ddp"])


def _table(rows: list[dict]) -> None:
    gb = 1024**3
    print("| series | train windows/s | train peak RSS GB | predict s | series/CPU-min | "
          "predict peak RSS GB (sum) | rows |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t, p = r.get("train", {}), r["predict"]
        w = f"{t['windows_per_s']:.0f}" if t else "-"
        m = f"{t['peak_rss_bytes'] / gb:.2f}" if t else "-"
        print(f"| {r['series']:,} | {w} | {m} | {p['seconds']:.1f} | "
              f"{p['series_per_cpu_minute']:,.0f} | {p['peak_rss_tree_bytes'] / gb:.2f} | "
              f"{p['rows']:,} |")  # fmt: skip


def _ddp_table(ddp: dict) -> None:
    print(f"| {ddp['series']:,} series | windows | epoch s | epoch windows/s | wall s | "
          "wall windows/s | loss |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in ddp["rows"].items():
        print(f"| {name} | {r['windows']:,} | {r['epoch_seconds']:.1f} | "
              f"{r['windows_per_s_epoch']:,.0f} | {r['wall_seconds']:.1f} | "
              f"{r['windows_per_s_wall']:,.0f} | {r['loss']:.3f} |")  # fmt: skip
    print(
        f"scaling efficiency, 2 processes: epoch {ddp['scaling_efficiency_epoch']:.2f}, "
        f"wall {ddp['scaling_efficiency_wall']:.2f}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_train":
        a = sys.argv[2:]
        print(json.dumps(child_train(a[0], a[1], int(a[2]), int(a[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_ddp":
        a = sys.argv[2:]
        child_ddp(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), a[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_predict":
        a = sys.argv[2:]
        print(json.dumps(child_predict(a[0], a[1], a[2], int(a[3]))))
    else:
        main()
