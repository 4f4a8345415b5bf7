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

Then, on the same data, seqcast's recommended configuration for a monthly series like this one:

    Forecaster("deep_rnn", window=24, horizon=12, season=12, early_stopping=50, epochs=1000)

and the library's defaults otherwise: two SimpleRNN(20) layers and a Dense(12) head that
predicts the whole year at once ("direct" strategy), per-series standard scaling fit on the
training months, each window shifted by its last value ("local level", so the trend carries
on), Adam at 1e-3, batch 32, and the last 20% of the training months as the validation part
that early stopping watches (the best epoch's weights are kept), seed 0.

The two are scored on different splits, stated with the results:
- the recommended configuration is fit on every month before 1960 (1949-01 .. 1959-12, 132
  months) and forecasts 1960 (the last 12 months) from December 1959, 1 to 12 months ahead;
- the note's test split is its last 27 windows, targets 1958-10 .. 1960-12. Its last 12
  predictions cover 1960 too, but each is one month ahead from the 12 true months before it
  (1960's own values included), and its scaler has seen 1960: an easier task.
MAPE, MAE, RMSE and MASE (scaled by the seasonal-naive error on the months before 1960, season
12) on 1960 are printed for both and for the seasonal naive forecast (1959 repeated).

How the configuration was chosen (`--select` reruns it on the months before 1960 only; 1960
was never looked at): every candidate was fit on the months before 1958 and before 1959 and
scored (MASE) on the year after, for seeds 0, 1 and 2. Candidates: the models linear,
simple_rnn, deep_rnn, lstm and gru (20 units, window 24, the defaults above) times four
training settings: 150 epochs without early stopping (the `seqcast demo` setting), early
stopping with patience 20 and at most 300 epochs, and patience 30 or 50 with at most 1000.
Patience 50 was the best setting for every model (too few epochs was the others' main error).
Among the recurrent models deep_rnn had the lowest mean validation MASE, 0.79 (simple_rnn 0.80,
lstm 1.09, gru 1.11; seasonal naive 1.03, which is 0.41 in the flat 1958 and 1.66 in 1959).
The linear model (one Dense layer over the window) scored 0.68: on a series this short and
regular it is a strong alternative, worth fitting beside the recurrent one. The seed matters:
deep_rnn's validation MASE was 0.90, 0.83 and 0.64 for seeds 0, 1 and 2.

Writes one PNG, at `--out` (default: `seqcast_examples/airline_lstm.png` under the system's
temporary directory).

    python examples/airline_lstm.py                           # the note's 300 epochs, then
                                                              # the recommended configuration
    python examples/airline_lstm.py --epochs 20 --out fig.png
    python examples/airline_lstm.py --skip-recommended        # the note's recipe only
    python examples/airline_lstm.py --select                  # the validation behind the choice
    options: --recommended-epochs 1000 (at most: early stopping ends sooner; also caps --select)
             --select-seeds 0,1,2, --threads N
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import seqcast
from seqcast import metrics
from seqcast.data import MinMaxScaler, make_windows
from seqcast.layers import LSTM, Dense
from seqcast.plots import plot_forecast, save_figure

MY_PAST = 12  # months of history per input window
MY_SPLIT = 0.8  # share of the windows used for training
MY_UNIT = 300  # LSTM units
MY_BATCH = 64
SEASON = 12
TEST_MONTHS = 12  # 1960, forecast by the recommended configuration
DEFAULT_OUT = Path(tempfile.gettempdir()) / "seqcast_examples" / "airline_lstm.png"

#: seqcast's recommended configuration for this series (chosen by `--select`, see above)
RECOMMENDED = {
    "model": "deep_rnn",
    "window": 24,
    "horizon": 12,
    "season": SEASON,
    "early_stopping": 50,
    "epochs": 1000,
}
#: what `--select` compares, on the months before 1960 only
SELECT_MODELS = ("linear", "simple_rnn", "deep_rnn", "lstm", "gru")
SELECT_SETTINGS = {
    "150 epochs": {"epochs": 150},
    "patience 20, <= 300": {"early_stopping": 20, "epochs": 300},
    "patience 30, <= 1000": {"early_stopping": 30, "epochs": 1000},
    "patience 50, <= 1000": {"early_stopping": 50, "epochs": 1000},
}
SELECT_YEARS = (1958, 1959)


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
    parser.add_argument(
        "--skip-recommended",
        action="store_true",
        help="run the note's recipe only, not seqcast's recommended configuration after it",
    )
    parser.add_argument(
        "--recommended-epochs",
        type=int,
        default=RECOMMENDED["epochs"],
        help="most epochs of the recommended configuration (early stopping ends sooner); "
        "also caps every fit of --select",
    )
    parser.add_argument(
        "--select",
        action="store_true",
        help="only rerun the validation (months before 1960) that chose the recommended "
        "configuration",
    )
    parser.add_argument("--select-seeds", default="0,1,2", help="seeds of --select")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.recommended_epochs < 1:
        parser.error("--epochs and --recommended-epochs must be at least 1")
    np.set_printoptions(precision=3, linewidth=100)
    if args.threads:
        torch.set_num_threads(args.threads)

    frame = seqcast.datasets.airline_passengers()
    if args.select:
        seeds = [int(s) for s in args.select_seeds.split(",") if s.strip()]
        select(frame, seeds, args.recommended_epochs)
        return
    pred = note_recipe(frame, args)
    if not args.skip_recommended:
        compare_on_1960(frame, pred, args.recommended_epochs)


def note_recipe(frame: pd.DataFrame, args: argparse.Namespace) -> np.ndarray:
    """The note's LSTM(300); returns its 27 test predictions in passengers (thousands)."""
    # -- data: 144 months as a long frame (unique_id, ds, y) -----------------------------------
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
    return pred


def compare_on_1960(frame: pd.DataFrame, note_pred: np.ndarray, max_epochs: int) -> None:
    """The recommended configuration, fit before 1960, against the note's model and the
    seasonal naive forecast on 1960."""
    history, future = frame.iloc[:-TEST_MONTHS], frame.iloc[-TEST_MONTHS:]
    y_train, y_true = history["y"].to_numpy(), future["y"].to_numpy()
    print("\n-- seqcast's recommended configuration on the same data -------------------------")
    print(
        f"recommended: fit on {_month(history, 0)} .. {_month(history, -1)} ({len(history)} "
        f"months), forecast {_month(future, 0)} .. {_month(future, -1)} (the last "
        f"{TEST_MONTHS} months), 1 to {TEST_MONTHS} months ahead from {_month(history, -1)}"
    )
    first_target = len(frame) - len(note_pred)
    print(
        f"note's test split: the last {len(note_pred)} windows, targets "
        f"{_month(frame, first_target)} .. {_month(frame, -1)}; its last {TEST_MONTHS} "
        "predictions are 1960, each one month ahead from the true months before it"
    )
    config = {**RECOMMENDED, "epochs": min(RECOMMENDED["epochs"], max_epochs)}
    fc = seqcast.Forecaster(**config, seed=0)
    fc.fit(history)
    epochs_run = len(fc.history_.history["loss"])
    best = int(np.argmin(fc.history_.history["val_loss"])) + 1
    print(
        f"Forecaster({', '.join(f'{k}={v!r}' for k, v in config.items())}): {epochs_run} "
        f"epochs (best {best}, weights kept) in {fc.fit_seconds_:.1f} s"
    )
    forecast = fc.predict()
    if not np.array_equal(forecast["ds"].to_numpy(), future["ds"].to_numpy()):
        raise RuntimeError("the forecast's months are not 1960's")  # a bug, never expected

    rows = {
        "note's LSTM(300), 1 month ahead": note_pred[-TEST_MONTHS:],
        f"recommended {RECOMMENDED['model']}, 1-{TEST_MONTHS} ahead": forecast["y_hat"].to_numpy(),
        "seasonal naive (1959 repeated)": y_train[-SEASON:],
    }
    print("predicted 1960 (thousands):")
    for name, pred in rows.items():
        print(f"  {name:34} {np.rint(pred).astype(int)}")
    print(f"  {'truth':34} {np.rint(y_true).astype(int)}")
    print(f"\n{'last 12 months (1960)':34} {'MAPE %':>7} {'MAE':>7} {'RMSE':>7} {'MASE':>6}")
    for name, pred in rows.items():
        print(
            f"{name:34} {metrics.mape(y_true, pred):7.2f} {metrics.mae(y_true, pred):7.2f} "
            f"{metrics.rmse(y_true, pred):7.2f} {metrics.mase(y_true, pred, y_train, SEASON):6.3f}"
        )


def select(frame: pd.DataFrame, seeds: list[int], max_epochs: int) -> None:
    """Mean MASE of every candidate on 1958 and 1959, each forecast from the months before it.
    Uses the months before 1960 only."""
    before_1960 = frame.iloc[:-TEST_MONTHS]
    print(
        f"validation on {_month(before_1960, 0)} .. {_month(before_1960, -1)} only: each "
        f"candidate fit on the months before {' and before '.join(map(str, SELECT_YEARS))}, "
        f"MASE on the year after, seeds {seeds}"
    )
    splits = {}
    for year in SELECT_YEARS:
        cut = int(np.flatnonzero(before_1960["ds"].dt.year.to_numpy() == year)[0])
        splits[year] = (before_1960.iloc[:cut], before_1960.iloc[cut : cut + SEASON])
    rows = []
    for year, (history, future) in splits.items():
        y_train, y_true = history["y"].to_numpy(), future["y"].to_numpy()
        snaive = metrics.mase(y_true, y_train[-SEASON:], y_train, SEASON)
        rows.append(("seasonal_naive", "-", year, 0, snaive))
    for model, (setting, options), seed in itertools.product(
        SELECT_MODELS, SELECT_SETTINGS.items(), seeds
    ):
        options = {**options, "epochs": min(options["epochs"], max_epochs)}
        for year, (history, future) in splits.items():
            fc = seqcast.Forecaster(
                model, window=RECOMMENDED["window"], horizon=12, season=SEASON, seed=seed, **options
            ).fit(history)
            pred = fc.predict()["y_hat"].to_numpy()
            y_train = history["y"].to_numpy()
            rows.append(
                (
                    model,
                    setting,
                    year,
                    seed,
                    metrics.mase(future["y"].to_numpy(), pred, y_train, SEASON),
                )
            )
        print(f"  {model:10} {setting:22} seed {seed}", flush=True)
    table = pd.DataFrame(rows, columns=["model", "setting", "year", "seed", "mase"])
    means = table.pivot_table(index=["model", "setting"], columns="year", values="mase")
    means["mean"] = means.mean(axis=1)
    print("\nvalidation MASE (mean over seeds), best first")
    print(means.sort_values("mean").round(3).to_string())


def _month(frame: pd.DataFrame, i: int) -> str:
    return frame["ds"].iloc[i].strftime("%Y-%m")


if __name__ == "__main__":
    main()
