"""Built-in data sets: the book's generator draw for draw, and the shipped airline CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqcast.data.datasets import airline_passengers, generate_time_series
from seqcast.errors import SeqcastError


def book_generate_time_series(batch_size, n_steps):
    """Verbatim from Hands-on ML ch. 15 (global np.random state)."""
    freq1, freq2, offsets1, offsets2 = np.random.rand(4, batch_size, 1)
    time = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (np.random.rand(batch_size, n_steps) - 0.5)
    return series[..., np.newaxis].astype(np.float32)


def test_seed_42_equals_the_books_global_seed():
    state = np.random.get_state()
    try:
        np.random.seed(42)
        book = book_generate_time_series(100, 51)
        np.random.seed(42)
        global_draw = generate_time_series(100, 51)  # seed=None: global state, as in the book
    finally:
        np.random.set_state(state)
    ours = generate_time_series(100, 51, seed=42)
    assert ours.shape == (100, 51, 1) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, book)
    np.testing.assert_array_equal(global_draw, book)


def test_seed_is_local_and_values_bounded():
    state = np.random.get_state()[1].copy()
    a = generate_time_series(20, 30, seed=1)
    assert (np.random.get_state()[1] == state).all()  # a seed never touches the global state
    assert not np.array_equal(a, generate_time_series(20, 30, seed=2))
    np.testing.assert_array_equal(a, generate_time_series(20, 30, seed=1))
    assert np.abs(a).max() <= 0.5 + 0.2 + 0.05


def test_generator_rejects_bad_sizes():
    with pytest.raises(SeqcastError, match="`n_steps` must be a positive integer, got 0"):
        generate_time_series(3, 0)


def test_airline_passengers_frame():
    frame = airline_passengers()
    assert len(frame) == 144
    assert list(frame.columns) == ["unique_id", "ds", "y"]
    assert set(frame["unique_id"]) == {"airline"}
    assert frame["y"].iloc[0] == 112 and frame["y"].iloc[-1] == 432
    assert frame["ds"].iloc[0] == pd.Timestamp("1949-01-01")
    assert frame["ds"].iloc[-1] == pd.Timestamp("1960-12-01")
    assert (frame["ds"].diff().dropna().dt.days.between(28, 31)).all()  # monthly


def test_airline_passengers_array():
    values = airline_passengers(as_frame=False)
    assert values.shape == (144,) and values.dtype == np.float64
    assert values[0] == 112 and values[-1] == 432 and values.max() == 622
