"""model="auto": normalisation, losses, selection, conformal calibration, and the Forecaster
round trip. Numeric checks compare against closed forms or independent numpy computations."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

import seqcast
from seqcast import ensemble, metrics, selection, uncertainty
from seqcast.data import pipeline
from seqcast.errors import SeqcastError

#: a recipe small enough for tests: one network, few epochs
QUICK = {"lookbacks": (1.0,), "losses": ("mae",), "units": 16, "epochs": 3, "patience": 2}


def _seasonal_frame(n_series=6, length=60, season=12, seed=0, start=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_series):
        t = np.arange(length)
        level = 50 + 10 * i
        y = level * (1 + 0.3 * np.sin(2 * np.pi * t / season)) * (1 + 0.005 * t)
        y = y * np.exp(rng.normal(0, 0.02, length))
        rows.append(pd.DataFrame({"unique_id": f"s{i}", "ds": start + t, "y": y}))
    return pd.concat(rows, ignore_index=True)


# -- pipeline -----------------------------------------------------------------------------------
def test_seasonality_test_finds_a_season_and_not_noise():
    rng = np.random.default_rng(0)
    t = np.arange(72)
    assert pipeline.is_seasonal(np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.2, 72), 12)
    assert not pipeline.is_seasonal(rng.normal(0, 1, 72), 12)
    # fewer than three seasons: never seasonal (the Theta method's rule)
    assert not pipeline.is_seasonal(np.sin(2 * np.pi * t[:35] / 12), 12)


def test_seasonal_components_recover_an_exact_pattern():
    pattern = np.array([3.0, -1.0, 0.5, -2.5])  # mean 0
    u = 10 + 0.1 * np.arange(40) + np.tile(pattern, 10)
    np.testing.assert_allclose(pipeline.seasonal_components(u, 4), pattern, atol=1e-12)


def test_transform_round_trip_and_log_choice():
    y = np.array([5.0, 7.0, 6.0, 9.0, 8.0, 11.0, 10.0, 13.0, 12.0])
    t = pipeline.fit_transform(y, 1)
    assert t.log and not t.seasonal
    np.testing.assert_allclose(t.from_u(t.forward(y)), y, rtol=1e-12)
    negative = y - 8
    t2 = pipeline.fit_transform(negative, 1)
    assert not t2.log
    assert t2.scale == pytest.approx(np.mean(np.abs(np.diff(negative))))
    np.testing.assert_allclose(t2.from_u(t2.forward(negative)), negative, atol=1e-12)


def test_windows_pad_before_the_start_and_mask_after_the_end():
    z = np.array([1.0, 2.0, 4.0])
    x, target, tmask, level = pipeline.windows(z, lookback=4, horizon=2, ends=np.array([0, 1]))
    # window ending at 0: three padded copies of z[0], one real point; level z[0] = 1
    np.testing.assert_array_equal(x[0, :, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(x[0, :, 1], [0, 0, 0, 1])
    np.testing.assert_array_equal(target[0], [1.0, 3.0])
    np.testing.assert_array_equal(x[1, :, 0], [-1, -1, -1, 0])
    np.testing.assert_array_equal(tmask[1], [1, 0])  # the series ends after z[2]
    np.testing.assert_array_equal(target[1], [2.0, 0.0])
    np.testing.assert_array_equal(level, [1.0, 2.0])


# -- losses -------------------------------------------------------------------------------------
def _channels(truth, forecast_rel, offset, is_log, scale, mase):
    y = np.stack(
        [truth, np.ones_like(truth), offset, np.full_like(truth, scale),
         np.full_like(truth, is_log), np.full_like(truth, mase)],
        axis=-1,
    )  # fmt: skip
    return torch.as_tensor(forecast_rel), torch.as_tensor(y)


def test_losses_equal_the_metrics_on_the_series_scale():
    rng = np.random.default_rng(1)
    rel_true, rel_pred = rng.normal(0, 0.2, (5, 4)), rng.normal(0, 0.2, (5, 4))
    offset = np.log(100.0) + rng.normal(0, 0.1, (5, 4))
    pred, y = _channels(rel_true, rel_pred, offset, 1.0, 1.0, 7.0)
    truth, fc = np.exp(offset + rel_true), np.exp(offset + rel_pred)
    assert float(ensemble.smape_loss(pred, y)) == pytest.approx(metrics.smape(truth, fc), 1e-10)
    assert float(ensemble.mase_loss(pred, y)) == pytest.approx(
        np.mean(np.abs(truth - fc)) / 7.0, 1e-10
    )
    assert float(ensemble.mae_loss(pred, y)) == pytest.approx(np.mean(np.abs(rel_true - rel_pred)))
    # additive series: y = (offset + rel) * scale
    pred, y = _channels(rel_true, rel_pred, offset, 0.0, 3.0, 1.0)
    truth, fc = (offset + rel_true) * 3, (offset + rel_pred) * 3
    assert float(ensemble.smape_loss(pred, y)) == pytest.approx(metrics.smape(truth, fc), 1e-10)


def test_mape_loss_equals_mape_and_skips_zero_actuals():
    rng = np.random.default_rng(2)
    rel_true, rel_pred = rng.normal(0, 0.2, (3, 4)), rng.normal(0, 0.2, (3, 4))
    offset = np.full((3, 4), np.log(50.0))
    pred, y = _channels(rel_true, rel_pred, offset, 1.0, 1.0, 1.0)
    truth, fc = np.exp(offset + rel_true), np.exp(offset + rel_pred)
    assert float(ensemble.mape_loss(pred, y)) == pytest.approx(metrics.mape(truth, fc), 1e-10)
    pred, y = _channels(np.array([[0.0, 1.0]]), np.array([[1.0, 2.0]]), np.zeros((1, 2)), 0.0,
                        1.0, 1.0)  # fmt: skip
    # additive: truth (0, 1), forecast (1, 2): the zero actual is left out, MAPE = 100
    assert float(ensemble.mape_loss(pred, y)) == pytest.approx(100.0)


def test_the_judging_metric_sets_the_first_loss_and_the_choice():
    from seqcast.auto import AutoSettings

    assert AutoSettings().loss_names == ("smape", "mase", "mae")
    assert AutoSettings(metric="mape").loss_names == ("mape", "mase", "mae")
    assert AutoSettings(metric="mase").loss_names == ("mase", "mae")
    with pytest.raises(SeqcastError, match="auto metric"):
        AutoSettings(metric="rmse").check()
    truth = np.array([[10.0, 10.0]])
    # a over-forecasts by 50%, b under-forecasts by 40%: sMAPE prefers a, MAPE prefers b
    fc = {"a": truth * 1.5, "b": truth * 0.6}
    combos = {"a": ("a",), "b": ("b",)}
    board = selection.score_candidates(fc, truth, np.array([1.0]), combos, "mape")
    assert selection.choose(board, "smape") == "a" and selection.choose(board, "mape") == "b"


def test_masked_targets_do_not_count():
    pred, y = _channels(np.zeros((1, 2)), np.array([[0.0, 5.0]]), np.zeros((1, 2)), 0.0, 1.0, 1.0)
    y[0, 1, ensemble.MASK] = 0
    assert float(ensemble.mae_loss(pred, y)) == 0.0


# -- selection and combination ------------------------------------------------------------------
def test_combinations_are_every_subset_and_their_mean():
    combos = ensemble.combinations(["nn", "ets", "theta"])
    assert len(combos) == 7 and combos["nn+theta"] == ("nn", "theta")
    fc = {"nn": np.array([[1.0]]), "ets": np.array([[2.0]]), "theta": np.array([[4.0]])}
    assert ensemble.combine(fc, combos["nn+ets+theta"])[0, 0] == pytest.approx(7 / 3)


def test_backtest_scores_pick_the_better_candidate():
    truth = np.array([[10.0, 10.0], [20.0, 20.0]])
    fc = {"a": truth * 1.1, "b": truth * 0.5}
    board = selection.score_candidates(fc, truth, np.array([1.0, 2.0]), {"a": ("a",), "b": ("b",)})
    assert selection.choose(board) == "a"
    expected = np.mean([200 * 1 / 21, 200 * 2 / 42])
    assert board.set_index("candidate").loc["a", "smape"] == pytest.approx(expected)


def test_origins_grow_for_few_series_and_stop_at_the_horizon():
    assert selection.origins(1000, 18) == 1
    assert selection.origins(1, 12) == 12
    assert selection.origins(10, 12) == 6
    # 14-point yearly series, horizon 6: at most 5 origins leave 3 points before the first
    assert selection.origins(3, 6, typical_length=14) == 5
    assert selection.origins(3, 6, typical_length=9) == 1


def test_auto_fits_three_short_yearly_series():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(["a", "b", "c"], 14),
            "ds": np.tile(np.arange(14), 3),
            "y": np.exp(np.cumsum(rng.normal(0.05, 0.1, 42))) * 100,
        }
    )
    fc = seqcast.Forecaster("auto", horizon=6, auto_options=QUICK).fit(frame)
    assert fc.auto_.origins_ == 5 and fc.auto_.notes_["backtest_series"] == 3
    assert np.isfinite(fc.predict()["y_hat"]).all()


# -- conformal calibration ----------------------------------------------------------------------
def test_conformal_radius_is_the_kth_order_statistic():
    residuals = np.arange(1.0, 20.0)[:, None]  # 19 windows
    # k = ceil(20 * 0.95) = 19 -> the largest; k = ceil(20 * 0.8) = 16
    assert uncertainty.conformal_radius(residuals, 95)[0] == 19.0
    assert uncertainty.conformal_radius(residuals, 80)[0] == 16.0


def test_conformal_radius_widens_to_infinity_when_it_cannot_be_calibrated(caplog):
    residuals = np.arange(1.0, 19.0)[:, None]  # 18 windows: 95% needs 19
    with caplog.at_level(logging.WARNING, logger="seqcast.uncertainty"):
        radius = uncertainty.conformal_radius(residuals, 95)
    assert np.isinf(radius).all()
    assert "at least 19 calibration windows" in caplog.text


def test_conformal_coverage_holds_on_exchangeable_errors():
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(2000):
        errors = np.abs(rng.standard_t(3, size=(21, 1)))  # 20 calibration + 1 new
        radius = uncertainty.conformal_radius(errors[:20], 80)
        hits.append(errors[20, 0] <= radius[0])
    # guaranteed >= 0.80 in expectation; 2000 draws: standard error 0.009
    assert 0.78 <= np.mean(hits) <= 0.87


# -- Forecaster("auto") ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    frame = _seasonal_frame()
    train = frame.groupby("unique_id").head(48)
    fc = seqcast.Forecaster("auto", horizon=12, season=12, auto_options=QUICK).fit(train)
    return fc, train, frame


def test_auto_forecasts_every_series_with_intervals(fitted):
    fc, train, _ = fitted
    pred = fc.predict(intervals=[80])
    assert list(pred.columns) == ["unique_id", "ds", "y_hat", "y_lo_80", "y_hi_80"]
    assert len(pred) == 6 * 12 and np.isfinite(pred["y_hat"]).all()
    assert (pred["y_lo_80"] <= pred["y_hat"]).all() and (pred["y_hat"] <= pred["y_hi_80"]).all()
    # a small panel: AutoARIMA joins AutoETS and AutoTheta
    assert fc.auto_.statistical_ == ["ets", "theta", "arima"]
    assert fc.auto_.choice_ in ensemble.combinations(["mlp", *fc.auto_.statistical_])
    assert fc.auto_.scores_, "the choice comes with its backtest scores"


def test_auto_beats_seasonal_naive_on_a_clean_seasonal_panel(fitted):
    fc, train, frame = fitted
    truth = frame.groupby("unique_id").tail(12)
    ours = fc.evaluate(frame)["smape"]
    last = train.groupby("unique_id").tail(12)["y"].to_numpy()
    snaive = metrics.smape(truth["y"].to_numpy(), last)
    assert ours < snaive


def test_auto_save_load_gives_the_same_forecasts(fitted, tmp_path):
    fc, _, _ = fitted
    fc.save(tmp_path / "m")
    back = seqcast.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.predict(intervals=[80]), fc.predict(intervals=[80]))
    config = (tmp_path / "m" / "config.json").read_text()
    assert '"choice"' in config and '"backtest_scores"' in config


def test_auto_forecasts_series_it_never_saw_and_short_ones(fitted):
    fc, _, _ = fitted
    other = _seasonal_frame(n_series=2, seed=5).assign(unique_id=lambda d: "new_" + d.unique_id)
    short = pd.DataFrame({"unique_id": "tiny", "ds": [0, 1, 2], "y": [3.0, 4.0, 5.0]})
    pred = fc.predict(pd.concat([other, short]), intervals=[80])
    assert set(pred["unique_id"]) == {"new_s0", "new_s1", "tiny"}
    assert np.isfinite(pred["y_hat"]).all()


def test_auto_backtest_refits_nothing_but_the_statistical_members(fitted):
    fc, _, frame = fitted
    bt = fc.backtest(frame, windows=2)
    assert len(bt) == 2 * 6 * 12 and bt["y"].notna().all()


def test_auto_leaves_arima_out_when_its_probed_cost_is_over_budget():
    frame = _seasonal_frame(n_series=3, length=40)
    options = {**QUICK, "arima_budget": 0.0}  # any measured cost is over it
    fc = seqcast.Forecaster("auto", horizon=6, season=12, auto_options=options).fit(frame)
    assert fc.auto_.statistical_ == ["ets", "theta"]
    assert "probed cost" in fc.auto_.skipped_["arima"]


def test_auto_refuses_covariates_and_mc_dropout():
    frame = _seasonal_frame(n_series=2).assign(x=1.0)
    with pytest.raises(SeqcastError, match="target alone"):
        seqcast.Forecaster("auto", horizon=6, covariates=["x"]).fit(frame)
    with pytest.raises(SeqcastError, match="conformal"):
        seqcast.Forecaster("auto", horizon=6, interval_method="mc_dropout").fit(frame)


def test_noise_scale_is_the_mean_seasonal_step_on_the_normalised_scale():
    from seqcast.auto import noise_scale

    y = np.exp(0.1 * np.arange(20))  # log steps of exactly 0.1
    t = pipeline.fit_transform(y, 1)
    assert noise_scale(t, y, 1) == pytest.approx(0.1)
    flat = np.full(10, 5.0)
    assert noise_scale(pipeline.fit_transform(flat, 1), flat, 1) == 1.0


def test_noisier_series_get_wider_intervals_at_the_same_level():
    rng = np.random.default_rng(4)
    rows = []
    for i, sigma in enumerate([0.01] * 5 + [0.1] * 5):
        y = 100 * np.exp(np.cumsum(rng.normal(0.01, sigma, 50)))
        rows.append(pd.DataFrame({"unique_id": f"s{i}", "ds": np.arange(50), "y": y}))
    frame = pd.concat(rows)
    fc = seqcast.Forecaster("auto", horizon=4, auto_options=QUICK).fit(frame)
    pred = fc.predict(intervals=[80])
    width = (np.log(pred["y_hi_80"]) - np.log(pred["y_lo_80"])).groupby(pred["unique_id"]).mean()
    smooth, noisy = width[[f"s{i}" for i in range(5)]], width[[f"s{i}" for i in range(5, 10)]]
    assert noisy.min() > 3 * smooth.max()


# -- network families ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mlp", "rnn", "cnn"])
@pytest.mark.parametrize(
    ("lookback", "seasons"), [(3, ()), (18, (12,)), (54, (12,)), (156, (52,)), (504, (24, 168))]
)
def test_every_family_maps_windows_to_the_horizon(family, lookback, seasons):
    from seqcast.models import families

    torch.manual_seed(0)
    model = ensemble.network(lookback, 7, 32, family, seasons)
    out = model(torch.randn(5, lookback, 2))
    assert tuple(out.shape) == (5, 7) and torch.isfinite(out).all()
    if family == "cnn":  # the convolutions reach the whole window, so every season in it
        assert families.receptive_field(model) >= lookback
    if family == "rnn":  # the recurrence runs at most MAX_STEPS steps, on the compiled kernel
        lstms = [m for m in model.modules() if isinstance(m, families.DilatedLSTM)]
        assert lstms and all(m.dilation < families.MAX_STEPS for m in lstms)
        if seasons and 2 * max(seasons) <= lookback:
            patch = next((m.size for m in model.modules() if isinstance(m, families.Patches)), 1)
            assert lstms[-1].dilation == round(max(seasons) / patch)


def test_rnn_members_run_the_compiled_lstm_kernel():
    from seqcast.layers import _compiled

    if not _compiled.available():
        pytest.skip("the compiled kernels are not available here")
    model = ensemble.network(36, 6, 32, "rnn", (12,))
    lstm = next(m for m in model.modules() if isinstance(m, seqcast.layers.LSTM))
    assert lstm._path(torch.zeros(4, 9, 8), None) == "compiled"


def test_dilated_lstm_step_sees_the_state_from_dilation_steps_back():
    from seqcast.models.families import DilatedLSTM

    torch.manual_seed(0)
    layer = DilatedLSTM(4, dilation=3, residual=False)
    layer.build((None, 10, 2))
    x = torch.randn(2, 10, 2)
    out = layer(x)
    for t in (9, 5, 1):  # the plain LSTM over steps ..., t - 6, t - 3, t
        chain = x[:, t % 3 :: 3][:, : t // 3 + 1]
        assert torch.allclose(out[:, t], layer.lstm(chain)[:, -1], atol=1e-6)
    residual = DilatedLSTM(2, dilation=2)
    residual.build((None, 5, 2))
    plain = residual.lstm(torch.zeros(1, 1, 2))  # the first step: no state before it
    assert torch.allclose(residual(torch.zeros(1, 5, 2))[:, 0], plain[:, 0], atol=1e-6)


def test_last_step_tcn_equals_the_full_dilated_stack_at_its_last_step():
    from seqcast.models.families import LastStepTCN

    torch.manual_seed(0)
    tcn = LastStepTCN(3, depth=3)
    tcn.build((None, 6, 2))
    x = torch.randn(2, 6, 2)
    # the full causal stack over the window padded to 2^3 steps, every step computed
    h = tcn.inp(torch.nn.functional.pad(x, (0, 0, 2, 0)))
    skips = 0
    for k in range(3):
        d = 2**k
        older = torch.nn.functional.pad(h, (0, 0, d, 0))[:, : h.shape[1]]
        z = torch.relu(tcn.convs[k](torch.cat([older, h], dim=-1)))
        skips = skips + tcn.skip[k](z[:, -1])
        if k < 2:
            h = h + tcn.res[k](z)
    assert torch.allclose(tcn(x), skips, atol=1e-5)


def test_auto_with_rnn_and_cnn_members_trains_and_round_trips(tmp_path):
    frame = _seasonal_frame(n_series=3, length=36)
    options = {**QUICK, "families": ("rnn", "cnn"), "epochs": 1, "refit": False}
    fc = seqcast.Forecaster("auto", horizon=6, season=12, auto_options=options).fit(frame)
    assert {m.family for m in fc.auto_.members_} == {"rnn", "cnn"}
    assert fc.auto_.choice_ in ensemble.combinations(["rnn", "cnn"])
    fc.save(tmp_path / "m")
    back = seqcast.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.predict(intervals=[80]), fc.predict(intervals=[80]))
    config = (tmp_path / "m" / "config.json").read_text()
    assert "DilatedLSTM" in config and "LastStepTCN" in config


def test_a_time_limit_is_honoured_and_what_it_cut_is_named():
    frame = _seasonal_frame(n_series=4, length=3000, season=24)
    options = {"epochs": 1000, "patience": 1000, "time_limit": 4.0, "families": ("mlp",)}
    fc = seqcast.Forecaster("auto", horizon=24, season=24, auto_options=options).fit(frame)
    assert fc.auto_.fit_seconds_ <= 4.4  # within 10%
    assert fc.auto_.skipped_, "a 1000-epoch recipe cannot fit in 4 s: something was cut"
    assert np.isfinite(fc.predict()["y_hat"]).all()
    assert fc.auto_.notes_["skipped"] == fc.auto_.skipped_


def test_several_seasons_reach_the_statistical_members_and_the_networks():
    frame = _seasonal_frame(n_series=2, length=150, season=6)
    options = {**QUICK, "statistical": ("ets",), "arima_budget": 0.0}
    fc = seqcast.Forecaster("auto", horizon=6, season=[12, 6], auto_options=options).fit(frame)
    assert fc.auto_.seasons == (6, 12) and fc.auto_.season == 6
    assert fc.auto_.statistical_ == ["ets"] and "6,12" in fc.auto_.describe()
    assert np.isfinite(fc.predict()["y_hat"]).all()


def test_seasons_are_inferred_from_hourly_stamps():
    frame = _seasonal_frame(n_series=1, length=400, season=24)
    frame["ds"] = pd.date_range("2024-01-01", periods=400, freq="h")
    options = {**QUICK, "families": ("mlp",)}
    fc = seqcast.Forecaster("auto", horizon=12, auto_options=options).fit(frame)
    assert fc.auto_.seasons == (24, 168) and fc.auto_.season_inferred_


def test_several_seasons_are_refused_for_a_single_season_model():
    frame = _seasonal_frame(n_series=1, length=100)
    with pytest.raises(SeqcastError, match="several seasons"):
        seqcast.Forecaster("lstm", window=8, horizon=4, season=[4, 12]).fit(frame)
    with pytest.raises(SeqcastError, match="positive integer or a list"):
        seqcast.Forecaster("auto", horizon=4, season=[4, 0]).fit(frame)


def test_auto_intervals_are_in_mase_units_and_older_directories_keep_their_scheme(fitted, tmp_path):
    import json

    fc, train, _ = fitted
    assert fc.auto_.interval_scheme_ == "signed_mase"
    pred = fc.predict(intervals=[80])
    assert (pred["y_lo_80"] >= 0).all()  # positive series: never below 0
    fc.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    del config["auto"]["interval_scheme"]  # as directories were written before it
    config_path.write_text(json.dumps(config))
    old = seqcast.load(tmp_path / "m")
    assert old.auto_.interval_scheme_ == "abs_noise"
    again = old.predict(intervals=[80])
    pd.testing.assert_series_equal(again["y_hat"], pred["y_hat"])
    assert np.isfinite(again["y_lo_80"]).all() and not again["y_lo_80"].equals(pred["y_lo_80"])
