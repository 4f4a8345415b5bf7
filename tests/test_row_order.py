"""The order of the input rows never changes a result.

Database exports list many series interleaved (sorted by date); spreadsheets list them one
after another, in any id order. `load_frame` puts every frame in one canonical order, so
fit / predict / evaluate / backtest / compare / impute give bit-identical results for every
interleaving that keeps each series in time order, and refuse a series that is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqcast.compare import compare
from seqcast.errors import SeqcastError
from seqcast.forecast import Forecaster
from seqcast.impute import impute

LENGTHS = {"north": 40, "east": 55, "west": 48}
STARTS = {"north": "2021-01-01", "east": "2020-12-10", "west": "2021-01-20"}
OPTIONS = {"window": 8, "horizon": 4, "units": 8, "epochs": 3, "seed": 0}


def by_id() -> pd.DataFrame:
    """Three daily series of different lengths and start dates, listed one after another."""
    rng = np.random.default_rng(0)
    parts = []
    for k, (sid, n) in enumerate(LENGTHS.items()):
        t = np.arange(n)
        y = 10 * (k + 1) + 0.3 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.5, n)
        ds = pd.date_range(STARTS[sid], periods=n, freq="D")
        parts.append(pd.DataFrame({"unique_id": sid, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True).sort_values("unique_id", kind="stable")


def by_date() -> pd.DataFrame:
    return by_id().sort_values(["ds", "unique_id"], kind="stable")


def shuffled() -> pd.DataFrame:
    """Rows randomly interleaved, each series still in its own time order."""
    frame = by_id().reset_index(drop=True)
    owners = np.random.default_rng(7).permutation(frame["unique_id"].to_numpy())
    queues = {sid: list(rows) for sid, rows in frame.groupby("unique_id").indices.items()}
    return frame.iloc[[queues[sid].pop(0) for sid in owners]]


def ids_reversed() -> pd.DataFrame:
    frame = by_id()
    order = sorted(LENGTHS, reverse=True)
    return pd.concat([frame[frame["unique_id"] == sid] for sid in order], ignore_index=True)


ORDERS = {"by_id": by_id, "by_date": by_date, "shuffled": shuffled, "ids_reversed": ids_reversed}


def test_the_orders_really_differ():
    keys = {
        name: tuple(make()["unique_id"] + make()["ds"].astype(str)) for name, make in ORDERS.items()
    }
    assert len(set(keys.values())) == len(ORDERS)
    assert all(sorted(k) == sorted(keys["by_id"]) for k in keys.values())  # the same rows
    assert shuffled()["unique_id"].iloc[:6].nunique() > 1  # interleaved, not in blocks


def run_all(model: str, data: pd.DataFrame):
    fc = Forecaster(model, **OPTIONS).fit(data)
    return (
        fc.predict(intervals=[80]),
        fc.predict(data, intervals=[80]),
        fc.evaluate(data),
        fc.backtest(data, windows=2),
    )


@pytest.mark.parametrize("model", ["naive", "linear", "lstm"])
def test_results_are_bit_identical_for_every_row_order(model):
    expected = run_all(model, by_id())
    for name, make in ORDERS.items():
        predicted, predicted_again, scores, backtest = run_all(model, make())
        pd.testing.assert_frame_equal(predicted, expected[0], check_exact=True, obj=name)
        pd.testing.assert_frame_equal(predicted_again, expected[1], check_exact=True, obj=name)
        assert scores == expected[2], name
        pd.testing.assert_frame_equal(backtest, expected[3], check_exact=True, obj=name)
    # and the forecasts follow their own series: each starts the day after its last point
    first = expected[0].groupby("unique_id")["ds"].first()
    last = by_id().groupby("unique_id")["ds"].last()
    assert (first - last == pd.Timedelta(days=1)).all()


def two_ramps_by_date() -> pd.DataFrame:
    ds = pd.date_range("2020-01-01", periods=30, freq="D")
    a = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(30.0)})
    b = pd.DataFrame({"unique_id": "b", "ds": ds, "y": 100 + np.arange(30.0)})
    return pd.concat([a, b]).sort_values(["ds", "unique_id"]).reset_index(drop=True)


def test_naive_forecast_is_each_series_own_last_value():
    """Rows sorted by date once made the naive forecast of 'a' 27 (a mix of a's and b's
    rows), not its last value 29."""
    pred = Forecaster("naive", window=4, horizon=2).fit(two_ramps_by_date()).predict()
    assert pred.groupby("unique_id")["y_hat"].apply(list).to_dict() == {
        "a": [29.0, 29.0],
        "b": [129.0, 129.0],
    }


def test_linear_model_sees_only_its_own_series():
    data = two_ramps_by_date()
    blocks = data.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    options = {"window": 4, "horizon": 2, "epochs": 2, "seed": 0}
    interleaved = Forecaster("linear", **options).fit(data).predict()
    pd.testing.assert_frame_equal(
        interleaved, Forecaster("linear", **options).fit(blocks).predict(), check_exact=True
    )


def test_a_series_out_of_time_order_is_still_refused():
    data = by_date().reset_index(drop=True)
    west = np.flatnonzero(data["unique_id"] == "west")
    data.iloc[west[[5, 6]]] = data.iloc[west[[6, 5]]].to_numpy()
    with pytest.raises(SeqcastError, match="series 'west' is not sorted by time.*sort"):
        Forecaster("naive", window=4, horizon=2).fit(data)


def test_compare_is_the_same_for_every_row_order():
    def board(data):
        result = compare(data, horizon=4, models="linear", window=8, epochs=2, seed=0)
        return result.leaderboard.drop(columns="fit_seconds")

    expected = board(by_id())
    for name, make in ORDERS.items():
        pd.testing.assert_frame_equal(board(make()), expected, check_exact=True, obj=name)


def test_impute_is_the_same_for_every_row_order_and_keeps_the_input_order():
    def gappy(frame):
        frame = frame.copy()
        frame.loc[frame["ds"].isin(pd.to_datetime(["2021-01-25", "2021-01-26"])), "y"] = np.nan
        return frame

    options = {"window": 8, "units": 4, "epochs": 2, "seed": 0}
    expected = impute(gappy(by_id()), **options)
    key = ["unique_id", "ds"]
    for name, make in ORDERS.items():
        data = gappy(make())
        result = impute(data, **options)
        assert result.frame[key].equals(data[key].reset_index(drop=True)), name
        canonical = result.frame.sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(
            canonical, expected.frame.sort_values(key, ignore_index=True), check_exact=True
        )
        assert result.report == expected.report, name
