"""Next number of a counting sequence with SimpleRNN, LSTM, bidirectional LSTM and GRU
(study note 002, the (6, 4, 1) toy sequence regression).

Six windows of four consecutive integers, [0 1 2 3] -> 4, ..., [5 6 7 8] -> 9, are fitted
by four stacked two-layer models of 300 units. Each model's `summary()` shows the parameter
counts the note derives by hand (Keras' counts, one bias vector per gate):

    SimpleRNN(300) on 1 feature                   1*300 + 300*300 + 300        =    90,600
    SimpleRNN(300) on 300 features                300*300 + 300*300 + 300      =   180,300
    LSTM(300) on 1 feature                        4 * 90,600                   =   362,400
    LSTM(300) on 300 features                     4 * 180,300                  =   721,200
    Bidirectional(LSTM(300)) on 1 feature         2 * 362,400                  =   724,800
    Bidirectional(LSTM(300)) on 600 features      2 * (600*1200 + 300*1200 + 1200) = 2,162,400

Each model is trained with Adam on the MSE for `--epochs` (the note: 100) and prints its
predictions on the training windows, on two windows it never saw ([6 7 8 9], where 10 is
right, and [-1 0 1 2], where 3 is right) and its training loss. No files are written.

    python examples/toy_sequence_regression.py               # the note's 100 epochs
    python examples/toy_sequence_regression.py --epochs 5    # a quick look
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

import seqcast
from seqcast.layers import GRU, LSTM, Bidirectional, Dense, SimpleRNN

# Sequence data: windows of 4 steps of 1 feature -> (N, T, D) = (6, 4, 1).
# fmt: off
X = np.array([[0, 1, 2, 3],
              [1, 2, 3, 4],
              [2, 3, 4, 5],
              [3, 4, 5, 6],
              [4, 5, 6, 7],
              [5, 6, 7, 8]], dtype=np.float32).reshape(-1, 4, 1)
# fmt: on
# The next value of each window. seqcast's fit wants a 2-D target (batch, outputs).
Y = np.array([4, 5, 6, 7, 8, 9], dtype=np.float32).reshape(-1, 1)
UNSEEN = np.array([[[6], [7], [8], [9]], [[-1], [0], [1], [2]]], dtype=np.float32)

UNITS = 300
MODELS: dict[str, Callable[[], list]] = {
    # SimpleRNN: the simplest recurrent layer (tanh).
    "SimpleRNN": lambda: [SimpleRNN(UNITS, return_sequences=True), SimpleRNN(UNITS), Dense(1)],
    # LSTM: a cell state besides the output, against long-term dependency problems.
    "LSTM": lambda: [LSTM(UNITS, return_sequences=True), LSTM(UNITS), Dense(1)],
    # Bidirectional LSTM: a forward and a backward LSTM, outputs concatenated (2 x 300).
    "Bidirectional LSTM": lambda: [
        Bidirectional(LSTM(UNITS, return_sequences=True)),
        Bidirectional(LSTM(UNITS)),
        Dense(1),
    ],
    # GRU (Cho et al.): simpler than the LSTM, often as good.
    "GRU": lambda: [GRU(UNITS, return_sequences=True), GRU(UNITS), Dense(1)],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="epochs per model (note: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(MODELS),
        help="which models to build and train (default: all four)",
    )
    args = parser.parse_args(argv)
    np.set_printoptions(precision=3, suppress=True)
    print(f"x_data {X.shape} (N, T, D), y_data {Y.shape}")

    for name in args.models:
        print(f"\n=== {name} ===")
        torch.manual_seed(args.seed)
        model = seqcast.Sequential(MODELS[name](), input_shape=(4, 1))
        model.summary()
        model.fit(
            X, Y, epochs=args.epochs, optimizer="adam", loss="mse", seed=args.seed, verbose=False
        )
        print("predictions on the training windows (truth 4..9):", model.predict(X).ravel())
        unseen = model.predict(UNSEEN).ravel()
        print(
            f"unseen windows: [6 7 8 9] -> {unseen[0]:.3f} (10 is right), "
            f"[-1 0 1 2] -> {unseen[1]:.3f} (3 is right)"
        )
        print(f"training MSE after {args.epochs} epochs: {model.evaluate(X, Y)['loss']:.4f}")


if __name__ == "__main__":
    main()
