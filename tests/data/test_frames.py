"""load_frame and the frame helpers: formats, detection, validation messages, time utilities."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqcast.data import frames
from seqcast.data.frames import (
    check_enough_history,
    check_no_missing,
    check_time_order,
    future_stamps,
    infer_freq,
    load_frame,
    load_frame_with_rows,
    missing_report,
    split_by_time,
)
from seqcast.errors import SeqcastError

AIRLINE = Path(str(resources.files("seqcast.data").joinpath("airline_passengers.csv")))


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def long_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": ["a"] * 4 + ["b"] * 3,
            "ds": list(pd.date_range("2020-01-01", periods=4, freq="D"))
            + list(pd.date_range("2020-01-01", periods=3, freq="D")),
            "y": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0],
        }
    )


# ----------------------------------------------------------------------------- formats
def test_two_column_csv_needs_no_flags():
    frame = load_frame(AIRLINE)
    assert list(frame.columns) == ["unique_id", "ds", "y"]
    assert len(frame) == 144
    assert frame["y"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(frame["ds"])
    assert frame["ds"].iloc[0] == pd.Timestamp("1949-01-01")
    assert frame["ds"].iloc[-1] == pd.Timestamp("1960-12-01")
    assert frame["y"].iloc[[0, -1]].tolist() == [112.0, 432.0]
    assert set(frame["unique_id"]) == {"series_0"}


def test_parquet_round_trip(tmp_path):
    original = long_frame()
    original["temp"] = np.arange(7.0)
    original.to_parquet(tmp_path / "d.parquet")
    frame = load_frame(tmp_path / "d.parquet", covariates=["temp"])
    pd.testing.assert_frame_equal(frame, original, check_dtype=False)
    assert frame["temp"].dtype == np.float64


def test_long_dataframe_keeps_ids_and_order():
    frame = load_frame(long_frame())
    assert frame["unique_id"].tolist() == ["a"] * 4 + ["b"] * 3
    assert frame["y"].tolist() == long_frame()["y"].tolist()


def test_interleaved_series_come_back_grouped_by_series():
    """Rows sorted by date (as database exports are) load as one block per series: the
    rest of the library cuts each series out of the frame as a contiguous block."""
    interleaved = long_frame().iloc[[0, 4, 1, 5, 2, 6, 3]].reset_index(drop=True)
    frame = load_frame(interleaved)
    pd.testing.assert_frame_equal(frame, load_frame(long_frame()))
    assert frame["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0]
    assert frame.index.equals(pd.RangeIndex(7))


def test_series_come_in_sorted_id_order_whatever_the_input_order():
    ids_reversed = long_frame().iloc[[4, 5, 6, 0, 1, 2, 3]].set_index(pd.Index(list("gfedcba")))
    frame = load_frame(ids_reversed)
    pd.testing.assert_frame_equal(frame, load_frame(long_frame()))
    two = load_frame(np.arange(6).reshape(3, 2), series_id=["z", "x"])
    assert two["unique_id"].tolist() == ["x"] * 3 + ["z"] * 3
    assert two["y"].tolist() == [1.0, 3.0, 5.0, 0.0, 2.0, 4.0]


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_interleaving_gives_the_same_frame(random):
    """Shuffle the rows but keep each series in time order: the frame never changes."""
    source = long_frame()
    owners = source["unique_id"].tolist()
    random.shuffle(owners)  # which series takes each next row
    queues = {sid: list(rows.index) for sid, rows in source.groupby("unique_id")}
    order = [queues[sid].pop(0) for sid in owners]
    frame, rows = load_frame_with_rows(source.iloc[order])
    pd.testing.assert_frame_equal(frame, load_frame(source), check_exact=True)
    np.testing.assert_array_equal(np.asarray(order)[rows], np.arange(7))


def test_source_rows_restore_the_input_order():
    interleaved = long_frame().iloc[[0, 4, 1, 5, 2, 6, 3]].reset_index(drop=True)
    frame, rows = load_frame_with_rows(interleaved)
    assert rows.tolist() == [0, 2, 4, 6, 1, 3, 5]
    back = frame.iloc[np.argsort(rows)].reset_index(drop=True)
    pd.testing.assert_frame_equal(back, interleaved)
    _, already = load_frame_with_rows(long_frame())
    assert already.tolist() == list(range(7))


def test_numpy_1d_and_2d():
    one = load_frame(np.array([3.0, 1.0, 2.0]))
    assert one["ds"].tolist() == [0, 1, 2] and one["ds"].dtype == np.int64
    assert one["y"].tolist() == [3.0, 1.0, 2.0]
    two = load_frame(np.arange(6).reshape(3, 2))
    assert two["unique_id"].tolist() == ["series_0"] * 3 + ["series_1"] * 3
    assert two["y"].tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    named = load_frame(np.arange(6).reshape(3, 2), series_id=["x", "z"])
    assert named["unique_id"].unique().tolist() == ["x", "z"]


def test_series_with_and_without_datetime_index():
    dated = pd.Series([1.0, 2.0], index=pd.date_range("2021-05-01", periods=2, freq="MS"))
    frame = load_frame(dated, series_id="s")
    assert frame["ds"].tolist() == list(dated.index) and frame["unique_id"].tolist() == ["s"] * 2
    plain = load_frame(pd.Series([5.0, 6.0, 7.0], index=[10, 20, 30]))
    assert plain["ds"].tolist() == [0, 1, 2]


def test_integer_time_stays_integer(tmp_path):
    frame = load_frame(write(tmp_path, "t,value\n1,5\n2,6\n4,7\n"), time_col="t")
    assert frame["ds"].dtype == np.int64 and frame["ds"].tolist() == [1, 2, 4]


def test_date_column_found_by_values_and_datetime_index():
    frame = load_frame(pd.DataFrame({"when": ["2020-01-01", "2020-01-02"], "v": [1, 2]}))
    assert frame["ds"].iloc[1] == pd.Timestamp("2020-01-02")
    indexed = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.date_range("2020", periods=2))
    assert load_frame(indexed)["ds"].iloc[0] == pd.Timestamp("2020-01-01")


def test_lone_value_column_gets_integer_time():
    assert load_frame(pd.DataFrame({"v": [4.0, 5.0]}))["ds"].tolist() == [0, 1]


def test_missing_values_are_kept(tmp_path):
    frame = load_frame(write(tmp_path, "date,y\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n"))
    assert len(frame) == 3 and np.isnan(frame["y"].iloc[1])


# ----------------------------------------------------------------------------- validation
def test_missing_file():
    with pytest.raises(SeqcastError, match="no such file: .*nope.csv"):
        load_frame("nope.csv")


def test_empty_file_and_header_only(tmp_path):
    with pytest.raises(SeqcastError, match="is empty"):
        load_frame(write(tmp_path, ""))
    with pytest.raises(SeqcastError, match="no data rows.*'date', 'y'"):
        load_frame(write(tmp_path, "date,y\n"))
    with pytest.raises(SeqcastError, match="no rows"):
        load_frame(pd.DataFrame({"ds": [], "y": []}))
    with pytest.raises(SeqcastError, match="empty"):
        load_frame(np.array([]))


def test_unsupported_extension(tmp_path):
    with pytest.raises(SeqcastError, match=r"unsupported file type '\.xlsx'.*\.csv"):
        load_frame(write(tmp_path, "x", "data.xlsx"))


def test_unknown_column_lists_available():
    with pytest.raises(SeqcastError) as err:
        load_frame(AIRLINE, target="Passengers")
    message = str(err.value)
    assert "'Passengers'" in message and "'month', 'passengers'" in message
    assert "did you mean 'passengers'" in message


def test_unparseable_time_shows_first_bad_value(tmp_path):
    path = write(tmp_path, "date,y\n2020-01-01,1\n2020-01-02,2\nsoon,3\n")
    with pytest.raises(SeqcastError, match="'soon'.*line 4 of data.csv"):
        load_frame(path)


def test_non_numeric_target_shows_value_and_row(tmp_path):
    path = write(tmp_path, "date,y\n2020-01-01,1\n2020-01-02,12a\n")
    with pytest.raises(SeqcastError, match="'12a' at line 3 of data.csv"):
        load_frame(path)
    with pytest.raises(SeqcastError, match="'x' at row 1"):
        load_frame(pd.DataFrame({"ds": [0, 1], "y": ["1", "x"]}))


def test_unsorted_names_series_and_stamp_and_does_not_sort():
    frame = long_frame().iloc[[0, 2, 1, 3, 4, 5, 6]]
    with pytest.raises(SeqcastError, match="series 'a' is not sorted.*2020-01-02.*sort"):
        load_frame(frame)
    # interleaved with another series, it is still refused, and named by its input row
    frame = long_frame().iloc[[4, 0, 5, 2, 6, 1, 3]]
    with pytest.raises(SeqcastError, match="series 'a' is not sorted.*row 5.*sort"):
        load_frame(frame)
    with pytest.raises(SeqcastError, match="series 'a' is not sorted.*row 5.*sort"):
        check_time_order(frame)
    check_time_order(long_frame().iloc[[0, 4, 1, 5, 2, 6, 3]])  # interleaved, in time order


def test_duplicate_stamp_names_series_and_stamp():
    frame = pd.concat([long_frame(), long_frame().iloc[[5]]], ignore_index=True)
    with pytest.raises(SeqcastError, match="series 'b' has duplicate time stamp 2020-01-02"):
        load_frame(frame)


def test_ambiguous_target_and_time_ask_for_flags():
    with pytest.raises(SeqcastError, match="'a', 'b'.*`target=`"):
        load_frame(pd.DataFrame({"ds": [0, 1], "a": [1.0, 2.0], "b": [3.0, 4.0]}))
    with pytest.raises(SeqcastError, match="several candidates.*`time_col=`"):
        load_frame(pd.DataFrame({"date": ["2020-01-01"], "time": ["2020"], "y": [1.0]}))


def test_array_rejects_table_options():
    with pytest.raises(SeqcastError, match="`target`"):
        load_frame(np.ones(3), target="y")


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(6))))
def test_loads_iff_stamps_increase(order):
    frame = pd.DataFrame({"ds": order, "y": np.arange(6.0)})
    if list(order) == sorted(order):
        assert load_frame(frame)["ds"].tolist() == list(order)
    else:
        with pytest.raises(SeqcastError, match="not sorted"):
            load_frame(frame)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=30))
def test_array_values_survive_unchanged(values):
    frame = load_frame(np.array(values))
    np.testing.assert_array_equal(frame["y"].to_numpy(), np.array(values))
    assert len(frame) == len(values)


# ----------------------------------------------------------------------------- helpers
def test_missing_report_and_check_no_missing():
    frame = load_frame(AIRLINE, series_id="airline")
    frame.loc[[26, 30, 40], "y"] = np.nan
    report = missing_report(frame)
    assert report.to_dict("records")[0] == {
        "unique_id": "airline",
        "length": 144,
        "missing": 3,
        "first_missing": pd.Timestamp("1951-03-01"),
        "positions": [26, 30, 40],
    }
    with pytest.raises(SeqcastError) as err:
        check_no_missing(frame)
    assert str(err.value).startswith(
        "series 'airline' has 3 missing values in y (first at 1951-03-01)"
    )
    assert "seqcast.impute" in str(err.value)
    check_no_missing(load_frame(AIRLINE))  # complete: no error


def test_check_enough_history():
    frame = load_frame(np.arange(20.0), series_id="X")
    with pytest.raises(SeqcastError, match="'X' has 20 points but window 24 \\+ horizon 12 "):
        check_enough_history(frame, 24, 12)
    check_enough_history(frame, 10, 10)


def test_infer_freq():
    assert infer_freq(load_frame(AIRLINE)) == "MS"
    assert infer_freq(load_frame(long_frame())) == "D"
    assert infer_freq(load_frame(np.arange(5.0))) == 1
    assert infer_freq(pd.DataFrame({"unique_id": "a", "ds": [0, 5, 10], "y": 1.0})) == 5
    stamps = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05"])
    irregular = load_frame(pd.DataFrame({"ds": stamps, "y": 1.0}))
    with pytest.raises(SeqcastError, match="irregular"):
        infer_freq(irregular)


def test_future_stamps():
    stamps = future_stamps(pd.Timestamp("1960-12-01"), "MS", 3)
    assert list(stamps) == list(pd.to_datetime(["1961-01-01", "1961-02-01", "1961-03-01"]))
    assert future_stamps(9, 1, 3).tolist() == [10, 11, 12]
    assert future_stamps(np.int64(10), 5, 2).tolist() == [15, 20]
    with pytest.raises(SeqcastError, match="unknown frequency 'fortnightly'"):
        future_stamps(pd.Timestamp("2020-01-01"), "fortnightly", 2)


def test_split_by_time_holds_out_last_points_of_each_series():
    train, test = split_by_time(load_frame(long_frame()), 2)
    assert test["y"].tolist() == [3.0, 4.0, 20.0, 30.0]
    assert train["y"].tolist() == [1.0, 2.0, 10.0]
    with pytest.raises(SeqcastError, match="series 'b' has 3 points"):
        split_by_time(load_frame(long_frame()), 3)


@pytest.mark.parametrize(
    ("last", "freq"),
    [
        (pd.date_range("2000-01-01", periods=7, freq="MS"), "MS"),
        (pd.date_range("2000-01-31", periods=7, freq="ME"), "ME"),
        (pd.date_range("2024-03-30", periods=7, freq="h", tz="Europe/Paris"), "h"),  # DST
        (pd.date_range("2000-01-02", periods=7, freq="W-SUN"), "W-SUN"),
        ([3, 7, 100], 2),
    ],
)
def test_future_stamps_of_many_series_equal_each_series_stamps_in_turn(last, freq):
    each = [frames.future_stamps(d, freq, 5) for d in list(last)]
    many = frames.future_stamps_many(list(last), freq, 5)
    assert len(many) == 5 * len(each)
    assert list(many) == [s for stamps in each for s in stamps]
    assert many.dtype == each[0].dtype  # zone and resolution kept
