"""Forecasting synthetic series with RNNs and CNNs (study note 000: Hands-on ML, chapter 15).

Series from `seqcast.datasets.generate_time_series` (two sines plus noise, seed 42), split
7000 / 2000 / 1000 into train / validation / test, 50 input steps each. The models, in the
note's order, each trained with Adam on the MSE and scored by the validation MSE:

  one step ahead (target: step 51)
    naive              predict the last input value (no training)
    linear             Flatten + Dense(1)
    SimpleRNN(1)       a single recurrent neuron
    deep RNN           SimpleRNN(20) x 2 + SimpleRNN(1)
    deep RNN + Dense   SimpleRNN(20) x 2 + Dense(1) (batch size 10, as the note)
  ten steps ahead (targets: steps 51..60)
    naive              repeat the last input value ten times (no training)
    recursive          the deep RNN + Dense above, fed its own predictions ten times
    seq2vec            SimpleRNN(20) x 2 + Dense(10): all ten at once
    seq2seq            SimpleRNN(20) x 2 + TimeDistributed(Dense(10)), lr 0.01: ten values
                       ahead at every step; scored on the last step (`last_time_step_mse`)
    LSTM, GRU          the seq2seq model with LSTM(20) / GRU(20) layers
    Conv1D + GRU       Conv1D(20, 4, strides=2) before two GRU(20); targets `Y[:, 3::2]`
    WaveNet            causal Conv1D(20, 2) with dilations 1, 2, 4, 8, 1, 2, 4, 8 + Conv1D(10, 1)

Epochs default to the note's value for each model (20, 10, 5, 5, 5, 5, 4, 4, 5; WaveNet, whose
code the note leaves out, the book's 20); `--epochs N` sets them all. `--samples N` uses N
series instead of 10,000 (same 70/20/10 split). Nothing is written to disk.

    python examples/synthetic_series.py                          # the note's settings
    python examples/synthetic_series.py --epochs 1 --samples 300 # a smoke test
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import seqcast
from seqcast.layers import GRU, LSTM, Conv1D, Dense, Flatten, SimpleRNN, TimeDistributed, WaveNet
from seqcast.metrics import last_time_step_mse

N_STEPS = 50
AHEAD = 10


def split(series: np.ndarray) -> tuple[slice, slice, slice]:
    """The note's 70% / 20% / 10% split by series (7000 / 2000 / 1000 of 10,000)."""
    n = len(series)
    a, b = int(n * 0.7), int(n * 0.9)
    return slice(0, a), slice(a, b), slice(b, n)


def seq2seq_targets(series: np.ndarray) -> np.ndarray:
    """Y[:, t, k-1] = series[:, t + k]: at each input step t, the next ten values."""
    y = np.empty((len(series), N_STEPS, AHEAD), dtype=np.float32)
    for step_ahead in range(1, AHEAD + 1):
        y[..., step_ahead - 1] = series[:, step_ahead : step_ahead + N_STEPS, 0]
    return y


