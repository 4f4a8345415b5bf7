"""Forward+backward milliseconds of every recurrent layer against torch.nn, in one run.

    python benchmarks/layers.py [--repeats 30] [--out layers.json]

Two sizes: (batch 32, 50 steps, 1 -> 20 units), the notes' models; and (batch 64, 500 steps,
32 -> 128 units). Each seqcast layer runs through its "auto" implementation and, where it
has others, through each of them. Medians of `--repeats` runs, after warm-up; JSON is
printed (or written with --out), then a short table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn

from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LayerNormSimpleRNNCell,
    SimpleRNN,
    _compiled,
)

SIZES = {"small": (32, 50, 1, 20), "large": (64, 500, 32, 128)}

LAYERS = {
    "SimpleRNN": (lambda u: SimpleRNN(u, return_sequences=True), "nn.RNN"),
    "LSTM": (lambda u: LSTM(u, return_sequences=True), "nn.LSTM"),
    "LSTM(peephole)": (lambda u: LSTM(u, peephole=True, return_sequences=True), "nn.LSTM"),
    "GRU": (lambda u: GRU(u, return_sequences=True), "nn.GRU"),
    "GRU(reset_after=False)": (
        lambda u: GRU(u, reset_after=False, return_sequences=True),
        "nn.GRU",
    ),
    "LNSimpleRNN": (lambda u: RNN(LayerNormSimpleRNNCell(u), return_sequences=True), "nn.LSTM"),
    "LNLSTM": (lambda u: RNN(LayerNormLSTMCell(u), return_sequences=True), "nn.LSTM"),
    "LNGRU": (lambda u: RNN(LayerNormGRUCell(u), return_sequences=True), "nn.GRU"),
}
TORCH = {"nn.RNN": nn.RNN, "nn.LSTM": nn.LSTM, "nn.GRU": nn.GRU}


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    def once() -> None:
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    for _ in range(3):
        once()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _has_kernel(layer, x: torch.Tensor) -> bool:
    """Whether `layer` has a compiled path on x: its cell declares a kernel, and it is built."""
    layer.implementation = "compiled"
    return layer._path(x, None) == "compiled"


def run(repeats: int, sizes: list[str]) -> list[dict]:
    torch.manual_seed(0)
    rows = []
    for size in sizes:
        batch, steps, features, units = SIZES[size]
        x = torch.randn(batch, steps, features)
        reps = repeats if size == "small" else max(3, repeats // 6)
        torch_ms = {
            name: time_fwd_bwd(cls(features, units, batch_first=True), x, reps)
            for name, cls in TORCH.items()
        }
        for name, (make, reference) in LAYERS.items():
            layer = make(units)
            layer(x)  # build
            paths = ["auto", "torch", "compiled", "loop"]
            for path in paths:
                if path == "compiled" and not _has_kernel(layer, x):
                    continue
                layer.implementation = path
                try:
                    ms = time_fwd_bwd(layer, x, reps if path != "loop" else max(3, reps // 3))
                except Exception:  # noqa: BLE001 - a path this configuration cannot take
                    continue
                rows.append(
                    {
                        "size": size,
                        "layer": name,
                        "implementation": path,
                        "ms": round(ms, 3),
                        "reference": reference,
                        "reference_ms": round(torch_ms[reference], 3),
                        "ratio_to_reference": round(ms / torch_ms[reference], 2),
                    }
                )
            layer.implementation = "auto"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--out", help="write the JSON here instead of printing it")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 by default: on a shared machine extra threads "
        "spin against other work and time that instead)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.repeats, args.sizes.split(","))
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "compiled_kernels": _compiled.available(),
        },
        "unit": "ms, forward+backward, median",
        "results": rows,
    }
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    print(f"\n{'size':6} {'layer':24} {'path':9} {'ms':>9}  {'torch.nn ref':>16}  ratio")
    for r in rows:
        ref = f"{r['reference']} {r['reference_ms']:.2f}"
        print(
            f"{r['size']:6} {r['layer']:24} {r['implementation']:9} {r['ms']:9.2f}  {ref:>16}  "
            f"{r['ratio_to_reference']:.2f}x"
        )


if __name__ == "__main__":
    main()
