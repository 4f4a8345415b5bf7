"""benchmarks/long_season.py: options, the generated series, the hard time limit per fit, and
small runs whose scores are recomputed here."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("statsforecast")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "long_season.py"


def _script():
    name = "long_season_benchmark"
    if name not in sys.modules:  # dataclasses look their module up while being defined
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _main(argv: list[str]) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _script().main(argv) == 0
    return printed.getvalue()


def test_options_and_generated_series():
    module = _script()
    assert module.parse_seasons("24, 48,168+24,24") == [(24,), (48,), (24, 168)]
    for bad in ("24,x", "1", ""):
        with pytest.raises(ValueError):
            module.parse_seasons(bad)
    assert [module.horizon_for(s) for s in [(24,), (52,), (24, 168), (336,)]] == [24, 48, 48, 48]
    args = module.parse_args(["--quick", "--models", "mstl,seasonal_naive"])
    assert (args.sizes, args.real, args.models) == ([2000], [], ["mstl", "seasonal_naive"])
    assert module.parse_args([]).seasons == [(24,), (48,), (52,), (132,), (168,), (336,), (24, 168)]
    for argv in (["--models", "prophet"], ["--max-seconds", "0"], ["--real", "elec"]):
        with pytest.raises(SystemExit):
            module.parse_args(argv)

    y = module.generate(10_000, (24, 168), seed=0)
    assert y.shape == (10_000,) and np.isfinite(y).all()
    np.testing.assert_array_equal(y, module.generate(10_000, (24, 168), seed=0))
    assert not np.array_equal(y, module.generate(10_000, (24, 168), seed=1))
    # both seasons are in it: a lag-168 difference removes more than a lag-24 one
    spread = {lag: np.std(y[lag:] - y[:-lag]) for lag in (1, 24, 168)}
    assert spread[168] < spread[24] < np.std(y)

    case = module.synthetic_case(2000, (52,), seed=0)
    assert (len(case.train), len(case.test), case.horizon, case.size) == (1952, 48, 48, 2000)
    np.testing.assert_array_equal(
        np.concatenate([case.train, case.test]), module.generate(2000, (52,))
    )
    with pytest.raises(ValueError, match="too short for season 336"):
        module.synthetic_case(1000, (336,), seed=0)

    taylor = module.real_case("taylor")
    assert (len(taylor.train), len(taylor.test), taylor.horizon) == (3696, 336, 336)
    assert taylor.seasons == (48, 336)


def test_a_fit_past_max_seconds_is_killed_and_recorded(tmp_path):
    out = tmp_path / "timeout.json"
    argv = ["--sizes", "600", "--seasons", "24", "--models", "mstl", "--real", "none"]
    printed = _main([*argv, "--max-seconds", "0.5", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["error"] == "timed out after 0.5 s" and row["process_s"] < 5
    assert "timed out" in printed.strip().splitlines()[-2]


def test_table_has_one_line_per_series():
    rows = [
        {"series": "synthetic", "size": 600, "seasons": [24], "horizon": 24, "model": m}
        | {"error": None, "wall_s": 1.25, "mase": 0.5}
        for m in ("mstl", "auto")
    ]
    rows[1] |= {"error": "timed out after 300 s"}
    lines = _script().table(rows, ["mstl", "auto"])
    assert lines[2].split() == ["series", "size", "seasons", "h", "mstl", "wall_s", "MASE"] + [
        "auto",
        "wall_s",
        "MASE",
    ]
    assert lines[3].split() == ["synthetic", "600", "24", "24", "1.2", "0.500", "timed", "out", "-"]
    assert lines[4].strip() == "synthetic 600 24 auto: timed out after 300 s"


@pytest.mark.benchmark
def test_small_run_with_statsforecast_models(tmp_path):
    module = _script()
    out = tmp_path / "small.json"
    argv = ["--sizes", "600", "--seasons", "24", "--models", "seasonal_naive,mstl"]
    printed = _main([*argv, "--real", "none", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result) == {"config", "versions", "machine", "series", "rows"}
    assert result["series"] == [
        {"series": "synthetic", "size": 600, "seasons": [24], "horizon": 24}
    ]
    rows = {r["model"]: r for r in result["rows"]}
    assert all(r["error"] is None and r["wall_s"] >= 0 for r in rows.values())
    # seasonal naive recomputed: the last 24 training points again, scored by MASE at lag 24
    y = module.generate(600, (24,), seed=0)
    train, test = y[:-24], y[-24:]
    mase = np.mean(np.abs(test - train[-24:])) / np.mean(np.abs(train[24:] - train[:-24]))
    assert rows["seasonal_naive"]["mase"] == pytest.approx(mase, rel=1e-9)
    assert rows["mstl"]["mase"] < 2 and rows["mstl"]["season_given"] == 24
    assert printed.strip().splitlines()[-1].split()[:4] == ["synthetic", "600", "24", "24"]


@pytest.mark.benchmark
def test_small_run_of_auto_within_its_time_limit(tmp_path):
    module = _script()
    if module.missing_auto_fields(["time_limit"]):
        pytest.skip("this seqcast's auto has no time_limit yet")
    out = tmp_path / "auto.json"
    argv = ["--sizes", "600", "--seasons", "24", "--models", "auto", "--real", "none"]
    _main([*argv, "--time-limit", "10", "--max-seconds", "50", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["error"] is None, row["error"]
    assert row["wall_s"] < 30 and np.isfinite(row["mase"]) and row["season_given"] == 24
