"""Built-in data sets: the synthetic sine series of *Hands-on ML* ch. 15, and airline passengers."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from seqcast.data.frames import load_frame
from seqcast.errors import check_positive_int

__all__ = ["generate_time_series", "airline_passengers"]

AIRLINE_ID = "airline"


def generate_time_series(batch_size: int, n_steps: int, seed: int | None = None) -> np.ndarray:
    """`batch_size` noisy sums of two sine waves, float32 of shape (batch_size, n_steps, 1).

    The recipe of Géron's *Hands-on ML* ch. 15, draw for draw: with `seed` the draws come from
    `np.random.RandomState(seed)`, so seed=42 matches the book's `np.random.seed(42)`; with
    seed=None they come from (and advance) the global `np.random` state, as in the book.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("n_steps", n_steps)
    rng = np.random if seed is None else np.random.RandomState(seed)
    freq1, freq2, offsets1, offsets2 = rng.rand(4, batch_size, 1)
    time = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))  # wave 1
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))  # + wave 2
    series += 0.1 * (rng.rand(batch_size, n_steps) - 0.5)  # + noise
    return series[..., np.newaxis].astype(np.float32)


def airline_passengers(as_frame: bool = True) -> pd.DataFrame | np.ndarray:
    """Monthly international airline passengers (thousands), 1949-01 .. 1960-12, 144 values.

    as_frame=True: a long frame with unique_id "airline", monthly datetime `ds` (month starts)
    and float `y`. as_frame=False: the values as a float64 array of shape (144,).
    """
    source = resources.files("seqcast.data").joinpath("airline_passengers.csv")
    with resources.as_file(source) as path:
        frame = load_frame(path, time_col="month", target="passengers", series_id=AIRLINE_ID)
    return frame if as_frame else frame["y"].to_numpy()
