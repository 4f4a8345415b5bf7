"""How fast are seqcast's compiled recurrences (`seqcast.layers._compiled`) on this CPU?

Forward + backward of one recurrent layer, median milliseconds, for each compiled kernel
against the `torch.nn` module computing the same recurrence (where there is one) and against
the Python loops of `tests/reference/recurrences.py` (written for float64, run here in
float32). Every path starts from the raw input x (B, T, F) and its backward pass produces the
gradients of every weight: the LSTM kernel (`lstm_layer`) projects the inputs itself, the
others get `x @ W_ih^T + b` done in Python, as torch.nn's does. The kernels and torch.nn run in
turn, round after round, so that bursts of load on a shared machine hit them alike.

    python benchmarks/kernels.py                 # both sizes
    python benchmarks/kernels.py --sizes small --repeats 300
    python benchmarks/kernels.py --clock thread  # one thread's CPU time: steady on a busy machine

Prints a JSON document (one record per measurement), then a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference import recurrences as ref  # noqa: E402

from seqcast.layers import _compiled  # noqa: E402

SIZES = {  # name: (batch, time, input features, units)
    "small": (32, 50, 1, 20),
    "large": (64, 500, 32, 128),
}


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
clock = CLOCKS["wall"]


def median_ms(paths: dict[str, Callable[[], None]], repeats: int, budget_s: float) -> dict:
    """Median time in ms (on `clock`) of each of `paths`, run in turn (round-robin, so that a
    burst of load on this shared machine hits all of them alike): `repeats` rounds, or fewer
    (at least 3) once `budget_s` seconds have passed."""
    for fn in paths.values():
        fn()  # warm-up: first-call allocations, lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in paths}
    start = time.perf_counter()
    for round_ in range(repeats):
        if round_ >= 3 and time.perf_counter() - start > budget_s:
            break
        for name, fn in paths.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


class Case:
    """One recurrence at one size: its weights, and a forward+backward closure per path."""

    def __init__(self, gates: int, batch: int, steps: int, features: int, units: int) -> None:
        self.x = torch.randn(batch, steps, features)
        self.h0 = torch.zeros(batch, units)
        scale = units**-0.5
        self.w_ih = nn.Parameter(torch.randn(gates * units, features) * scale)
        self.w_hh = nn.Parameter(torch.randn(gates * units, units) * scale)
        self.bias = nn.Parameter(torch.zeros(gates * units))

    def project(self) -> torch.Tensor:
        return self.x @ self.w_ih.T + self.bias  # (B, T, F) -> (B, T, G*H)

    @staticmethod
    def backward(outputs: tuple[torch.Tensor, ...]) -> None:
        outputs[0].sum().backward()


def torch_nn_path(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module(x)[0].sum().backward()

    return run


def cases(batch: int, steps: int, features: int, units: int) -> list[tuple[str, str, Callable]]:
    """(recurrence, path, forward+backward closure) for every measurement at one size."""
    dims = (batch, steps, features, units)
    out: list[tuple[str, str, Callable]] = []

    lstm = Case(4, *dims)
    peep = nn.Parameter(torch.randn(3, units) * 0.1)
    c0 = torch.zeros(batch, units)
    nn_lstm = nn.LSTM(features, units, batch_first=True)
    out += [
        ("lstm", "torch.nn", torch_nn_path(nn_lstm, lstm.x)),
        ("lstm", "compiled", lambda: lstm.backward(_compiled.lstm_layer(
            lstm.x.permute(1, 2, 0), lstm.w_ih, lstm.w_hh, lstm.bias, lstm.h0, c0))),
        ("lstm", "python loop", lambda: lstm.backward(
            ref.lstm_reference(lstm.project(), lstm.w_hh, lstm.h0, c0))),
        ("lstm peephole", "compiled", lambda: lstm.backward(_compiled.lstm_layer(
            lstm.x.permute(1, 2, 0), lstm.w_ih, lstm.w_hh, lstm.bias, lstm.h0, c0, peep))),
        ("lstm peephole", "python loop", lambda: lstm.backward(
            ref.lstm_reference(lstm.project(), lstm.w_hh, lstm.h0, c0, peep))),
    ]  # fmt: skip

    gru = Case(3, *dims)
    b_hh = nn.Parameter(torch.zeros(3 * units))
    nn_gru = nn.GRU(features, units, batch_first=True)
    out += [
        ("gru", "torch.nn", torch_nn_path(nn_gru, gru.x)),
        ("gru", "compiled", lambda: gru.backward(
            _compiled.gru_sequence(gru.project(), gru.w_hh, gru.h0, b_hh))),
        ("gru", "python loop", lambda: gru.backward(
            ref.gru_reference(gru.project(), gru.w_hh, gru.h0, b_hh))),
        ("gru reset_after=False", "compiled", lambda: gru.backward(
            _compiled.gru_sequence(gru.project(), gru.w_hh, gru.h0, None, False))),
        ("gru reset_after=False", "python loop", lambda: gru.backward(
            ref.gru_reference(gru.project(), gru.w_hh, gru.h0, None, False))),
    ]  # fmt: skip

    rnn = Case(1, *dims)
    gamma, beta = nn.Parameter(torch.ones(units)), nn.Parameter(torch.zeros(units))
    nn_rnn = nn.RNN(features, units, batch_first=True)
    out += [
        ("simple_rnn", "torch.nn", torch_nn_path(nn_rnn, rnn.x)),
        ("simple_rnn", "compiled", lambda: rnn.backward(
            _compiled.simple_rnn_sequence(rnn.project(), rnn.w_hh, rnn.h0))),
        ("simple_rnn", "python loop", lambda: rnn.backward(
            ref.simple_rnn_reference(rnn.project(), rnn.w_hh, rnn.h0))),
        ("ln_simple_rnn", "compiled", lambda: rnn.backward(
            _compiled.ln_simple_rnn_sequence(rnn.project(), rnn.w_hh, rnn.h0, gamma, beta))),
        ("ln_simple_rnn", "python loop", lambda: rnn.backward(
            ref.ln_simple_rnn_reference(rnn.project(), rnn.w_hh, rnn.h0, gamma, beta))),
    ]  # fmt: skip
    return out


def table(records: list[dict], unit: str) -> str:
    paths = ["compiled", "torch.nn", "python loop"]
    lines = []
    for size in dict.fromkeys(r["size"] for r in records):
        rows = [r for r in records if r["size"] == size]
        b, t, f, h = rows[0]["shape"]
        lines.append(f"\n{size}: batch {b}, {t} steps, {f} -> {h} units; fwd+bwd ms, {unit}")
        lines.append(f"{'recurrence':<24}" + "".join(f"{p:>13}" for p in paths) + f"{'vs nn':>8}")
        for name in dict.fromkeys(r["recurrence"] for r in rows):
            ms = {r["path"]: r["ms"] for r in rows if r["recurrence"] == name}
            cells = "".join(f"{ms[p]:>13.2f}" if p in ms else f"{'-':>13}" for p in paths)
            ratio = f"{ms['torch.nn'] / ms['compiled']:>7.1f}x" if "torch.nn" in ms else ""
            lines.append(f"{name:<24}{cells}{ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=200, help="rounds of runs (at most)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per size (soft cap)")
    parser.add_argument("--loop-repeats", type=int, default=3, help="runs of each Python loop")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall time, or CPU time of this thread (implies --threads 1; steady when other "
        "jobs share the cores)",
    )
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.clock == "thread":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)

    if not _compiled.available():
        sys.exit("the compiled kernels are not available here (see the log); nothing to measure")
    torch.manual_seed(0)
    records = []
    for size in args.sizes:
        shape = SIZES[size]
        measured = cases(*shape)
        fast = {(n, p): fn for n, p, fn in measured if p != "python loop"}
        slow = {(n, p): fn for n, p, fn in measured if p == "python loop"}
        ms = median_ms(fast, args.repeats, args.budget)  # kernels and torch.nn, interleaved
        ms |= median_ms(slow, args.loop_repeats, 0.0)  # the Python loops: slow, fewer runs
        records += [
            {"size": size, "shape": shape, "recurrence": n, "path": p, "ms": ms[(n, p)]}
            for n, p, _ in measured
        ]
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "budget_s": args.budget,
        "loop_repeats": args.loop_repeats,
        "clock": args.clock,
    }
    print(json.dumps({"meta": meta, "results": records}, indent=1))
    unit = "median wall time" if args.clock == "wall" else "median CPU time of one thread"
    print(table(records, unit))


if __name__ == "__main__":
    main()
