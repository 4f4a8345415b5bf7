"""Prediction intervals against known noise: conformal intervals cover what they promise, and
MC-dropout intervals say when they do not."""

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from seqcast import Forecaster, strategies, uncertainty
from seqcast.uncertainty import UndercoverageWarning

HORIZON, WINDOW, LENGTH = 6, 16, 120
SERIES, SEEDS = 1500, (0, 1, 2)
# Coverage tolerance: +-3 percentage points of nominal. Forecasts of one series share its
# window, so its HORIZON hits are correlated; but the mean of a series' hits has variance at
# most p(1 - p) (Cauchy-Schwarz), and series are independent, so N = SERIES * len(SEEDS) = 4500
# series bounds the standard error of the pooled coverage by sqrt(p(1-p)/N): 0.60 points at
# 80%, 0.32 at 95%; each step alone (one hit per series) has the same bound. 3 points is > 5
# standard errors at 80% and > 9 at 95%. The calibration set's own randomness (about 25
# held-out windows of each of 1500 series per fit) adds less than that and is averaged over
# the seeds.
TOLERANCE = 3.0


def _frame(values: np.ndarray) -> pd.DataFrame:
    n, length = values.shape
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i:04d}" for i in range(n)], length),
            "ds": np.tile(pd.date_range("2000-01-01", periods=length, freq="D"), n),
            "y": values.reshape(-1),
        }
    )


def ar1_series(n: int, length: int, rng: np.random.Generator, phi: float = 0.7) -> tuple:
    """n stationary AR(1) series with unit innovations, each shifted by its own level and
    multiplied by its own scale: (values, scales). The one-step predictive law is
    N(level + phi * (y - level), scale**2)."""
    burn = 100
    eps = rng.normal(size=(n, length + burn))
    x = np.zeros_like(eps)
    for t in range(1, x.shape[1]):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    level = rng.uniform(-50, 50, size=(n, 1))
    scale = rng.uniform(0.5, 5.0, size=(n, 1))
    return level + scale * x[:, burn:], scale[:, 0]


def seasonal_series(n: int, length: int, rng: np.random.Generator, sigma: float = 0.5):
    """n series: a random-phase period-7 sine of amplitude 2 plus N(0, sigma^2) noise, at a
    per-series level and scale: (values, scales)."""
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    signal = 2 * np.sin(2 * np.pi * t / 7 + phase) + rng.normal(0, sigma, size=(n, length))
    level = rng.uniform(-50, 50, size=(n, 1))
    scale = rng.uniform(0.5, 5.0, size=(n, 1))
    return level + scale * signal, scale[:, 0]


def _fit_and_forecast(process, model: str, seed: int, **options):
    """Fit on the first LENGTH points of SERIES fresh series, forecast the next HORIZON
    (drawn from the same process, never seen) with 80% and 95% conformal intervals."""
    values, scale = process(SERIES, LENGTH + HORIZON, np.random.default_rng(seed))
    full = _frame(values)
    train = full.groupby("unique_id", sort=False).head(LENGTH)
    future = full.groupby("unique_id", sort=False).tail(HORIZON)
    fc = Forecaster(
        model, window=WINDOW, horizon=HORIZON, batch_size=256, lr=1e-2, seed=seed,
        validation_size=0.25, **options,
    ).fit(train)  # fmt: skip
    assert fc.calibration_ == "held-out"
    pred = fc.predict(intervals=[80, 95]).merge(future, on=["unique_id", "ds"], validate="1:1")
    assert len(pred) == SERIES * HORIZON
    pred = pred.sort_values(["unique_id", "ds"])
    return pred, dict(zip([f"s{i:04d}" for i in range(SERIES)], scale, strict=True))