class Report:
    """Collects one row per model and prints the table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float | None, float]] = []

    def add(self, name: str, epochs: str, mse: float, last: float | None, seconds: float):
        self.rows.append((name, epochs, mse, last, seconds))
        extra = "" if last is None else f", last_time_step_mse {last:.4f}"
        print(f"{name}: validation MSE {mse:.4f}{extra} ({seconds:.1f} s)", flush=True)

    def print(self) -> None:
        print("\nvalidation MSE per model")
        print(f"{'model':<28} {'epochs':>6} {'val MSE':>9} {'last step':>10} {'seconds':>8}")
        for name, epochs, mse, last, seconds in self.rows:
            last_text = "" if last is None else f"{last:.4f}"
            print(f"{name:<28} {epochs:>6} {mse:>9.4f} {last_text:>10} {seconds:>8.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for every model (default: the note's value per model)",
    )
    parser.add_argument(
        "--samples", type=int, default=10_000, help="number of series (note: 10000), split 70/20/10"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of data, weights, batches")
    args = parser.parse_args(argv)
    report = Report()

    def epochs(note_value: int) -> int:
        return args.epochs if args.epochs is not None else note_value

    def train(
        name: str,
        layers: list,
        x,
        y,
        valid,
        *,
        note_epochs: int,
        input_shape=(None, 1),
        seq2seq: bool = False,
        **fit_args,
    ) -> seqcast.Sequential:
        torch.manual_seed(args.seed)  # the same initial weights on every run
        model = seqcast.Sequential(layers, input_shape=input_shape)
        metrics = [last_time_step_mse] if seq2seq else None
        start = time.perf_counter()
        model.fit(
            x,
            y,
            epochs=epochs(note_epochs),
            validation_data=valid,
            optimizer="adam",
            metrics=metrics,
            seed=args.seed,
            verbose=False,
            **fit_args,
        )
        scores = model.evaluate(*valid)
        report.add(
            name,
            str(epochs(note_epochs)),
            scores["loss"],
            scores.get("last_time_step_mse"),
            time.perf_counter() - start,
        )
        return model

    # -- one step ahead: 50 inputs, the 51st value as the target -----------------------------
    series = seqcast.datasets.generate_time_series(args.samples, N_STEPS + 1, seed=args.seed)
    tr, va, te = split(series)
    X_train, y_train = series[tr, :N_STEPS], series[tr, -1]  # (n, 50, 1), (n, 1)
    X_valid, y_valid = series[va, :N_STEPS], series[va, -1]
    valid = (X_valid, y_valid)
    print(f"train {X_train.shape}, valid {X_valid.shape}, test {series[te, :N_STEPS].shape}")

    # Baseline: the last value seen (naive forecasting).
    report.add("naive (1 step)", "-", float(np.mean((y_valid - X_valid[:, -1]) ** 2)), None, 0)

    train(
        "linear",
        [Flatten(), Dense(1)],
        X_train,
        y_train,
        valid,
        note_epochs=20,
        input_shape=(N_STEPS, 1),
    )
    train("SimpleRNN(1)", [SimpleRNN(1)], X_train, y_train, valid, note_epochs=10)
    train(
        "deep RNN",
        [SimpleRNN(20, return_sequences=True), SimpleRNN(20, return_sequences=True), SimpleRNN(1)],
        X_train,
        y_train,
        valid,
        note_epochs=5,
    )
    deep = train(
        "deep RNN + Dense",
        [SimpleRNN(20, return_sequences=True), SimpleRNN(20), Dense(1)],
        X_train,
        y_train,
        valid,
        note_epochs=5,
        batch_size=10,
    )

    # -- ten steps ahead: 50 inputs, values 51..60 as targets ----------------------------------
    series = seqcast.datasets.generate_time_series(args.samples, N_STEPS + AHEAD, seed=args.seed)
    tr, va, _ = split(series)
    X_train, Y_train = series[tr, :N_STEPS], series[tr, -AHEAD:, 0]  # (n, 50, 1), (n, 10)
    X_valid, Y_valid = series[va, :N_STEPS], series[va, -AHEAD:, 0]
    valid = (X_valid, Y_valid)

    naive10 = np.repeat(X_valid[:, -1], AHEAD, axis=1)
    report.add("naive (10 steps)", "-", float(np.mean((Y_valid - naive10) ** 2)), None, 0)

    # Recursive: predict one step, append it to the inputs, predict the next, ...
    start = time.perf_counter()
    X = X_valid
    for step_ahead in range(AHEAD):
        y_pred_one = deep.predict(X[:, step_ahead:])[:, np.newaxis, :]  # (n, 1, 1)
        X = np.concatenate([X, y_pred_one], axis=1)
    Y_pred = X[:, N_STEPS:, 0]
    report.add(
        "recursive deep RNN + Dense",
        "-",
        float(np.mean((Y_valid - Y_pred) ** 2)),
        None,
        time.perf_counter() - start,
    )

    train(
        "seq2vec (Dense(10))",
        [SimpleRNN(20, return_sequences=True), SimpleRNN(20), Dense(AHEAD)],
        X_train,
        Y_train,
        valid,
        note_epochs=5,
    )

    # Sequence to sequence: ten values ahead at every time step.
    Y = seq2seq_targets(series)
    Y_train, Y_valid = Y[tr], Y[va]  # (n, 50, 10)
    valid = (X_valid, Y_valid)

    def rnn_seq2seq(layer: Callable[..., torch.nn.Module]) -> list:
        return [
            layer(20, return_sequences=True),
            layer(20, return_sequences=True),
            TimeDistributed(Dense(AHEAD)),
        ]

    train(
        "seq2seq SimpleRNN",
        rnn_seq2seq(SimpleRNN),
        X_train,
        Y_train,
        valid,
        note_epochs=5,
        seq2seq=True,
        lr=0.01,
    )
    train("seq2seq LSTM", rnn_seq2seq(LSTM), X_train, Y_train, valid, note_epochs=4, seq2seq=True)
    train("seq2seq GRU", rnn_seq2seq(GRU), X_train, Y_train, valid, note_epochs=4, seq2seq=True)

    # Conv1D with kernel 4 and stride 2 keeps output step j for inputs 2j..2j+3, so its
    # targets are every second step from step 3 on: Y[:, 3::2].
    train(
        "Conv1D + GRU",
        [
            Conv1D(20, kernel_size=4, strides=2, padding="valid"),
            GRU(20, return_sequences=True),
            GRU(20, return_sequences=True),
            TimeDistributed(Dense(AHEAD)),
        ],
        X_train,
        Y_train[:, 3::2],
        (X_valid, Y_valid[:, 3::2]),
        note_epochs=5,
        seq2seq=True,
    )

    # WaveNet: eight causal convolutions with dilation rates 1, 2, 4, 8, 1, 2, 4, 8
    # (receptive field 31 steps), then a 1x1 convolution to the ten outputs.
    train(
        "WaveNet",
        [WaveNet(20, kernel_size=2, dilation_rates=(1, 2, 4, 8) * 2), Conv1D(AHEAD, kernel_size=1)],
        X_train,
        Y_train,
        valid,
        note_epochs=20,
        seq2seq=True,
    )

    report.print()


if __name__ == "__main__":
    main()
