"""Forecaster behaviour through the public API (small epochs: these test wiring, not skill)."""

import numpy as np
import pandas as pd
import pytest
import torch

from seqcast import Forecaster
from seqcast.data import airline_passengers, split_by_time
from seqcast.data.preprocess import split_windows
from seqcast.data.scalers import StandardScaler
from seqcast.errors import NotFittedError, SeqcastError
from seqcast.layers import GRU, Dense
from seqcast.models import ModelSpec, build_model, list_models
from seqcast.sequential import Sequential
from seqcast.strategies import output_positions


@pytest.fixture(scope="module")
def airline():
    return airline_passengers()


def quick(model="gru", **kw):
    opts = dict(window=24, horizon=12, season=12, epochs=3, units=8, seed=0)
    opts.update(kw)
    return Forecaster(model, **opts)


@pytest.mark.parametrize("strategy", ["direct", "recursive", "seq2seq"])
def test_each_strategy_forecasts_the_horizon_asked(airline, strategy):
    fc = quick(strategy=strategy).fit(airline)
    pred = fc.predict()
    assert list(pred.columns) == ["unique_id", "ds", "y_hat"]
    assert len(pred) == 12 and np.isfinite(pred["y_hat"]).all()
    assert pred["ds"].iloc[0] == pd.Timestamp("1961-01-01")
    assert len(fc.predict(horizon=5)) == 5
    if strategy == "recursive":
        assert len(fc.predict(horizon=30)) == 30  # open-ended
    else:
        with pytest.raises(SeqcastError, match="trained for a horizon of 12"):
            fc.predict(horizon=13)


def test_each_series_is_scaled_by_the_history_it_is_given(airline):
    """Training scales by the training frame; predict(data) by `data`, whatever series it
    holds; predict() by the training-time scaling. Nothing per series is kept in between."""
    train, _ = split_by_time(airline, 12)
    fc = quick().fit(train)
    expected = StandardScaler().fit(train)
    np.testing.assert_allclose(fc.context_scaling_.loc, expected.loc_)
    np.testing.assert_allclose(fc.context_scaling_.scale, expected.scale_)
    pd.testing.assert_frame_equal(fc.predict(train), fc.predict())  # the same history
    longer = fc.pipeline_.last_windows(airline)
    full = StandardScaler().fit(airline)
    np.testing.assert_allclose(longer.loc, full.loc_[:, :1])
    np.testing.assert_allclose(longer.scale, full.scale_[:, :1])
    # the forecast undoes the scaling its own windows got: y_hat = (out + level) * scale + loc
    out = fc._forecast_scaled(longer.x, 12)
    expected_y = (out + longer.level) * full.scale_[0, 0] + full.loc_[0, 0]
    np.testing.assert_allclose(fc.predict(airline)["y_hat"], expected_y.ravel(), rtol=1e-12)


def test_evaluate_and_backtest_never_scale_with_the_held_out_part(airline, monkeypatch):
    fc = quick("linear").fit(airline)
    wild = airline.copy()
    wild.loc[wild.index[-12:], "y"] *= 1000.0  # only the held-out year changes
    seen = []
    monkeypatch.setattr("seqcast.scoring.score", lambda pred, *a, **k: seen.append(pred) or {})
    fc.evaluate(airline), fc.evaluate(wild)
    pd.testing.assert_frame_equal(seen[0], seen[1], check_exact=True)
    a, b = fc.backtest(airline, windows=3), fc.backtest(wild, windows=3)
    pd.testing.assert_series_equal(a["y_hat"], b["y_hat"], check_exact=True)
    assert not a["y"].equals(b["y"])


def test_validation_windows_lie_after_training_targets(airline):
    fc = quick(validation_size=0.25)
    fc.fit(airline)
    x, y, series, start = fc.pipeline_.training_windows(airline, 12, "direct")
    train, val = split_windows(series, start, np.array([len(airline)]), 24, 12, False, 0.25)
    last_train_target = (start[train] + 24 + 12 - 1).max()
    first_val_target = (start[val] + 24).min()
    assert last_train_target < first_val_target