@pytest.mark.parametrize(
    ("process", "model", "options"),
    [
        (ar1_series, "linear", {"epochs": 5}),
        (seasonal_series, "gru", {"epochs": 2, "units": 8}),
    ],
    ids=["linear-ar1", "gru-seasonal"],
)
def test_conformal_intervals_cover_their_level_on_unseen_futures(process, model, options):
    preds = pd.concat([_fit_and_forecast(process, model, s, **options)[0] for s in SEEDS])
    y = preds["y"].to_numpy()
    for level in (80, 95):
        lo, hi = preds[f"y_lo_{level}"].to_numpy(), preds[f"y_hi_{level}"].to_numpy()
        hits = ((lo <= y) & (y <= hi)).reshape(-1, HORIZON)  # (series, step)
        overall = 100 * hits.mean()
        per_step = 100 * hits.mean(axis=0)
        assert abs(overall - level) <= TOLERANCE, (level, overall)
        assert np.all(np.abs(per_step - level) <= TOLERANCE), (level, per_step.round(1))


def test_conformal_width_matches_the_known_noise():
    """One step ahead of an AR(1) with unit innovations, the best interval is the Gaussian
    one: half-width z * scale. A calibrated linear autoregression is near that oracle (within
    10%: the fitted model and the held-out quantile are estimates), so the coverage above
    comes from the right width, not from wide intervals that happen to land on the level."""
    pred, scale = _fit_and_forecast(ar1_series, "linear", 0, epochs=5)
    first = pred.groupby("unique_id", sort=False).head(1)
    per_unit = 1 / first["unique_id"].map(scale).to_numpy()
    for level in (80, 95):
        z = math.sqrt(2) * torch.erfinv(torch.tensor(level / 100, dtype=torch.float64)).item()
        half = (first[f"y_hi_{level}"] - first[f"y_lo_{level}"]).to_numpy() / 2
        assert np.median(half * per_unit) == pytest.approx(z, rel=0.10)


# -- conformal_radius, by hand ------------------------------------------------------------------
def test_conformal_radius_is_the_finite_sample_order_statistic_per_step():
    # 24 windows, 2 steps; signs and order must not matter (|residual|, sorted per step)
    step0 = np.array([3, -7, 1, 24, -12, 5, 9, -2, 18, 4, -15, 6, 22, -8, 11, 13, -10, 20, 16,
                      -19, 14, 17, -21, 23], dtype=float)  # fmt: skip
    step1 = np.linspace(0.5, 12.0, 24)[::-1] * np.where(np.arange(24) % 2, 1, -1)
    residuals = np.stack([step0, step1], axis=1)
    # n = 24: k = ceil(25 * L / 100); the k-th smallest |residual| of each step
    #   L = 80 -> k = 20: step0 {1..24} -> 20; step1 = 0.5 * {1..24} -> 10.0
    #   L = 90 -> k = ceil(22.5) = 23 -> 23 and 11.5
    #   L = 95 -> k = ceil(23.75) = 24 -> 24 and 12.0 (the largest)
    #   L = 97 -> k = ceil(24.25) = 25 > n -> unbounded
    np.testing.assert_array_equal(uncertainty.conformal_radius(residuals, 80), [20.0, 10.0])
    np.testing.assert_array_equal(uncertainty.conformal_radius(residuals, 90), [23.0, 11.5])
    np.testing.assert_array_equal(uncertainty.conformal_radius(residuals, 95), [24.0, 12.0])
    assert np.isinf(uncertainty.conformal_radius(residuals, 97)).all()
    # 50% on 3 windows: k = ceil(4 * 0.5) = 2 -> the middle one
    assert uncertainty.conformal_radius(np.array([[-5.0], [1.0], [3.0]]), 50)[0] == 3.0
    # several levels at once: one row per level, the rows above
    np.testing.assert_array_equal(
        uncertainty.conformal_radius(residuals, [80, 95, 97], warn=False),
        [[20.0, 10.0], [24.0, 12.0], [np.inf, np.inf]],
    )


