"""Monthly airline passengers, next month from the last 12, with one LSTM (study note 004).

The note's recipe: MinMax-scale the 144 monthly values to [0, 1], cut windows of 12 months
whose target is the 13th (132 windows), train on the first 80% of the windows (105) and test
on the rest (27), with `LSTM(300)` + `Dense(1, activation="sigmoid")` (362,701 parameters),
RMSprop and the MSE, 300 epochs at batch size 64. It prints the test MSE on the scaled data
(the note: 0.016), the test predictions turned back into passengers (thousands) beside the
truth, and saves a plot of both.

The note fits the scaler on the whole series, test months included, so the scaled test values
stay inside [0, 1], which a sigmoid output can reach. That is what runs by default, to
reproduce the note; `--scaler-fit train` fits it on the months the training windows see only
(no test information; test values then exceed 1 and the sigmoid cannot follow them).

Writes one PNG, at `--out` (default: `seqcast_examples/airline_lstm.png` under the system's
temporary directory).

    python examples/airline_lstm.py                           # the note's 300 epochs
    python examples/airline_lstm.py --epochs 20 --out fig.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import seqcast
from seqcast.data import MinMaxScaler, make_windows
from seqcast.layers import LSTM, Dense
from seqcast.plots import plot_forecast, save_figure

MY_PAST = 12  # months of history per input window
MY_SPLIT = 0.8  # share of the windows used for training
MY_UNIT = 300  # LSTM units
MY_BATCH = 64
DEFAULT_OUT = Path(tempfile.gettempdir()) / "seqcast_examples" / "airline_lstm.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300, help="note: 300")
    parser.add_argument(
        "--scaler-fit",
        choices=("all", "train"),
        default="all",
        help="fit the MinMax scaler on the whole series (the note) or on the training months only",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to save the plot")
    args = parser.parse_args(argv)
    np.set_printoptions(precision=3, linewidth=100)

    # -- data: 144 months as a long frame (unique_id, ds, y) -----------------------------------
    frame = seqcast.datasets.airline_passengers()
    print(frame["y"].describe().to_string())
    n_windows = len(frame) - MY_PAST  # 132
    split = int(n_windows * MY_SPLIT)  # 105 training windows
    train_months = split + MY_PAST  # the months the training windows see, targets included

    scaler = MinMaxScaler()
    scaler.fit(frame if args.scaler_fit == "all" else frame.iloc[:train_months])
    s_data = scaler.transform(frame)["y"].to_numpy(np.float32)  # (144,)

    # Windows of 12 months -> the 13th: X (132, 12, 1), Y (132, 1, 1).
    X_data, Y_data = make_windows(s_data, window=MY_PAST, horizon=1, target="one_step")
    # make_windows returns read-only views; copies keep torch from warning about them.
    X_data, Y_data = X_data.copy(), Y_data.reshape(-1, 1).copy()
    X_train, X_test = X_data[:split], X_data[split:]
    Y_train, Y_test = Y_data[:split], Y_data[split:]
    print(f"train X {X_train.shape} Y {Y_train.shape}, test X {X_test.shape} Y {Y_test.shape}")

    # -- model ------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    model = seqcast.Sequential(
        [LSTM(MY_UNIT), Dense(1, activation="sigmoid")], input_shape=(MY_PAST, 1)
    )
    model.summary()
    begin = time.perf_counter()
    history = model.fit(
        X_train,
        Y_train,
        epochs=args.epochs,
        batch_size=MY_BATCH,
        optimizer="rmsprop",
        loss="mse",
        seed=args.seed,
        verbose=False,
    )
    print(
        f"trained {args.epochs} epochs in {time.perf_counter() - begin:.1f} s, "
        f"final training loss {history.history['loss'][-1]:.4f}"
    )

    # -- evaluation -------------------------------------------------------------------------
    loss = model.evaluate(X_test, Y_test)["loss"]
    print(f"test MSE (scaled data): {loss:.4f} (note: 0.016)")

    pred = scaler.inverse_transform_array("airline", model.predict(X_test)).ravel()
    truth = scaler.inverse_transform_array("airline", Y_test).ravel()
    print("predicted:", np.rint(pred).astype(int))
    print("truth:    ", np.rint(truth).astype(int))
    print(f"test RMSE: {np.sqrt(np.mean((pred - truth) ** 2)):.1f} thousand passengers")

    # -- plot: each test month's one-step-ahead prediction beside the truth -----------------
    history_part, test_part = frame.iloc[:train_months], frame.iloc[train_months:]
    forecast = pd.DataFrame(
        {
            "unique_id": test_part["unique_id"].to_numpy(),
            "ds": test_part["ds"].to_numpy(),
            "y_hat": pred,
        }
    )
    fig = plot_forecast(
        history_part,
        forecast,
        truth=test_part,
        title="airline passengers: LSTM(300), one month ahead on the test windows",
    )
    print(f"plot saved to {save_figure(fig, args.out)}")


if __name__ == "__main__":
    main()