def test_save_load_predict_gives_identical_numbers(airline, tmp_path):
    fc = quick("lstm", strategy="seq2seq").fit(airline)
    before = fc.predict(intervals=[80, 95])
    fc.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "scaler.json",
    ]
    loaded = Forecaster.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict(intervals=[80, 95]), before)
    pd.testing.assert_frame_equal(
        loaded.predict(airline.iloc[:100]), fc.predict(airline.iloc[:100])
    )


def test_custom_sequential_round_trips(airline, tmp_path):
    model = Sequential([GRU(6), Dense(12)], input_shape=(24, 1))
    fc = Forecaster(model, window=24, horizon=12, epochs=2).fit(airline)
    fc.save(tmp_path / "c")
    pd.testing.assert_frame_equal(Forecaster.load(tmp_path / "c").predict(), fc.predict())


def test_same_seed_same_forecast(airline):
    a = quick("lstm", seed=7).fit(airline).predict()
    b = quick("lstm", seed=7).fit(airline).predict()
    c = quick("lstm", seed=8).fit(airline).predict()
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["y_hat"], c["y_hat"])


def test_mc_dropout_intervals_widen_with_dropout_and_vanish_without(airline):
    widths = {}
    for rate in (0.0, 0.1, 0.4):
        fc = quick("gru", dropout=rate, interval_method="mc_dropout", mc_samples=30).fit(airline)
        pred = fc.predict(intervals=[90])
        assert (pred["y_lo_90"] <= pred["y_hi_90"]).all()
        if rate == 0:  # no dropout: every draw is the point forecast
            np.testing.assert_allclose(pred["y_lo_90"], pred["y_hat"], rtol=1e-6)
        widths[rate] = float((pred["y_hi_90"] - pred["y_lo_90"]).mean())
    assert widths[0.0] == 0.0
    assert 0.0 < widths[0.1] < widths[0.4]


def test_conformal_intervals_nest_and_evaluate_reports_coverage(airline):
    fc = quick("linear").fit(split_by_time(airline, 12)[0])
    pred = fc.predict(intervals="80,95")
    assert (pred["y_lo_95"] <= pred["y_lo_80"]).all() and (pred["y_hi_80"] <= pred["y_hi_95"]).all()
    scores = fc.evaluate(airline)
    assert set(scores) == {"mae", "rmse", "mape", "smape", "mase", "coverage_80", "width_80"}
    # evaluate forecasts the held-out year from the same history: count the hits by hand
    y = split_by_time(airline, 12)[1]["y"].to_numpy()
    lo, hi = pred["y_lo_80"].to_numpy(), pred["y_hi_80"].to_numpy()
    assert scores["coverage_80"] == pytest.approx(np.mean((lo <= y) & (y <= hi)))
    assert scores["width_80"] == pytest.approx(np.mean(hi - lo)) and scores["width_80"] > 0


def test_backtest_rolls_the_origin_without_refitting(airline):
    fc = quick("linear").fit(airline)
    weights = [p.detach().clone() for p in fc.model_.parameters()]
    result = fc.backtest(airline, windows=3, step=6)
    assert len(result) == 3 * 12 and result["y"].notna().all()
    assert sorted(result["cutoff"].unique()) == list(
        pd.to_datetime(["1958-12-01", "1959-06-01", "1959-12-01"])
    )
    last = result[result["cutoff"] == pd.Timestamp("1959-12-01")]
    np.testing.assert_allclose(last["y"], airline["y"].iloc[-12:])
    assert all(torch.equal(a, b) for a, b in zip(weights, fc.model_.parameters(), strict=True))


def test_baselines_match_their_definitions(airline):
    train, _ = split_by_time(airline, 12)
    naive = quick("naive").fit(train).predict()
    assert (naive["y_hat"] == train["y"].iloc[-1]).all()
    seasonal = quick("seasonal_naive").fit(train).predict()
    np.testing.assert_allclose(seasonal["y_hat"], train["y"].iloc[-12:])