def test_an_unbounded_level_names_the_windows_it_needs_and_the_highest_level_they_allow(caplog):
    # 24 windows: 97% needs ceil(97 / 3) = 33; the highest level with ceil(25 L / 100) <= 24
    # is 96 (k = 24), as 97 gives k = 25
    residuals = np.arange(1.0, 25.0)[:, None]
    assert np.isfinite(uncertainty.conformal_radius(residuals, 96)).all()
    with caplog.at_level("WARNING", logger="seqcast.uncertainty"):
        assert np.isinf(uncertainty.conformal_radius(residuals, 97)).all()
        uncertainty.conformal_radius(residuals, 99, warn=False)  # the table's calls: silent
    assert len(caplog.records) == 1
    assert "97% conformal intervals need at least 33 calibration windows, got 24" in caplog.text
    assert "at most 96%" in caplog.text


# -- MC dropout: measured coverage and the warning ----------------------------------------------
def test_covering_levels_agree_with_the_quantile_intervals():
    """covering <= L exactly when np.quantile's level-L interval holds the value, including
    values outside the draws, equal to a draw, and draws that all tie."""
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(42, 300, 2))  # 41 gaps: no integer level lands on a draw
    target = rng.normal(scale=1.5, size=(300, 2))
    target[:5, 0] = draws[rng.integers(42, size=5), np.arange(5), 0]  # equal to one draw
    target[5, 0], target[6, 0] = draws[:, 5, 0].min(), draws[:, 6, 0].max()
    draws[:, 7:9, 1] = 2.0  # every draw the same: the interval is the point 2.0
    target[7, 1], target[8, 1] = 2.0, 2.5
    covering = uncertainty.covering_levels(draws, target)
    coverage = uncertainty.coverage_by_level(covering)
    for level in range(1, 100):
        alpha = (100 - level) / 200
        lo, hi = np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0)
        inside = (lo <= target) & (target <= hi)
        np.testing.assert_array_equal(covering <= level, inside)
        assert coverage[level - 1] == pytest.approx(100 * inside.mean(), abs=1e-9)
    assert covering[7, 1] == 0.0 and np.isinf(covering[8, 1])
    assert np.isinf(covering[np.abs(target) > np.abs(draws).max(axis=0)]).all()


