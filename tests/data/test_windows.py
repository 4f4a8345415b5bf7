"""Windows: shapes, no leakage, agreement with a naive loop, views, frame windows, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqcast.data.datasets import generate_time_series
from seqcast.data.windows import (
    TARGETS,
    make_windows,
    split_series,
    time_split_windows,
    windows_from_frame,
)
from seqcast.errors import SeqcastError


def naive_windows(values, window, horizon, target, stride, n_targets):
    """Reference: one Python loop per window, straight from the definitions."""
    values = values.reshape(len(values), -1)
    xs, ys = [], []
    for s in range(0, len(values) - window - horizon + 1, stride):
        xs.append(values[s : s + window])
        if target == "seq2seq":
            y = [
                [values[s + t + 1 + k, j] for k in range(horizon) for j in range(n_targets)]
                for t in range(window)
            ]
            ys.append(np.array(y))
        else:
            ys.append(values[s + window : s + window + horizon, :n_targets])
    return np.array(xs), np.array(ys)


def indexed(n_time: int, n_features: int = 2) -> np.ndarray:
    """Column 0 holds the time index itself, so a window's values are its indices."""
    return np.stack([np.arange(n_time) * (f + 1.0) for f in range(n_features)], axis=1)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    ("target", "horizon", "y_shape"),
    [("one_step", 1, (38, 1, 1)), ("vector", 5, (34, 5, 1)), ("seq2seq", 5, (34, 10, 5))],
)
def test_shapes(target, horizon, y_shape):
    x, y = make_windows(indexed(48, 3), window=10, horizon=horizon, target=target)
    assert x.shape == (y_shape[0], 10, 3) and y.shape == y_shape
    assert len(x) == 48 - 10 - horizon + 1


def test_stride_and_multi_target_shapes():
    x, y = make_windows(indexed(50, 3), window=10, horizon=4, stride=3, n_targets=2)
    assert x.shape == (13, 10, 3) and y.shape == (13, 4, 2)
    assert x[1, 0, 0] == 3.0
    _, y2 = make_windows(indexed(50, 3), 10, 4, "seq2seq", stride=3, n_targets=2)
    assert y2.shape == (13, 10, 8)


# ----------------------------------------------------------------------------- no leakage
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("stride", [1, 2])
def test_no_target_in_its_own_input_window(target, stride):
    horizon = 1 if target == "one_step" else 4
    x, y = make_windows(indexed(40), window=6, horizon=horizon, target=target, stride=stride)
    last_input = x[:, -1, 0]  # index of the last input step of each window
    if target == "seq2seq":
        # At every step t the targets lie after the input seen at t (Y[i, t, k] = t + 1 + k)...
        assert (y > x[:, :, :1]).all()
        np.testing.assert_array_equal(y[:, :, 0], x[:, :, 0] + 1)
        # ...and the forecast after the whole window lies after the whole window.
        assert (y[:, -1, :] > last_input[:, None]).all()
    else:
        assert (y[..., 0] > last_input[:, None]).all()
        np.testing.assert_array_equal(y[:, 0, 0], last_input + 1)


def test_seq2seq_matches_the_books_construction():
    n_steps, ahead = 20, 10
    series = generate_time_series(3, n_steps + ahead, seed=7)
    book = np.empty((3, n_steps, ahead), dtype=np.float32)
    for step_ahead in range(1, ahead + 1):
        book[..., step_ahead - 1] = series[..., step_ahead : step_ahead + n_steps, 0]
    for i in range(3):
        x, y = make_windows(series[i], n_steps, ahead, "seq2seq")
        assert x.shape == (1, n_steps, 1) and y.shape == (1, n_steps, ahead)
        np.testing.assert_array_equal(x[0], series[i, :n_steps])
        np.testing.assert_array_equal(y[0], book[i])