def test_every_model_builds_for_its_strategies():
    for name in list_models():
        for strategy in ("direct", "recursive", "seq2seq"):
            spec = ModelSpec(window=24, horizon=6, strategy=strategy, season=12)
            try:
                model = build_model(name, spec)
            except SeqcastError as err:
                assert "does not support strategy" in str(err)
                continue
            out = model(torch.randn(2, 24, 1))
            if name in ("naive", "seasonal_naive") or strategy == "direct":
                assert out.shape == (2, 6), name
            elif strategy == "recursive":
                assert out.shape == (2, 1), name
            else:
                assert out.shape[0] == 2 and out.shape[-1] == 6, name


def test_seq2seq_targets_follow_the_conv_models_output_steps():
    model = build_model("conv_gru", ModelSpec(window=50, horizon=10, strategy="seq2seq"))
    positions = output_positions(model, 50)
    np.testing.assert_array_equal(positions, np.arange(3, 50, 2))  # the notes' Y[:, 3::2]


def test_misuse_is_reported(airline):
    with pytest.raises(NotFittedError, match="not fitted yet. Call `fit` first"):
        Forecaster().predict()
    with pytest.raises(SeqcastError, match="unknown model 'lstmm'"):
        Forecaster("lstmm").fit(airline)
    with pytest.raises(SeqcastError, match="does not support strategy 'seq2seq'"):
        quick("bilstm", strategy="seq2seq").fit(airline)
    with_gap = airline.copy()
    with_gap.loc[30, "y"] = np.nan
    with pytest.raises(SeqcastError, match="1 missing value in y"):
        quick().fit(with_gap)
    with pytest.raises(SeqcastError, match="needs a season length"):
        Forecaster("seasonal_naive", window=24, horizon=12).fit(airline)


def test_covariates_from_a_long_frame_feed_the_model():
    rng = np.random.default_rng(0)
    n = 120
    driver = rng.normal(size=n).cumsum()
    frame = pd.DataFrame(
        {"unique_id": "s", "ds": np.arange(n), "y": np.roll(driver, 1) * 2.0, "x": driver}
    )
    fc = Forecaster("gru", window=12, horizon=3, covariates=["x"], epochs=2, units=4).fit(frame)
    assert fc.model_.input_shape[-1] == 2
    assert len(fc.predict(frame)) == 3
    with pytest.raises(SeqcastError, match="recursive strategy feeds predictions back"):
        Forecaster(
            "gru", window=12, horizon=3, covariates=["x"], strategy="recursive", epochs=1, units=4
        ).fit(frame)


def test_saved_context_keeps_time_zone_and_exact_values(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=60, freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"unique_id": "a", "ds": stamps, "y": np.sin(np.arange(60)) + 1 / 3})
    fc = Forecaster("linear", window=12, horizon=6, epochs=1).fit(frame)
    fc.save(tmp_path / "m")
    back = Forecaster.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.context_, fc.context_)
    assert str(back.context_["ds"].dt.tz) == "Europe/Paris"
    pd.testing.assert_frame_equal(back.predict(), fc.predict())


def test_train_options_reach_the_training_loop_and_bad_names_fail_first(airline):
    seen = []
    fc = quick("linear", train_options={"schedule": "cosine", "min_lr": 1e-5})
    fc.fit(airline, on_epoch_end=lambda epoch, values: seen.append(values["loss"]))
    assert len(seen) == fc.epochs and "lr" in fc.history_.history
    assert fc.history_.history["lr"][-1] == pytest.approx(1e-5)  # cosine ends at its floor
    with pytest.raises(SeqcastError, match="unknown training setting"):
        quick("linear", train_options={"sheduel": "cosine"}).fit(airline)


def panel(n_series: int, length: int = 48, offset: int = 0) -> pd.DataFrame:
    """Seasonal series of different levels and scales, ids s{offset}... s{offset+n-1}."""
    rng = np.random.default_rng(offset)
    t = np.arange(length)
    level = rng.uniform(5, 500, (n_series, 1))
    y = level * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 1, (n_series, length))
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{offset + i}" for i in range(n_series)], length),
            "ds": np.tile(t, n_series),
            "y": y.ravel(),
        }
    )