def _sampled(scale: float, n: int = 4000, draws: int = 200):
    """Coverage of intervals from `draws` samples of N(0, scale^2) per value, when the true
    values are N(0, 1): calibrated at scale 1, too narrow below it."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(n, generator=gen, dtype=torch.float64).numpy()
    model = nn.Sequential(nn.Dropout(0.5))  # stands in for a network in MC-dropout mode
    return uncertainty.mc_dropout_coverage(
        lambda: scale * torch.randn(n, generator=gen, dtype=torch.float64), model, draws, target
    )


def test_no_warning_when_mc_intervals_are_calibrated():
    coverage = _sampled(scale=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndercoverageWarning)
        measured = uncertainty.check_coverage(coverage, [80, 95], "MC-dropout")
    # 4000 values: standard error 0.63 points at 80%, 0.34 at 95%
    assert measured[80] == pytest.approx(80, abs=2.5) and measured[95] == pytest.approx(95, abs=1.5)


def test_warning_states_nominal_and_measured_coverage_when_too_narrow():
    coverage = _sampled(scale=0.5)  # 80%: P(|Z| < 0.5 * 1.2816) = 47.8%; 95%: 67.5%
    with pytest.warns(UndercoverageWarning, match=r"80% intervals cover 4\d\.\d%") as record:
        measured = uncertainty.check_coverage(coverage, [2, 80, 95], "MC-dropout")
    assert measured[80] == pytest.approx(47.8, abs=2.5)
    assert measured[95] == pytest.approx(67.5, abs=2.5)
    assert "95% intervals cover 6" in str(record[0].message) and len(record) == 1
    # 2%: P(|Z| < 0.5 * 0.0251) = 1.0%, short by less than the 3-point tolerance: not named
    assert measured[2] < 2 and not re.search(r"\b2% intervals", str(record[0].message))


def test_mc_dropout_quantiles_check_the_levels_asked_when_given_held_out_coverage():
    coverage = _sampled(scale=0.5)
    model, x = nn.Dropout(0.3), torch.ones(10, 3)
    with pytest.warns(UndercoverageWarning, match="95% intervals cover"):
        uncertainty.mc_dropout_quantiles(lambda: model(x), model, 20, [95], coverage=coverage)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndercoverageWarning)
        bands = uncertainty.mc_dropout_quantiles(lambda: model(x), model, 20, [95])
    assert bands[95][0].shape == (10, 3)
    nothing = uncertainty.coverage_by_level(np.zeros((0, 6)))  # no held-out window
    assert uncertainty.check_coverage(nothing, [80], "MC-dropout") == {}


def test_mc_dropout_forecaster_under_covers_and_held_out_windows_say_so():
    """A linear autoregression with input dropout on AR(1) series: MC-dropout intervals
    capture the weights' uncertainty, not the innovations, and cover far less than 80%. The
    coverage the fit measured on its held-out windows (`mc_coverage_`) predicts the coverage
    on the unseen future, and predict warns with it."""
    values, _ = ar1_series(300, LENGTH + HORIZON, np.random.default_rng(0))
    full = _frame(values)
    train = full.groupby("unique_id", sort=False).head(LENGTH)
    future = full.groupby("unique_id", sort=False).tail(HORIZON)
    fc = Forecaster(
        "linear", window=WINDOW, horizon=HORIZON, epochs=5, dropout=0.2, batch_size=256,
        lr=1e-2, seed=0, validation_size=0.25, interval_method="mc_dropout", mc_samples=40,
    ).fit(train)  # fmt: skip
    with pytest.warns(UndercoverageWarning, match=r"80% intervals cover \d") as record:
        pred = fc.predict(intervals=[80]).merge(future, on=["unique_id", "ds"], validate="1:1")
    future_cover = 100 * np.mean((pred["y_lo_80"] <= pred["y"]) & (pred["y"] <= pred["y_hi_80"]))
    measured = fc.mc_coverage_[80 - 1]
    assert f"80% intervals cover {measured:.1f}%" in str(record[0].message)
    assert record[0].filename == __file__  # the warning points at the predict call
    assert len(fc.mc_coverage_) == 99 and future_cover < 80 - 20 and measured < 80 - 20
    # 300 series: standard error < 2.9 points on the future; the 2,000 held-out windows
    # (of 7,800) add their own
    assert measured == pytest.approx(future_cover, abs=8)


def test_mc_coverage_is_measured_on_the_held_out_windows_only():
    """`mc_coverage_` equals the coverage of the fitted model's MC-dropout intervals on the
    held-out windows written out by hand (each series' windows whose targets pass its cut at
    75%), drawn as the fit drew them (the same torch seed before the draws). Fewer than the
    2,000-window cap, so all of them count."""
    values, _ = ar1_series(20, LENGTH, np.random.default_rng(1))
    train = _frame(values)
    fc = Forecaster(
        "linear", window=WINDOW, horizon=HORIZON, epochs=1, dropout=0.2, lr=1e-2, seed=0,
        validation_size=0.25, interval_method="mc_dropout", mc_samples=30, progress=False,
    )  # fmt: skip
    torch.manual_seed(123)
    state = {}
    real = uncertainty.mc_dropout_coverage

    def measure(sample, model, n, target):  # remember the generator state at the draws
        state["rng"] = torch.get_rng_state()
        return real(sample, model, n, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uncertainty, "mc_dropout_coverage", measure)
        fc.fit(train)
    x, y, series, start = fc.pipeline_.training_windows(train, HORIZON, "direct")
    held = start + WINDOW >= int(LENGTH * 0.75)  # 90: starts 74..98, 25 a series
    assert held.sum() == 20 * 25
    xt = torch.as_tensor(x[held], dtype=torch.float32)
    torch.set_rng_state(state["rng"])
    expected = real(
        lambda: strategies.forecast(fc.model_, xt, HORIZON, fc.strategy_, HORIZON),
        fc.model_, fc.mc_samples, y[held].reshape(-1, HORIZON),
    )  # fmt: skip
    np.testing.assert_array_equal(fc.mc_coverage_, expected)


def test_predict_warns_when_mc_dropout_intervals_under_cover():
    """Noisy AR(1) series, a linear model with light dropout: the intervals show the weights'
    uncertainty only and cover far less than 80%, so `predict(intervals=[80])` says so."""
    values, _ = ar1_series(50, 80, np.random.default_rng(2))
    fc = Forecaster(
        "linear", window=WINDOW, horizon=HORIZON, epochs=3, dropout=0.1, lr=1e-2, seed=0,
        interval_method="mc_dropout", mc_samples=30, progress=False,
    ).fit(_frame(values))  # fmt: skip
    assert fc.mc_coverage_[80 - 1] < 80 - uncertainty.UNDERCOVERAGE_TOLERANCE
    with pytest.warns(UndercoverageWarning, match="MC-dropout intervals under-cover"):
        fc.predict(intervals=[80])
    with warnings.catch_warnings():  # a point forecast draws no interval and checks nothing
        warnings.simplefilter("error", UndercoverageWarning)
        fc.predict()


def test_conformal_and_in_sample_fits_measure_no_mc_coverage():
    values, _ = ar1_series(5, 60, np.random.default_rng(3))
    options = {"window": WINDOW, "horizon": HORIZON, "epochs": 1, "progress": False}
    assert Forecaster("linear", **options).fit(_frame(values)).mc_coverage_ is None
    in_sample = Forecaster(
        "linear", dropout=0.1, interval_method="mc_dropout", validation_size=0.0, **options
    ).fit(_frame(values))
    assert in_sample.calibration_ == "in-sample" and in_sample.mc_coverage_ is None


def test_conformal_bounds_take_each_tail_its_own_order_statistic():
    # signed errors 1..99 shifted: the 80% bounds are the 10th and 90th of 99 (rank
    # ceil(100 * 0.9) = 90 from each end), so a skewed error gets a shifted, not wider, band
    errors = (np.arange(1, 100, dtype=float) + 20)[:, None]
    lo, hi = uncertainty.conformal_bounds(errors, 80)
    assert lo[0] == errors[9, 0] and hi[0] == errors[89, 0]
    assert lo[0] > 0  # every backtest forecast fell short: the whole band sits above it


def test_conformal_bounds_fall_back_to_the_symmetric_radius_with_few_windows(caplog):
    rng = np.random.default_rng(0)
    errors = rng.normal(size=(24, 3))  # 95% tails need 39 windows, the symmetric radius 19
    lo, hi = uncertainty.conformal_bounds(errors, 95)
    radius = uncertainty.conformal_radius(errors, 95)
    np.testing.assert_array_equal(lo, -radius)
    np.testing.assert_array_equal(hi, radius)
    lo, hi = uncertainty.conformal_bounds(errors[:12], 95)  # fewer than 19: unbounded
    assert np.isinf(lo).all() and np.isinf(hi).all()


def test_signed_conformal_bounds_cover_skewed_errors():
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(2000):
        errors = rng.exponential(size=(41, 1))  # 40 calibration + 1 new, all positive
        lo, hi = uncertainty.conformal_bounds(errors[:40], 80)
        hits.append(lo[0] <= errors[40, 0] <= hi[0])
    # each tail misses at most 10% in expectation: coverage >= 80%; 2000 draws, se 0.009
    assert 0.78 <= np.mean(hits) <= 0.87
