"""Metrics against hand-computed values, on numpy, lists and torch, with their error cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqcast.errors import SeqcastError
from seqcast.metrics import (
    competition_mase,
    competition_smape,
    coverage,
    interval_width,
    last_time_step_mse,
    mae,
    mape,
    mase,
    mse,
    msis,
    rmse,
    smape,
)

Y = [1.0, 2.0, 3.0, 4.0]
P = [2.0, 2.0, 5.0, 4.0]  # errors -1, 0, -2, 0


@pytest.mark.parametrize("kind", [list, np.array, torch.tensor])
def test_point_metrics_by_hand(kind):
    y, p = kind(Y), kind(P)
    assert mse(y, p) == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert rmse(y, p) == pytest.approx(math.sqrt(1.25))
    assert mae(y, p) == pytest.approx(3 / 4)
    assert mape(y, p) == pytest.approx(100 * (1 / 1 + 2 / 3) / 4)
    assert smape(y, p) == pytest.approx(100 * (2 / 3 + 4 / 8) / 4)
    assert isinstance(mse(y, p), float)


def test_mase_by_hand():
    train = [1.0, 3.0, 2.0, 5.0]
    # season 1: naive errors 2, 1, 3 -> 2; season 2: |2-1|, |5-3| -> 1.5
    assert mase(Y, P, train) == pytest.approx(0.75 / 2)
    assert mase(Y, P, train, season=2) == pytest.approx(0.75 / 1.5)


def test_mase_errors():
    with pytest.raises(SeqcastError, match="y_train has 4 point\\(s\\) but season=4 needs"):
        mase(Y, P, [1.0, 2.0, 3.0, 4.0], season=4)
    with pytest.raises(SeqcastError, match="seasonal-naive error .* is 0"):
        mase(Y, P, [1.0, 2.0, 1.0, 2.0], season=2)


def test_mape_zero_actuals_raise():
    with pytest.raises(SeqcastError, match="1 zero value.*index \\(1,\\).*smape"):
        mape([1.0, 0.0], [1.0, 1.0])


def test_smape_edges():
    assert smape([0.0, 1.0], [0.0, 1.0]) == 0.0  # 0/0 counts as a perfect point
    assert smape([0.0, 0.0], [1.0, -3.0]) == pytest.approx(200.0)
    assert smape([1.0], [-1.0]) == pytest.approx(200.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
def test_smape_is_within_0_and_200(pairs):
    y, p = np.array(pairs).T
    assert 0.0 <= smape(y, p) <= 200.0 + 1e-9
    assert smape(y, y) == 0.0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(
        SeqcastError, match=r"y_true has shape \(4,\) but y_pred has shape \(4, 1\)"
    ):
        mse(np.ones(4), np.ones((4, 1)))
    with pytest.raises(SeqcastError, match=r"Y_true has shape \(2, 3, 1\) but Y_pred .*\(2, 3\)"):
        last_time_step_mse(torch.ones(2, 3, 1), torch.ones(2, 3))


def test_non_finite_and_empty_inputs():
    with pytest.raises(SeqcastError, match="y_pred has 1 NaN or infinite value.*index \\(2,\\)"):
        mae([1.0, 2.0, 3.0], [1.0, 2.0, float("nan")])
    with pytest.raises(SeqcastError, match="empty"):
        rmse([], [])


def test_last_time_step_mse_numpy_and_torch():
    y_true = np.zeros((2, 3, 2))
    y_pred = np.zeros((2, 3, 2))
    y_pred[:, :-1] = 100.0  # earlier steps must not count
    y_pred[0, -1] = [1.0, 3.0]
    y_pred[1, -1] = [2.0, 0.0]
    expected = (1 + 9 + 4 + 0) / 4
    assert last_time_step_mse(y_true, y_pred) == pytest.approx(expected)
    pred = torch.tensor(y_pred, requires_grad=True)
    loss = last_time_step_mse(torch.tensor(y_true), pred)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    assert loss.item() == pytest.approx(expected)
    loss.backward()  # usable as a training loss
    assert pred.grad[:, :-1].abs().sum() == 0 and pred.grad[0, -1, 1] == pytest.approx(2 * 3 / 4)
    with pytest.raises(SeqcastError, match="time axis"):
        last_time_step_mse(np.ones(3), np.ones(3))


def test_coverage_and_width_by_hand():
    lo, hi = [0.0, 2.5, 3.0, 5.0], [1.0, 3.0, 4.0, 6.0]  # inside: yes (edge), no, yes (edge), no
    assert coverage(Y, lo, hi) == 0.5
    assert interval_width(lo, hi) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert coverage(torch.tensor(Y), torch.tensor(lo), torch.tensor(hi)) == 0.5


def test_interval_errors():
    with pytest.raises(SeqcastError, match="lo > hi at 1 point"):
        coverage([1.0, 2.0], [0.0, 3.0], [2.0, 2.5])
    with pytest.raises(SeqcastError, match=r"lo has shape \(2,\) but hi has shape \(3,\)"):
        interval_width([0.0, 1.0], [1.0, 2.0, 3.0])


# -- competition definitions (M3 / M4 / Tourism) -------------------------------------------
TRAIN = [1.0, 3.0, 2.0, 5.0, 4.0]  # lag 4: |4 - 1| = 3; lag 1: 2, 1, 3, 1 -> 1.75


def test_competition_smape_by_hand():
    # 200 |y - f| / (|y| + |f|) per point: 200/3, 0, 200 * 2/8, 0
    assert competition_smape(Y, P) == pytest.approx((200 / 3 + 50) / 4)
    assert competition_smape(Y, P) == smape(Y, P)


def test_competition_mase_by_hand_and_short_series_fallback():
    assert competition_mase(Y, P, TRAIN, period=4) == pytest.approx(0.75 / 3)
    assert competition_mase(Y, P, TRAIN, period=1) == pytest.approx(0.75 / 1.75)
    # 5 points cannot give a lag-12 difference: the scale falls back to lag 1
    assert competition_mase(Y, P, TRAIN, period=12) == pytest.approx(0.75 / 1.75)
    with pytest.raises(SeqcastError, match="naive error .* is 0"):
        competition_mase(Y, P, [2.0, 2.0, 2.0], period=12)


def test_msis_by_hand():
    lo, hi = [0.0, 2.5, 3.0, 2.0], [1.0, 3.0, 4.0, 3.0]
    # widths 1, 0.5, 1, 1; y=2 is 0.5 below lo and y=4 is 1 above hi, each costing 2/alpha
    widths = 1 + 0.5 + 1 + 1
    assert msis(Y, lo, hi, TRAIN, period=4) == pytest.approx((widths + 40 * 0.5 + 40 * 1) / 4 / 3)
    assert msis(Y, lo, hi, TRAIN, period=4, level=80) == pytest.approx(
        (widths + 10 * 0.5 + 10 * 1) / 4 / 3
    )
    assert msis(Y, lo, hi, TRAIN, period=12) == pytest.approx(
        (widths + 40 * 0.5 + 40 * 1) / 4 / 1.75
    )
    # all inside: only the widths count
    assert msis(Y, [0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0], TRAIN, 4) == pytest.approx(2 / 3)


def test_msis_errors():
    with pytest.raises(SeqcastError, match="lo > hi at 1 point"):
        msis([1.0, 2.0], [0.0, 3.0], [2.0, 2.5], TRAIN, 1)
    with pytest.raises(SeqcastError, match="level must be a percentage"):
        msis([1.0], [0.0], [2.0], TRAIN, 1, level=100)


def test_coverage_counts_each_level_by_hand():
    lo95, hi95 = [0.0, 1.0, 2.0, 3.5], [2.0, 3.0, 4.0, 4.5]  # all four inside
    lo80, hi80 = [0.5, 1.5, 3.5, 3.8], [1.5, 2.5, 4.0, 4.2]  # y=3 below 3.5: 3 of 4
    assert coverage(Y, lo95, hi95) == 1.0
    assert coverage(Y, lo80, hi80) == 0.75


def test_smape_is_twice_utilsforecast_in_percent():
    import pandas as pd
    from utilsforecast.losses import smape as uf_smape

    frame = pd.DataFrame({"unique_id": ["a"] * 4, "y": Y, "model": P})
    theirs = float(uf_smape(frame, models=["model"])["model"].iloc[0])
    # utilsforecast: mean(|y - f| / (|y| + |f|)), a fraction; ours: 200 times that, in percent
    assert theirs == pytest.approx((1 / 3 + 2 / 8) / 4)
    assert competition_smape(Y, P) == pytest.approx(200 * theirs)
    assert smape(Y, P) == pytest.approx(2 * 100 * theirs)