# ----------------------------------------------------------------------------- properties
@settings(max_examples=80, deadline=None)
@given(
    n_time=st.integers(2, 40),
    window=st.integers(1, 8),
    horizon=st.integers(1, 5),
    stride=st.integers(1, 4),
    n_features=st.integers(1, 3),
    n_targets=st.integers(1, 3),
    target=st.sampled_from(TARGETS),
    use_torch=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_loop(
    n_time, window, horizon, stride, n_features, n_targets, target, use_torch, seed
):
    horizon = 1 if target == "one_step" else horizon
    n_targets = min(n_targets, n_features)
    values = np.random.default_rng(seed).normal(size=(n_time, n_features))
    if n_time < window + horizon:
        with pytest.raises(SeqcastError, match="too short"):
            make_windows(values, window, horizon, target, stride, n_targets)
        return
    source = torch.from_numpy(values) if use_torch else values
    x, y = make_windows(source, window, horizon, target, stride, n_targets)
    x_ref, y_ref = naive_windows(values, window, horizon, target, stride, n_targets)
    if target == "seq2seq" and n_targets == 1:
        y_ref = y_ref.reshape(len(y_ref), window, horizon)
    np.testing.assert_array_equal(np.asarray(x), x_ref)
    np.testing.assert_array_equal(np.asarray(y), y_ref)


def test_windows_are_views_not_copies():
    values = indexed(30)
    x, y = make_windows(values, 5, 3)
    assert np.shares_memory(x, values) and np.shares_memory(y, values)
    _, y_seq = make_windows(values[:, :1].copy(), 5, 3, "seq2seq")
    assert y_seq.base is not None
    tensor = torch.arange(30.0)
    tx, ty = make_windows(tensor, 5, 3)
    assert tx.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()
    assert ty.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()


def test_errors():
    with pytest.raises(SeqcastError, match="30 points is too short for window 25 \\+ horizon 6"):
        make_windows(np.ones(30), 25, 6)
    with pytest.raises(SeqcastError, match="'one_step' predicts 1 step.*horizon=3"):
        make_windows(np.ones(30), 5, 3, "one_step")
    with pytest.raises(SeqcastError, match="unknown target 'multi'"):
        make_windows(np.ones(30), 5, 3, "multi")
    with pytest.raises(SeqcastError, match="`window` must be a positive integer, got 0"):
        make_windows(np.ones(30), 0, 3)
    with pytest.raises(SeqcastError, match="only 1 feature"):
        make_windows(np.ones(30), 5, 3, n_targets=2)
    with pytest.raises(SeqcastError, match=r"\(time,\) or \(time, features\), got \(2, 3, 4\)"):
        make_windows(np.ones((2, 3, 4)), 1, 1)


# ----------------------------------------------------------------------------- frames
def two_series() -> pd.DataFrame:
    lengths = {"a": 30, "b": 40}
    return pd.DataFrame(
        {
            "unique_id": [sid for sid, n in lengths.items() for _ in range(n)],
            "ds": [t for n in lengths.values() for t in range(n)],
            "y": [float(t) for n in lengths.values() for t in range(n)],
            "temp": [-float(t) for n in lengths.values() for t in range(n)],
        }
    )


def test_windows_from_frame_concatenates_series():
    w = windows_from_frame(two_series(), window=8, horizon=3, covariates=["temp"])
    assert w.ids == ["a", "b"]
    assert w.X.shape == (20 + 30, 8, 2) and w.Y.shape == (50, 3, 1)
    assert w.X.dtype == np.float32
    assert (w.series == np.repeat([0, 1], [20, 30])).all()
    np.testing.assert_array_equal(w.start, np.r_[np.arange(20), np.arange(30)])
    np.testing.assert_array_equal(w.X[:, 0, 0], w.start)  # y equals the position here
    np.testing.assert_array_equal(w.X[..., 1], -w.X[..., 0])  # covariate rides along
    np.testing.assert_array_equal(w.Y[:, 0, 0], w.start + 8)  # never inside its own window


def test_windows_from_frame_gathers_interleaved_series():
    """Rows sorted by time across series (as database exports are) give each series the
    same windows as contiguous blocks do."""
    blocks = two_series()
    interleaved = blocks.sort_values(["ds", "unique_id"], kind="stable").reset_index(drop=True)
    w, expected = windows_from_frame(interleaved, 8, 3), windows_from_frame(blocks, 8, 3)
    assert w.ids == expected.ids
    for name in ("X", "Y", "series", "start"):
        np.testing.assert_array_equal(getattr(w, name), getattr(expected, name))


def test_windows_from_frame_refuses_a_series_out_of_time_order():
    data = two_series()
    data.iloc[[3, 4]] = data.iloc[[4, 3]].to_numpy()  # series 'a' steps back in time
    with pytest.raises(SeqcastError, match="series 'a' is not sorted by time.*sort"):
        windows_from_frame(data, 8, 3)


def test_windows_from_frame_checks():
    data = two_series()
    data.loc[35, "y"] = np.nan
    with pytest.raises(SeqcastError, match="series 'b' has 1 missing value in y"):
        windows_from_frame(data, 8, 3)
    with pytest.raises(SeqcastError, match="series 'a' has 30 points but window 30"):
        windows_from_frame(two_series(), 30, 3)
    with pytest.raises(SeqcastError, match=r"lacks column\(s\) \['wind'\]"):
        windows_from_frame(two_series(), 8, 3, covariates=["wind"])


# ----------------------------------------------------------------------------- splits
def test_time_split_windows_is_chronological_and_disjoint():
    train, valid, test = time_split_windows(10000, (0.7, 0.2, 0.1))
    assert (train, valid, test) == (slice(0, 7000), slice(7000, 9000), slice(9000, 10000))
    train, valid = time_split_windows(100, (0.8, 0.2), gap=5)
    assert train == slice(0, 80) and valid == slice(85, 100)


def test_time_split_windows_errors():
    with pytest.raises(SeqcastError, match="sum to 1"):
        time_split_windows(100, (0.8, 0.3))
    with pytest.raises(SeqcastError, match="is empty"):
        time_split_windows(1, (0.5, 0.5))
    with pytest.raises(SeqcastError, match="split 1 of 5 windows.*gap 1 is empty"):
        time_split_windows(5, (0.9, 0.1), gap=1)


def test_split_series_with_context():
    values = np.arange(10)
    train, test = split_series(values, 0.7)
    assert train.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]
    _, with_context = split_series(values, 0.7, context=3)
    assert with_context.tolist() == [4, 5, 6, 7, 8, 9]
    x, y = make_windows(with_context, window=3, horizon=1)
    assert y.min() >= 7  # every target lies in the test period
    with pytest.raises(SeqcastError, match="empty part"):
        split_series(values, 0.05)
    with pytest.raises(SeqcastError, match=r"\(0, 1\)"):
        split_series(values, 1.5)
