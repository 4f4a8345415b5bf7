"""Keras itself on `benchmarks/handson.py`'s protocol, several seeds: how far apart one
Keras figure and another lie.

    python benchmarks/handson_keras.py --seeds 42,43,44 --out benchmarks/handson_keras.json
    options: --models deep_rnn,ln_rnn  --epochs 20  --samples 10000  --threads 1

The same data, splits, architectures, learning rates (`KERAS_LR`), batch and epochs as the
Keras-protocol column of handson.py, built with Keras 3 on TensorFlow-CPU (the optional `bench`
extra; without it the script says so and exits 2). Each seed sets Keras' weights and batch
order (`keras.utils.set_random_seed`); the data stay the book's. Prints validation MSE per seed
(last-time-step MSE for the seq2seq models) and their mean beside the single Keras figure that
handson.py compares against; JSON via `--out`, a short table last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from handson import AHEAD, KERAS, KERAS_LR, TASK, load_data  # noqa: E402

MODELS = [m for m in KERAS if m in TASK]


def build(keras, name: str, units: int = 20):
    """handson.build's architectures, in Keras."""
    L = keras.layers

    class LNSimpleRNNCell(L.Layer):
        """The study notes' cell: SimpleRNNCell(activation=None), LayerNormalization, tanh."""

        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.state_size = self.output_size = units
            self.simple_rnn_cell = L.SimpleRNNCell(units, activation=None)
            self.layer_norm = L.LayerNormalization()
            self.units = units

        def build(self, input_shape) -> None:
            self.simple_rnn_cell.build(input_shape)
            self.layer_norm.build((input_shape[0], self.units))
            self.built = True

        def call(self, inputs, states):
            outputs, _ = self.simple_rnn_cell(inputs, states)
            norm = keras.activations.tanh(self.layer_norm(outputs))
            return norm, [norm]

    u, seq = units, dict(return_sequences=True)
    head = [L.TimeDistributed(L.Dense(AHEAD))]
    layers = {
        "linear": lambda: [L.Flatten(), L.Dense(1)],
        "simple_rnn": lambda: [L.SimpleRNN(1)],
        "deep_rnn": lambda: [L.SimpleRNN(u, **seq), L.SimpleRNN(u), L.Dense(1)],
        "seq2vec10": lambda: [L.SimpleRNN(u, **seq), L.SimpleRNN(u), L.Dense(AHEAD)],
        "seq2seq_rnn": lambda: [L.SimpleRNN(u, **seq), L.SimpleRNN(u, **seq), *head],
        "ln_rnn": lambda: [
            L.RNN(LNSimpleRNNCell(u), **seq),
            L.RNN(LNSimpleRNNCell(u), **seq),
            *head,
        ],
        "lstm": lambda: [L.LSTM(u, **seq), L.LSTM(u, **seq), *head],
        "gru": lambda: [L.GRU(u, **seq), L.GRU(u, **seq), *head],
        "conv_gru": lambda: [
            L.Conv1D(u, 4, strides=2, padding="valid"),
            L.GRU(u, **seq),
            L.GRU(u, **seq),
            *head,
        ],
        "wavenet": lambda: [
            *(
                L.Conv1D(u, 2, padding="causal", activation="relu", dilation_rate=r)
                for r in (1, 2, 4, 8) * 2
            ),
            L.Conv1D(AHEAD, 1),
        ],
    }
    shape = (50, 1) if name == "linear" else (None, 1)
    return keras.Sequential([keras.Input(shape), *layers[name]()])


def score(name: str, pred: np.ndarray, y: np.ndarray) -> float:
    if TASK[name] in ("seq", "conv"):
        return float(np.mean((pred[:, -1] - y[:, -1]) ** 2))
    return float(np.mean((pred.reshape(y.shape) - y) ** 2))


def run(keras, name: str, d: dict, epochs: int, seed: int) -> tuple[float, float]:
    task = TASK[name]
    keras.utils.set_random_seed(seed)
    model = build(keras, name)
    model.compile(
        loss="mse", optimizer=keras.optimizers.Adam(learning_rate=KERAS_LR.get(name, 1e-3))
    )
    start = time.perf_counter()
    model.fit(d[f"{task}_X_train"], d[f"{task}_Y_train"], epochs=epochs, batch_size=32, verbose=0)
    seconds = (time.perf_counter() - start) / epochs
    pred = model.predict(d[f"{task}_X_valid"], batch_size=1024, verbose=0)
    return score(name, pred, d[f"{task}_Y_valid"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads")
    parser.add_argument("--out", help="write the JSON list of results here")
    args = parser.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; expected some of {', '.join(MODELS)}")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        print(f"error: Keras on TensorFlow is not installed ({exc}); install the bench extra: "
              'pip install -e ".[bench]"', file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    seeds = [int(s) for s in args.seeds.split(",")]
    d = load_data(args.samples)
    rows = []
    for name in names:
        vals, secs = zip(*(run(keras, name, d, args.epochs, s) for s in seeds), strict=True)
        row = {
            "model": name,
            "keras_figure": KERAS[name],
            "val_mse_seeds": list(vals),
            "val_mse": statistics.mean(vals),
            "sec_per_epoch": statistics.median(secs),
            "seeds": seeds,
            "epochs": args.epochs,
            "lr": KERAS_LR.get(name, 1e-3),
            "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
            "threads": args.threads,
        }
        rows.append(row)
        print(f"{name:12} val_mse {row['val_mse']:.4f}  seeds {[round(v, 4) for v in vals]}",
              flush=True)  # fmt: skip
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"\n{'model':12} {'figure':>7} {'mean':>7}  seeds")
    for r in rows:
        seeds_text = ", ".join(f"{v:.4f}" for v in r["val_mse_seeds"])
        print(f"{r['model']:12} {r['keras_figure']:7.4f} {r['val_mse']:7.4f}  {seeds_text}")


if __name__ == "__main__":
    main()