def test_a_model_trained_on_a_sample_forecasts_series_it_never_saw(tmp_path):
    fc = quick(window=12, horizon=4, epochs=2).fit(panel(20))
    others = panel(2000, offset=1000)
    pred = fc.predict(others, intervals=[80])
    assert len(pred) == 2000 * 4 and pred["unique_id"].nunique() == 2000
    assert np.isfinite(pred[["y_hat", "y_lo_80", "y_hi_80"]].to_numpy()).all()
    # each forecast is in its own series' units: near its own level, not the training series'
    level = others.groupby("unique_id", sort=False)["y"].mean()
    ratio = pred.groupby("unique_id", sort=False)["y_hat"].mean() / level
    assert ratio.between(0.5, 1.5).all()
    fc.save(tmp_path / "m", context=False)
    back = Forecaster.load(tmp_path / "m")
    # `fc` may sit on a GPU (float32 there differs in the 5th digit), `back` is on the CPU
    pd.testing.assert_frame_equal(back.predict(others, intervals=[80]), pred, rtol=1e-4)
    with pytest.raises(SeqcastError, match="saved without its training series.*give the history"):
        back.predict()


def test_the_saved_model_does_not_grow_with_the_number_of_training_series(tmp_path):
    def saved_bytes(n_series: int, context: bool) -> int:
        path = tmp_path / f"m{n_series}{context}"
        quick("linear", window=12, horizon=4, epochs=2).fit(panel(n_series)).save(path, context)
        return sum(f.stat().st_size for f in path.iterdir())

    small, large = saved_bytes(10, False), saved_bytes(200, False)
    assert abs(large - small) < 2048, (small, large)  # float text lengths vary a little
    # with the context kept, the growth is that context: 190 more windows of 12 float64
    # values and 12 int64 stamps, each series' scaling and its id
    grown = saved_bytes(200, True) - saved_bytes(10, True)
    assert 190 * 12 * 16 < grown < 190 * (12 * 16 + 2 * 8 + 40) + 2048, grown


# -- suspicions read in the code (issue 14), each settled by a test ---------------------------
def test_fit_feeds_a_float64_model_float64_windows(airline, monkeypatch, tmp_path):
    """Confirmed and fixed: training windows were always float32, so a float64 custom model
    failed in fit ("mat1 and mat2 must have the same dtype") while predict cast its input."""
    from seqcast import training

    seen, real = [], training.fit_arrays

    def spy(model, x, y, *args, **kwargs):
        seen.append((x.dtype, y.dtype, next(model.parameters()).dtype))
        return real(model, x, y, *args, **kwargs)

    monkeypatch.setattr(training, "fit_arrays", spy)
    model = Sequential([GRU(6), Dense(12)], input_shape=(24, 1)).double()
    fc = Forecaster(model, window=24, horizon=12, epochs=2).fit(airline)
    quick("linear").fit(airline)
    assert seen == [
        (np.float64, np.float64, torch.float64),
        (np.float32, np.float32, torch.float32),
    ]
    assert all(p.dtype == torch.float64 for p in fc.model_.parameters())
    pred = fc.predict(intervals=[80])
    assert np.isfinite(pred["y_hat"]).all()
    fc.save(tmp_path / "m")
    back = Forecaster.load(tmp_path / "m")
    assert all(p.dtype == torch.float64 for p in back.model_.parameters())
    pd.testing.assert_frame_equal(back.predict(intervals=[80]), pred)


