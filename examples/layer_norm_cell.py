"""A layer-normalised SimpleRNN cell written by hand, run under `RNN(cell)` (study note 001).

Batch normalisation does not fit between time steps; layer normalisation (over the feature
axis, per sample and per step) does. The note writes `LNSimpleRNNCell` in a few lines: a
linear `SimpleRNNCell`, then `LayerNormalization`, then the activation. Here it is a plain
`torch.nn.Module` with `state_size` and `forward(x_t, states)`, built from seqcast's
`SimpleRNNCell(activation=None)` and `LayerNormalization`; `RNN(cell)` runs it over time.

Both layer-norm models of the note are trained on the sequence-to-sequence task (ten values
ahead at every one of 50 steps, `generate_time_series` with seed 42, 7000 / 2000 series for
training / validation), with Adam for `--epochs` (note: 20) at batch size 256:

    hand-written cell   RNN(LNSimpleRNNCell(20)) x 2 + TimeDistributed(Dense(10))
    built-in cell       RNN(LayerNormSimpleRNNCell(20)) x 2 + TimeDistributed(Dense(10))

Before training, the script copies the hand-written cell's weights into the built-in one and
checks that both compute the same outputs. It prints each model's parameter count and its
validation MSE and `last_time_step_mse`. `--samples N` uses N series instead of 10,000.
Nothing is written to disk.

    python examples/layer_norm_cell.py
    python examples/layer_norm_cell.py --epochs 1 --samples 300
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import seqcast
from seqcast.layers import (
    RNN,
    Dense,
    LayerNormalization,
    LayerNormSimpleRNNCell,
    SimpleRNNCell,
    TimeDistributed,
    activations,
)
from seqcast.metrics import last_time_step_mse

N_STEPS, AHEAD = 50, 10


class LNSimpleRNNCell(nn.Module):
    """The note's cell: SimpleRNN step without activation -> layer norm -> activation."""

    def __init__(self, units: int, activation: str = "tanh") -> None:
        super().__init__()
        self.state_size = units
        self.output_size = units
        self.simple_rnn_cell = SimpleRNNCell(units, activation=None)
        self.layer_norm = LayerNormalization()
        self.activation = activations.get(activation)

    def forward(self, inputs: torch.Tensor, states: list[torch.Tensor]):
        outputs, new_states = self.simple_rnn_cell(inputs, states)
        norm_outputs = self.activation(self.layer_norm(outputs))
        return norm_outputs, [norm_outputs]


def seq2seq_data(samples: int, seed: int):
    """X (n, 50, 1) and Y (n, 50, 10) with Y[:, t, k-1] = series[:, t + k], split 70/20/10."""
    series = seqcast.datasets.generate_time_series(samples, N_STEPS + AHEAD, seed=seed)
    Y = np.empty((samples, N_STEPS, AHEAD), dtype=np.float32)
    for step_ahead in range(1, AHEAD + 1):
        Y[..., step_ahead - 1] = series[:, step_ahead : step_ahead + N_STEPS, 0]
    X = series[:, :N_STEPS]
    a, b = int(samples * 0.7), int(samples * 0.9)
    return (X[:a], Y[:a]), (X[a:b], Y[a:b])


def copy_weights(hand: LNSimpleRNNCell, built_in: LayerNormSimpleRNNCell) -> None:
    """Give the built-in cell the hand-written cell's weights (same layout, other names)."""
    pairs = {
        "weight_ih": hand.simple_rnn_cell.weight_ih,
        "weight_hh": hand.simple_rnn_cell.weight_hh,
        "bias": hand.simple_rnn_cell.bias,
        "norm_gain": hand.layer_norm.gamma,
        "norm_shift": hand.layer_norm.beta,
    }
    with torch.no_grad():
        for name, value in pairs.items():
            getattr(built_in, name).copy_(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per model (note: 20)")
    parser.add_argument(
        "--samples", type=int, default=10_000, help="number of series (note: 10000), split 70/20/10"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="note: 256")
    parser.add_argument("--seed", type=int, default=42, help="seed of data, weights, batches")
    args = parser.parse_args(argv)
    train, valid = seq2seq_data(args.samples, args.seed)
    print(f"X_train {train[0].shape}, Y_train {train[1].shape}, X_valid {valid[0].shape}")

    # The two cells compute the same function: check it on validation inputs, in float64 so
    # that float32 rounding (the built-in cell runs a compiled kernel) does not blur the check.
    torch.manual_seed(args.seed)
    hand = RNN(LNSimpleRNNCell(20), return_sequences=True)
    built_in = RNN(LayerNormSimpleRNNCell(20), return_sequences=True)
    x = torch.from_numpy(valid[0][:64])
    with torch.no_grad():
        hand(x), built_in(x)  # builds both
        copy_weights(hand.cell, built_in.cell)
        x, hand, built_in = x.double(), hand.double(), built_in.double()
        gap = (hand(x) - built_in(x)).abs().max().item()
    print(f"same weights, largest output difference hand-written vs built-in: {gap:.1e}")

    cells = {
        "hand-written LNSimpleRNNCell": LNSimpleRNNCell,
        "built-in LayerNormSimpleRNNCell": LayerNormSimpleRNNCell,
    }
    results = []
    for name, cell in cells.items():
        print(f"\n=== {name} ===")
        torch.manual_seed(args.seed)
        model = seqcast.Sequential(
            [
                RNN(cell(20), return_sequences=True),
                RNN(cell(20), return_sequences=True),
                TimeDistributed(Dense(AHEAD)),
            ],
            input_shape=(None, 1),
        )
        model.summary()
        start = time.perf_counter()
        model.fit(
            *train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer="adam",
            validation_data=valid,
            metrics=[last_time_step_mse],
            seed=args.seed,
            verbose=False,
        )
        seconds = time.perf_counter() - start
        scores = model.evaluate(*valid)
        print(
            f"{name}: validation MSE {scores['loss']:.4f}, "
            f"last_time_step_mse {scores['last_time_step_mse']:.4f} "
            f"({args.epochs} epochs, {seconds:.1f} s)"
        )
        results.append((name, model.count_params(), scores, seconds))

    print(f"\n{'cell':<32} {'params':>7} {'val MSE':>8} {'last step':>10} {'seconds':>8}")
    for name, params, scores, seconds in results:
        print(
            f"{name:<32} {params:>7,} {scores['loss']:>8.4f} "
            f"{scores['last_time_step_mse']:>10.4f} {seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()
