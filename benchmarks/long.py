"""Long sequences: training cost and peak memory against T for WaveNet, MinGRU and GRU.

    python benchmarks/long.py [--quick] [--repeats 7] [--threads 1] [--out long.json]

Models, all 1 feature -> 20 units -> 1 output per step, batch 8, random sequences:
- wavenet: WaveNet(20) (dilations (1, 2, 4, 8) * 2) + a 1x1 Conv1D head;
- min_gru: MinGRU(20, return_sequences=True) (log-space parallel scan) + Dense(1);
- gru: GRU(20, return_sequences=True) through seqcast's "auto" path (on CPU the compiled C++
  recurrence; the path used is recorded) + Dense(1), the sequential baseline;
- at T = 4096 only: gru_torch, the same GRU through torch.nn.GRU (implementation="torch"), and
  min_gru_loop, the same MinGRU run by its Python loop (implementation="sequential").
T in 1024, 2048, 4096, 8192, 16384 (--quick: 1024 and 4096, fewer repeats).

Time: median seconds of one forward+backward (MSE loss, all parameter gradients; no
optimiser step) over --repeats runs after two warm-up runs.
Memory: each (model, T) runs in a fresh subprocess; peak_mb is its peak resident set size
(getrusage ru_maxrss), and extra_mb that peak minus the same process's high-water mark just
before the first full-length pass (after import, build, a T=16 warm-up and making the data):
the memory the forward+backward itself needed. (tracemalloc does not see torch's allocations.)

Threads: --threads (default 1) intra-op threads. The machine these notes run on is shared: with
other jobs running, 2 threads measured ~5x slower than 1 (threads spinning at barriers), so 1
thread gives the reproducible number. The load average before and after is recorded.

The check "MinGRU >= 10x faster than a sequential GRU at T = 4096" compares min_gru with gru.
JSON (all rows, settings, load) is printed (or written with --out), then a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

LENGTHS = (1024, 2048, 4096, 8192, 16384)
QUICK_LENGTHS = (1024, 4096)
BATCH, UNITS, CHECK_T, CLAIM = 8, 20, 4096, 10.0
MODELS = ("wavenet", "min_gru", "gru")


# -- one (model, T) in this process ---------------------------------------------------------
def _make(name: str):
    from seqcast.layers import GRU, Conv1D, Dense, MinGRU, WaveNet
    from seqcast.sequential import Sequential

    body = {
        "wavenet": lambda: [WaveNet(UNITS), Conv1D(1, 1)],
        "min_gru": lambda: [MinGRU(UNITS, return_sequences=True), Dense(1)],
        "min_gru_loop": lambda: [
            MinGRU(UNITS, return_sequences=True, implementation="sequential"),
            Dense(1),
        ],
        "gru": lambda: [GRU(UNITS, return_sequences=True), Dense(1)],
        "gru_torch": lambda: [GRU(UNITS, return_sequences=True, implementation="torch"), Dense(1)],
    }[name]()
    return Sequential(body, input_shape=(None, 1))


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(name: str, steps: int, repeats: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _make(name)

    def once(x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        F.mse_loss(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    once(torch.randn(BATCH, 16, 1), torch.randn(BATCH, 16, 1))  # loads kernels, warms up
    x, y = torch.randn(BATCH, steps, 1), torch.randn(BATCH, steps, 1)
    before = _max_rss_mb()
    for _ in range(2):
        once(x, y)
    samples = [once(x, y) for _ in range(repeats)]
    peak = _max_rss_mb()
    row = {
        "model": name, "T": steps, "seconds": statistics.median(samples),
        "min_seconds": min(samples), "repeats": repeats,
        "peak_mb": round(peak, 1), "extra_mb": round(peak - before, 1),
        "params": model.count_params(),
    }  # fmt: skip
    if name.startswith("gru"):
        row["path"] = model.layers[0]._path(x, None)
    return row


# -- the driver -----------------------------------------------------------------------------
def run_one(name: str, steps: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, str(steps),
           "--repeats", str(repeats), "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return {"model": name, "T": steps, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(lengths: tuple[int, ...], repeats: int, threads: int) -> dict:
    import torch

    load_before = os.getloadavg()
    rows = []
    for steps in lengths:
        for name in MODELS:
            reps = repeats if steps <= 4096 else max(3, repeats // 2)
            rows.append(run_one(name, steps, reps, threads))
            print(f"  {name:>12} T={steps:>6}: {_fmt_row(rows[-1])}", file=sys.stderr)
    if CHECK_T in lengths:
        for name, reps in (("gru_torch", repeats), ("min_gru_loop", max(2, repeats // 3))):
            rows.append(run_one(name, CHECK_T, reps, threads))
            print(f"  {name:>12} T={CHECK_T:>6}: {_fmt_row(rows[-1])}", file=sys.stderr)
    return {
        "benchmark": "long",
        "batch": BATCH, "units": UNITS, "threads": threads, "lengths": list(lengths),
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "memory_measure": "ru_maxrss of a fresh subprocess per (model, T)",
        "check": _check(rows),
        "rows": rows,
    }  # fmt: skip


def _lookup(rows: list[dict], name: str, steps: int) -> dict | None:
    return next((r for r in rows if r["model"] == name and r["T"] == steps and "error" not in r),
                None)  # fmt: skip


def _check(rows: list[dict]) -> dict:
    fast, slow = _lookup(rows, "min_gru", CHECK_T), _lookup(rows, "gru", CHECK_T)
    if fast is None or slow is None:
        return {"claim": f"MinGRU >= {CLAIM:g}x faster than GRU at T={CHECK_T}", "ok": None}
    speedup = slow["seconds"] / fast["seconds"]
    return {
        "claim": f"MinGRU >= {CLAIM:g}x faster than GRU at T={CHECK_T}",
        "gru_path": slow.get("path"), "speedup": round(speedup, 3), "ok": speedup >= CLAIM,
    }  # fmt: skip


def _fmt_row(row: dict) -> str:
    if "error" in row:
        return f"error {row['error']}"
    return f"{row['seconds']:.4f} s, peak {row['peak_mb']:.0f} MB (+{row['extra_mb']:.0f})"


def table(result: dict) -> str:
    rows = result["rows"]
    head = f"{'T':>6} |" + "".join(f" {m + ' s':>11} {'+MB':>6} |" for m in MODELS)
    lines = [head, "-" * len(head)]
    for steps in result["lengths"]:
        cells = []
        for name in MODELS:
            row = _lookup(rows, name, steps)
            cells.append(f" {'-':>11} {'-':>6} |" if row is None
                         else f" {row['seconds']:>11.4f} {row['extra_mb']:>6.0f} |")  # fmt: skip
        lines.append(f"{steps:>6} |" + "".join(cells))
    for name, label in (("gru_torch", "GRU via torch.nn.GRU"), ("min_gru_loop", "MinGRU loop")):
        row = _lookup(rows, name, CHECK_T)
        if row is not None:
            lines.append(f"{label} at T={CHECK_T}: {row['seconds']:.4f} s "
                         f"(+{row['extra_mb']:.0f} MB)")  # fmt: skip
    check = result["check"]
    if check["ok"] is None:
        lines.append(f"check '{check['claim']}': not measured (T={CHECK_T} not run)")
    else:
        verdict = "holds" if check["ok"] else "does NOT hold"
        lines.append(
            f"check '{check['claim']}': {verdict} -- GRU ({check['gru_path']} path) / MinGRU = "
            f"{check['speedup']:.2f}x"
        )
    lines.append(
        f"(+MB: peak RSS increase during forward+backward; batch {result['batch']}, "
        f"{result['threads']} thread(s), load {result['loadavg_before'][0]} -> "
        f"{result['loadavg_after'][0]})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T in 1024, 4096; fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, steps = args.worker[0], int(args.worker[1])
        print(json.dumps(worker(name, steps, args.repeats or 5, args.threads)))
        return
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    repeats = args.repeats or (2 if args.quick else 7)
    result = run(lengths, repeats, args.threads)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    print(table(result))


if __name__ == "__main__":
    main()