def test_forecast_inputs_follow_the_model_to_its_device(airline, monkeypatch):
    """Confirmed and fixed: `_forecast_scaled` (behind predict and the conformal calibration
    of fit) cast the windows' dtype but left them on the CPU, so a model that trained on
    CUDA failed. Checked here with PyTorch's "meta" device standing in for a GPU: the windows
    reach the model on the device of its parameters."""
    fc = quick("linear").fit(airline)
    seen = []

    def fake_forecast(model, x, horizon, strategy, trained_horizon):
        seen.append((x.device, x.dtype))
        return torch.zeros(len(x), horizon)

    monkeypatch.setattr("seqcast.strategies.forecast", fake_forecast)
    fc.model_.to("meta")
    from seqcast import scoring

    scoring.calibration_errors(fc, airline)  # what fit calibrates its intervals with
    fc.predict(airline)
    assert seen == [(torch.device("meta"), torch.float32)] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_trained_on_cuda_calibrates_predicts_and_loads_on_cpu(airline, tmp_path):
    fc = quick("gru", train_options={"accelerator": "gpu"}).fit(airline)
    assert next(fc.model_.parameters()).device.type == "cuda"
    pred = fc.predict(intervals=[80])
    assert np.isfinite(pred[["y_hat", "y_lo_80", "y_hi_80"]].to_numpy()).all()
    fc.save(tmp_path / "m")
    back = Forecaster.load(tmp_path / "m")
    assert next(back.model_.parameters()).device.type == "cpu"
    pd.testing.assert_frame_equal(back.predict(intervals=[80]), pred, rtol=1e-4)


def test_time_zones_survive_save_and_reach_the_forecast(tmp_path):
    """Refuted: tz-aware stamps keep their zone through save and load, and forecasts carry
    it (with and without data, from a history that crosses a daylight-saving change)."""
    stamps = pd.date_range("2024-03-28", periods=96, freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"unique_id": "a", "ds": stamps, "y": np.sin(np.arange(96) / 4)})
    fc = Forecaster("linear", window=12, horizon=6, epochs=1).fit(frame)
    fc.save(tmp_path / "m")
    back = Forecaster.load(tmp_path / "m")
    for pred in (back.predict(), back.predict(frame), fc.predict()):
        assert str(pred["ds"].dt.tz) == "Europe/Paris"
        expected = pd.date_range(stamps[-1], periods=7, freq="h", tz="Europe/Paris")[1:]
        np.testing.assert_array_equal(pred["ds"].to_numpy(), expected.to_numpy())


def test_mc_coverage_round_trips_and_older_directories_load_without_it(airline, tmp_path):
    import json
    import warnings

    from seqcast.uncertainty import UndercoverageWarning

    fc = quick("linear", dropout=0.2, interval_method="mc_dropout", mc_samples=20).fit(airline)
    assert len(fc.mc_coverage_) == 99 and all(0 <= v <= 100 for v in fc.mc_coverage_)
    fc.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["mc_coverage"] == fc.mc_coverage_
    assert Forecaster.load(tmp_path / "m").mc_coverage_ == fc.mc_coverage_
    del config["mc_coverage"]  # as a directory written before it was kept
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    older = Forecaster.load(tmp_path / "m")
    assert older.mc_coverage_ is None
    with warnings.catch_warnings():  # nothing measured, nothing to warn about
        warnings.simplefilter("error", UndercoverageWarning)
        older.predict(intervals=[80])
    config["mc_coverage"] = [50.0] * 98
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SeqcastError, match="mc_coverage has 98 values"):
        Forecaster.load(tmp_path / "m")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_save_refuses_a_model_that_forecasts_nan_or_infinity(airline, tmp_path, bad):
    fc = quick("linear", epochs=1).fit(airline)
    with torch.no_grad():
        next(fc.model_.parameters()).fill_(bad)
    with pytest.raises(SeqcastError) as err:
        fc.save(tmp_path / "m")
    message = str(err.value)
    assert "\n" not in message and "forecasts NaN or infinity" in message
    assert "fit it again" in message
    assert not (tmp_path / "m").exists()


def test_a_series_too_short_for_window_and_horizon_is_refused_for_that_not_its_frequency():
    two_days = pd.DataFrame({"ds": pd.date_range("2020-01-01", periods=2), "y": [1.0, 2.0]})
    with pytest.raises(SeqcastError, match=r"has 2 points but window 3 \+ horizon 2 needs"):
        Forecaster("naive", window=3, horizon=2).fit(two_days)
    with pytest.raises(SeqcastError, match=r"window 3 \+ horizon 1 needs at least 4"):
        Forecaster("gru", window=3, horizon=2, strategy="recursive").fit(two_days)
