"""Forecaster(normalize="auto"): model="auto"'s per-series log / season / level normalisation
for the zoo models (seqcast.data.normalized), through the public API."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from seqcast import Forecaster
from seqcast.data import airline_passengers
from seqcast.data import pipeline as series_pipeline
from seqcast.errors import SeqcastError


@pytest.fixture(scope="module")
def airline():
    return airline_passengers()


def quick(model="gru", **kw):
    opts = dict(window=24, horizon=12, season=12, epochs=3, units=8, seed=0, normalize="auto")
    return Forecaster(model, **(opts | kw))


def two_series(airline):
    """The airline series and an additive one around zero (no log scale), 100x smaller."""
    other = airline.assign(unique_id="b", y=(airline["y"] - airline["y"].mean()) / 100)
    return pd.concat([airline, other], ignore_index=True)


def test_windows_are_log_ratios_to_the_last_value_deseasonalised(airline):
    fc = quick().fit(airline)
    y = airline["y"].to_numpy(np.float64)
    cut = int(np.floor(len(y) * 0.8))  # validation_size's cut: the transform's history
    t = series_pipeline.fit_transform(y[:cut], 12)
    assert t.log and t.seasonal
    x, target, _, _ = fc.pipeline_.training_windows(airline, 12, "direct")
    z = np.log(y) - t.components(np.arange(len(y)))
    np.testing.assert_allclose(x[5, :, 0], z[5:29] - z[28], atol=1e-5)
    np.testing.assert_allclose(target[5, :, 0], z[29:41] - z[28], atol=1e-5)


def test_the_training_transform_never_sees_points_after_the_cut(airline):
    """Perturbing every point after the validation cut changes no fitted transform and no
    trained weight; perturbing one point before it does (so the check can fail)."""
    cut = int(np.floor(len(airline) * 0.75))
    after, before = airline.copy(), airline.copy()
    after.loc[after.index[cut:], "y"] *= 3.0
    before.loc[before.index[cut - 1], "y"] *= 3.0
    fits = [quick("lstm", validation_size=0.25).fit(f) for f in (airline, after, before)]
    transforms = [
        fc.pipeline_.fit_transforms(f, cut=True)
        for fc, f in zip(fits, (airline, after, before), strict=True)
    ]
    for name in ("log", "scale", "n", "season"):
        np.testing.assert_array_equal(getattr(transforms[0], name), getattr(transforms[1], name))
    assert not np.array_equal(transforms[0].season, transforms[2].season)
    weights = [fc.model_.state_dict() for fc in fits]
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=0, atol=0)
    assert any(not torch.equal(v, weights[2][k]) for k, v in weights[0].items())


def test_a_trending_seasonal_series_is_forecast_closer_than_with_a_plain_scaler():
    t = np.arange(120)
    y = 100 * np.exp(0.03 * t) * (1 + 0.25 * np.sin(2 * np.pi * t / 12))  # 100 -> 3,500
    frame = pd.DataFrame({"unique_id": "s", "ds": pd.date_range("2000-01", periods=120,
                          freq="MS"), "y": y})  # fmt: skip
    errors = {}
    for normalize in (None, "auto"):
        fc = quick("lstm", epochs=10, normalize=normalize).fit(frame.iloc[:-12])
        errors[normalize] = fc.evaluate(frame)["mae"]  # the last 12 points, never trained on
    assert errors["auto"] < 0.75 * errors[None], errors


@pytest.mark.parametrize("strategy", ["direct", "recursive", "seq2seq"])
def test_many_series_predict_evaluate_backtest_and_intervals(airline, strategy):
    data = two_series(airline)
    fc = quick(strategy=strategy).fit(data)
    pred = fc.predict(intervals=[80, 95])
    assert pred.groupby("unique_id").size().to_dict() == {"airline": 12, "b": 12}
    assert np.isfinite(pred.drop(columns=["unique_id", "ds"]).to_numpy()).all()
    assert (pred["y_lo_95"] <= pred["y_lo_80"]).all() and (pred["y_lo_80"] <= pred["y_hat"]).all()
    assert (pred["y_hat"] <= pred["y_hi_80"]).all() and (pred["y_hi_80"] <= pred["y_hi_95"]).all()
    # predict() forecasts the training series' ends as predict(training data) does
    np.testing.assert_allclose(fc.predict(data)["y_hat"], pred["y_hat"], rtol=1e-9)
    assert set(fc.evaluate(data)) >= {"mase", "coverage_80"}
    assert len(fc.backtest(data, windows=2)) == 2 * 2 * 12


def test_mc_dropout_intervals_map_back_around_the_forecast(airline):
    fc = quick(dropout=0.3, interval_method="mc_dropout", mc_samples=20).fit(airline)
    with pytest.warns(UserWarning):  # a 3-epoch model's dropout intervals under-cover
        pred = fc.predict(intervals=[80])
    assert (pred["y_lo_80"] < pred["y_hi_80"]).all() and (pred["y_lo_80"] > 0).all()


def test_save_load_round_trips_normalize_and_its_transforms(airline, tmp_path):
    data = two_series(airline)
    fc = quick("lstm").fit(data)
    before = fc.predict(intervals=[80])
    fc.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["params"]["normalize"] == "auto"
    loaded = Forecaster.load(tmp_path / "m")
    assert loaded.normalize == "auto"
    pd.testing.assert_frame_equal(loaded.predict(intervals=[80]), before)
    pd.testing.assert_frame_equal(loaded.predict(data.iloc[:200]), fc.predict(data.iloc[:200]))
    fc.save(tmp_path / "bare", context=False)
    bare = Forecaster.load(tmp_path / "bare")
    pd.testing.assert_frame_equal(bare.predict(data), fc.predict(data))


def test_a_directory_saved_before_normalize_existed_loads_as_before(airline, tmp_path):
    fc = quick("lstm", normalize=None).fit(airline)
    fc.save(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["params"]["normalize"]
    path.write_text(json.dumps(config))
    loaded = Forecaster.load(tmp_path / "old")
    assert loaded.normalize is None
    pd.testing.assert_frame_equal(loaded.predict(intervals=[80]), fc.predict(intervals=[80]))


def test_normalize_none_is_the_default_and_unchanged(airline):
    assert Forecaster().normalize is None
    a = quick("linear", normalize=None).fit(airline).predict()
    b = Forecaster("linear", window=24, horizon=12, season=12, epochs=3, units=8).fit(airline)
    pd.testing.assert_frame_equal(a, b.predict(), check_exact=True)


def test_bad_normalize_values_and_combinations_are_refused(airline):
    with pytest.raises(SeqcastError, match="`normalize` must be one of None, 'auto', got 'x'"):
        quick(normalize="x").fit(airline)
    with pytest.raises(SeqcastError, match="`normalize` must be one of None, 'auto', got True"):
        quick(normalize=True).fit(airline)
    frame = airline.assign(temp=np.arange(len(airline), dtype=float))
    with pytest.raises(SeqcastError, match="normalize='auto' normalises the target alone"):
        quick(covariates=["temp"]).fit(frame)
