"""The array paths taken for large frames give what the general (groupby) paths give:
categorical ids, the time-order check, the last windows of contiguous series, and forecasts
computed in batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqcast.data import frames
from seqcast.data.preprocess import WindowPipeline, scaling_from_state
from seqcast.errors import SeqcastError


def _long(n_series: int = 5, length: int = 9, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"s{k}" for k in range(n_series)], length)
    ds = np.tile(np.arange(length, dtype=np.int64) * 3, n_series)
    return pd.DataFrame({"unique_id": ids, "ds": ds, "y": rng.normal(5, 2, len(ids))})


def _interleaved(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows ordered by time first (series interleave, each still in time order)."""
    return frame.sort_values(["ds", "unique_id"], kind="stable").reset_index(drop=True)


def test_categorical_ids_load_like_strings():
    table = _interleaved(_long())
    as_category = table.assign(unique_id=pd.Categorical(table["unique_id"]))
    expected = frames.load_frame(table, id_col="unique_id")
    got = frames.load_frame(as_category, id_col="unique_id")
    pd.testing.assert_frame_equal(got, expected)
    assert got["unique_id"].dtype == object


def test_categories_that_print_alike_are_one_series():
    table = pd.DataFrame({"unique_id": pd.Categorical([1, "1", 2]), "ds": [0, 1, 0], "y": 1.0})
    frame = frames.load_frame(table, id_col="unique_id", time_col="ds", target="y")
    assert frame["unique_id"].tolist() == ["1", "1", "2"]
    assert frame["ds"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("categorical", [False, True])
@pytest.mark.parametrize("kind", ["duplicate", "backwards"])
def test_order_errors_name_the_same_row(kind, categorical):
    table = _interleaved(_long())
    i = int(np.flatnonzero(table["unique_id"] == "s3")[4])
    stamp = table.at[i - 5, "ds"] if kind == "duplicate" else -1  # (row i - 5: s3 at time 3)
    table.loc[i, "ds"] = stamp
    if categorical:
        table["unique_id"] = pd.Categorical(table["unique_id"])
    word = "duplicate time stamp" if kind == "duplicate" else "is not sorted by time"
    with pytest.raises(SeqcastError, match=f"'s3' .*{word}.* at row {i}"):
        frames.load_frame(table, id_col="unique_id")


def test_dates_and_zoned_dates_still_checked():
    table = _long(2, 4)
    table["ds"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(table["ds"], unit="D")
    frames.check_time_order(table)
    zoned = table.assign(ds=table["ds"].dt.tz_localize("UTC"))
    frames.check_time_order(zoned)
    zoned.loc[2, "ds"] = zoned.loc[0, "ds"] - pd.Timedelta(days=1)
    with pytest.raises(SeqcastError, match="'s0' is not sorted by time"):
        frames.check_time_order(zoned)


def _assert_same_windows(got, expected):
    assert got.ids == expected.ids
    assert got.last == expected.last
    for name in ("x", "level", "loc", "scale"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def _reference_windows(frame, window, scaler, local_level, columns):
    """Each series' last window, scaled by its own rows and shifted, series by series."""
    xs = []
    for _, part in frame.groupby("unique_id", sort=False):
        values = part[columns].to_numpy(np.float64)
        if scaler == "standard":
            values = (values - values.mean(0)) / values.std(0)
        elif scaler == "minmax":
            low = values.min(0)
            values = (values - low) / (values.max(0) - low)
        x = values[-window:].copy()
        x[:, 0] -= x[-1, 0] if local_level else 0.0
        xs.append(x)
    return np.stack(xs)


@pytest.mark.parametrize("scaler", ["standard", "minmax", None])
@pytest.mark.parametrize("local_level", [True, False])
def test_last_windows_match_a_series_by_series_reference(scaler, local_level):
    frame = _long(6, 11).assign(x1=lambda f: np.cos(f["ds"]) * (1 + f.index % 3))
    pipeline = WindowPipeline(4, scaler, local_level, ["x1"]).fit(frame)
    blocks = pipeline.last_windows(frame)  # contiguous series
    assert blocks.ids == [f"s{k}" for k in range(6)]
    assert blocks.last == [30] * 6
    expected = _reference_windows(frame, 4, scaler, local_level, ["y", "x1"])
    np.testing.assert_allclose(blocks.x, expected, rtol=1e-12, atol=1e-12)
    restored = pipeline.to_original(blocks.x[:, :, 0], blocks)
    tails = frame.groupby("unique_id").tail(4)["y"].to_numpy().reshape(6, 4)
    np.testing.assert_allclose(restored, tails, rtol=1e-12)
    # series interleaved: the same windows, series in order of first appearance
    _assert_same_windows(pipeline.last_windows(_interleaved(frame)), blocks)
    if scaler is not None:
        given = pipeline.scaling(frame.iloc[::-1].reset_index(drop=True))
        _assert_same_windows(
            pipeline.last_windows(_interleaved(frame), given), pipeline.last_windows(frame, given)
        )


def test_last_windows_of_blocks_refuse_as_before():
    frame = _long(3, 6)
    pipeline = WindowPipeline(4).fit(frame)
    short = frame[~((frame["unique_id"] == "s1") & (frame["ds"] < 9))].reset_index(drop=True)
    with pytest.raises(SeqcastError, match="series 's1' has 3 points but the model needs"):
        pipeline.last_windows(short)
    gap = frame.copy()
    gap.loc[16, "y"] = np.nan  # s2's fifth point: inside its last window
    with pytest.raises(SeqcastError, match="series 's2' has 1 missing value in y"):
        pipeline.last_windows(gap)
    gap.loc[16, "y"], gap.loc[12, "y"] = 1.0, np.nan  # before the last window: no error
    assert len(pipeline.last_windows(gap).ids) == 3
    state = {"class": "StandardScaler", "format_version": 1, "params": {},
             "fitted": {"ids": ["s0"], "columns": ["y"], "loc": [[0.0]], "scale": [[1.0]],
                        "mean_": [[0.0]]}}  # fmt: skip
    with pytest.raises(SeqcastError, match="series 's1' has no scaling parameters"):
        pipeline.last_windows(frame, scaling_from_state(state))


def test_forecasts_in_batches_match_one_batch(monkeypatch):
    from seqcast import forecast
    from seqcast.forecast import Forecaster

    frame = _long(40, 30, seed=3)
    fc = Forecaster("lstm", window=6, horizon=3, epochs=1, units=4).fit(frame)
    one = fc.predict(frame)
    monkeypatch.setattr(forecast, "FORECAST_BATCH", 7)  # 40 windows: 5 full batches and 5
    batched = fc.predict(frame)
    pd.testing.assert_frame_equal(batched[["unique_id", "ds"]], one[["unique_id", "ds"]])
    # each window's forecast depends on it alone; only summation order may differ (float32)
    np.testing.assert_allclose(batched["y_hat"], one["y_hat"], rtol=1e-5, atol=1e-6)
