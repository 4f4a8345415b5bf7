"""The `seqcast` command, run as a user runs it: in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

AIRLINE = (
    Path(__file__).resolve().parents[1] / "src" / "seqcast" / "data" / "airline_passengers.csv"
)


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "seqcast.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    result = run(
        "fit",
        AIRLINE,
        "--model",
        "gru",
        "--window",
        24,
        "--horizon",
        12,
        "--epochs",
        3,
        "--units",
        8,
        "--season",
        12,
        "--out",
        out,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "saved to" in result.stdout
    return out


def test_fit_writes_a_model_directory(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json",
        "model.safetensors",
        "scaler.json",
    ]
    assert json.loads((model_dir / "config.json").read_text())["params"]["model"] == "gru"


def test_predict_writes_csv_with_intervals(model_dir, tmp_path):
    out = tmp_path / "forecast.csv"
    result = run("predict", model_dir, "--intervals", "80,95", "--out", out)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "unique_id",
        "ds",
        "y_hat",
        "y_lo_80",
        "y_hi_80",
        "y_lo_95",
        "y_hi_95",
    ]
    assert len(frame) == 12 and frame["ds"].iloc[0] == "1961-01-01"
    shorter = run("predict", model_dir, AIRLINE, "--horizon", 3)
    assert shorter.returncode == 0 and "1961-03-01" in shorter.stdout


def test_evaluate_and_summary(model_dir):
    result = run("evaluate", model_dir, AIRLINE)
    assert result.returncode == 0, result.stderr
    assert "mase" in result.stdout and "coverage_80" in result.stdout
    result = run("summary", model_dir)
    assert result.returncode == 0, result.stderr
    assert "gru (GRU)" in result.stdout and "Total params" in result.stdout


def test_predict_says_on_one_line_of_stderr_when_a_level_cannot_be_calibrated(tmp_path):
    """A naive model fitted on 12 points keeps 2 held-out windows (starts 6 and 7 reach past
    the cut at 9); 80% conformal intervals need 4 (the smallest n with ceil((n + 1) 0.8) <=
    n). The interval is unbounded, and one line of stderr says so and names the fixes: at
    most 66% (ceil(3 L / 100) <= 2), or more data. 66% itself is finite and silent."""
    data = tmp_path / "s12.csv"
    pd.DataFrame(
        {"ds": pd.date_range("2020-01-01", periods=12, freq="MS"), "y": np.arange(12.0)}
    ).to_csv(data, index=False)
    model = tmp_path / "m"
    fit = run("fit", data, "--model", "naive", "--horizon", 2, "--window", 3, "--out", model)
    assert fit.returncode == 0, fit.stderr
    result = run("predict", model, "--intervals", 80, "--out", tmp_path / "f.csv")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "80% conformal intervals need at least 4 calibration windows, got 2: the interval is "
        "unbounded; ask for a level of at most 66%, or give more (or longer) series"
    ]
    frame = pd.read_csv(tmp_path / "f.csv")
    assert (frame["y_lo_80"] == -np.inf).all() and (frame["y_hi_80"] == np.inf).all()
    lower = run("predict", model, "--intervals", 66, "--out", tmp_path / "g.csv")
    assert lower.returncode == 0 and lower.stderr == ""
    assert np.isfinite(pd.read_csv(tmp_path / "g.csv")[["y_lo_66", "y_hi_66"]]).all().all()


def test_compare_writes_leaderboard_sorted_by_mase(tmp_path):
    out = tmp_path / "cmp"
    result = run(
        "compare",
        AIRLINE,
        "--horizon",
        12,
        "--season",
        12,
        "--models",
        "linear",
        "--epochs",
        5,
        "--out",
        out,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns) == [
        "model",
        "mae",
        "rmse",
        "mape",
        "smape",
        "mase",
        "coverage_80",
        "fit_seconds",
    ]
    assert set(board["model"]) == {"naive", "seasonal_naive", "linear"}
    assert board["mase"].is_monotonic_increasing
    assert (out / "forecast.png").stat().st_size > 10_000
    assert (out / "best_model" / "model.safetensors").exists()


def test_compare_normalizes_learned_models_unless_told_not_to(tmp_path):
    args = ["compare", AIRLINE, "--horizon", 12, "--season", 12, "--models", "linear"]
    boards = {}
    for flag in ([], ["--normalize", "none"], ["--normalize", "auto"]):
        out = tmp_path / ("_".join(flag) or "default")
        result = run(*args, "--epochs", 5, "--out", out, "--quiet", *flag)
        assert result.returncode == 0, result.stderr
        boards[tuple(flag)] = pd.read_csv(out / "leaderboard.csv").set_index("model")["mase"]
    auto, none = boards[("--normalize", "auto")], boards[("--normalize", "none")]
    pd.testing.assert_series_equal(boards[()], auto)  # auto is the default
    assert auto["linear"] != none["linear"]
    assert auto["seasonal_naive"] == none["seasonal_naive"]  # baselines see the raw series
    bad = run(*args, "--out", tmp_path / "bad", "--normalize", "log")
    assert bad.returncode == 2
    assert "--normalize must be one of none, auto, got 'log'" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_demo_runs_every_model_on_the_airline_data(tmp_path):
    result = run("demo", "--out", tmp_path / "demo", "--epochs", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(tmp_path / "demo" / "leaderboard.csv")
    assert {"naive", "seasonal_naive", "linear", "lstm", "gru", "conv_gru", "wavenet"} <= set(
        board["model"]
    )
    assert "best:" in result.stdout
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "best_model",
        "forecast.png",
        "leaderboard.csv",
        "leaderboard.png",
        "report.html",
    ]


def _gappy_airline(tmp_path):
    """The airline CSV with 10 values blanked out, one of them in the last 12 months."""
    table = pd.read_csv(AIRLINE)
    table.loc[[5, 17, 30, 44, 61, 75, 90, 103, 118, 140], "passengers"] = None
    path = tmp_path / "gappy.csv"
    table.to_csv(path, index=False)
    return path, table


def test_compare_with_impute_fills_gaps_and_says_so(tmp_path):
    data, _ = _gappy_airline(tmp_path)
    out = tmp_path / "cmp"
    args = ["compare", data, "--horizon", 12, "--season", 12, "--models", "linear"]
    refused = run(*args, "--epochs", 5, "--out", out, "--quiet")
    assert refused.returncode == 2 and "--impute" in refused.stderr
    assert not out.exists()
    result = run(*args, "--epochs", 5, "--out", out, "--quiet", "--impute")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("--impute: filled 10 missing values in 1 series (")
    assert "by the RNN" in lines[0] and "by linear interpolation" in lines[0]
    assert lines[1].startswith("note: 1 of the 12 held-out values scored below are imputed")
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["model"]) == {"naive", "seasonal_naive", "linear"}
    assert board["mase"].notna().all()


def test_fit_evaluate_and_predict_with_impute(tmp_path, model_dir):
    data, _ = _gappy_airline(tmp_path)
    fit_args = ["--model", "linear", "--window", 24, "--horizon", 12, "--epochs", 2, "--quiet"]
    fitted = run("fit", data, *fit_args, "--out", tmp_path / "m", "--impute-method", "linear")
    assert fitted.returncode == 0, fitted.stderr
    assert "(0 by the RNN, 10 by linear interpolation;" in fitted.stdout
    scored = run("evaluate", model_dir, data, "--impute")
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith("--impute: filled 10 missing values")
    assert "mase" in scored.stdout
    complete = run("evaluate", model_dir, AIRLINE, "--impute")
    assert "no missing values, nothing to fill" in complete.stdout
    forecast = run("predict", model_dir, data, "--impute-method", "linear", "--horizon", 2)
    assert forecast.returncode == 0, forecast.stderr
    assert "(0 by the RNN, 10 by linear interpolation;" in forecast.stdout
    assert "1961-02-01" in forecast.stdout


def test_impute_writes_the_filled_table(tmp_path):
    data, table = _gappy_airline(tmp_path)
    out = tmp_path / "filled" / "airline.csv"
    result = run("impute", data, "--out", out, "--epochs", 20)
    assert result.returncode == 0, result.stderr
    filled = pd.read_csv(out)
    assert list(filled.columns) == ["unique_id", "ds", "y", "imputed"]
    assert len(filled) == len(table)
    assert pd.to_datetime(filled["ds"]).equals(pd.to_datetime(table["month"]))
    assert not filled["y"].isna().any()
    observed = table["passengers"].notna().to_numpy()
    assert (filled["y"].to_numpy()[observed] == table["passengers"].to_numpy()[observed]).all()
    assert filled["imputed"].tolist() == (~observed).tolist()
    series_line, total, checks = result.stdout.splitlines()[:3]
    assert series_line.startswith("series_0: 10 filled by ")
    assert "checks, MAE" in series_line and "interpolation)" in series_line
    assert total.startswith("filled 10 of 10 missing values")
    assert checks.startswith("on 13 held-out observed values: MAE")
    assert f"wrote 144 rows to {out}" in result.stdout
    assert [p.name for p in out.parent.iterdir()] == ["airline.csv"]  # no staging left


def test_impute_many_series_keeps_the_row_order_and_prints_a_table(tmp_path):
    """Twelve series listed by date (interleaved): the filled file keeps that order."""
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    parts = [
        pd.DataFrame({"store": f"s{k:02d}", "day": days, "sales": np.arange(20.0) + k})
        for k in range(12)
    ]
    table = pd.concat(parts).sort_values(["day", "store"], ignore_index=True)
    table.loc[[30, 31, 100, 150], "sales"] = None
    data = tmp_path / "stores.csv"
    table.to_csv(data, index=False)
    out = tmp_path / "stores.parquet"
    result = run("impute", data, "--out", out, "--id-col", "store", "--method", "linear")
    assert result.returncode == 0, result.stderr
    assert "Imputation by method" in result.stdout and "asked for" in result.stdout
    filled = pd.read_parquet(out)
    assert filled["unique_id"].tolist() == table["store"].tolist()
    assert filled["ds"].tolist() == table["day"].tolist()
    assert not filled["y"].isna().any() and int(filled["imputed"].sum()) == 4
    # each series is a ramp: interpolation restores it exactly
    assert (filled["y"] == filled["ds"].dt.day - 1 + filled["unique_id"].str[1:].astype(int)).all()


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = {
    "missing file": (lambda d, m: ["fit", d / "nope.csv", *FIT], "no such file"),
    "empty file": (lambda d, m: ["fit", _write(d, "e.csv", ""), *FIT], "empty"),
    "non-numeric target": (
        lambda d, m: ["fit", _write(d, "n.csv", "t,v\n2020-01-01,1\n2020-02-01,abc\n"), *FIT],
        "abc",
    ),
    "unsorted stamps": (
        lambda d, m: [
            "fit",
            _write(d, "u.csv", "t,v\n2020-02-01,1\n2020-01-01,2\n2020-03-01,3\n"),
            *FIT,
        ],
        "sort",
    ),
    "duplicate stamps": (
        lambda d, m: [
            "fit",
            _write(d, "d.csv", "t,v\n2020-01-01,1\n2020-01-01,2\n2020-03-01,3\n"),
            *FIT,
        ],
        "duplicate",
    ),
    "NaN in training data": (
        lambda d, m: [
            "fit",
            _write(
                d,
                "nan.csv",
                "t,v\n"
                + "".join(f"2020-01-{i + 1:02d},{'' if i == 5 else i}\n" for i in range(28)),
            ),
            "--model",
            "linear",
            "--window",
            4,
            "--horizon",
            2,
            "--out",
            d / "o",
        ],
        "missing value",
    ),
    "horizon <= 0": (
        lambda d, m: [
            "fit",
            AIRLINE,
            "--model",
            "gru",
            "--window",
            24,
            "--horizon",
            0,
            "--out",
            d / "o",
        ],
        "--horizon must be a positive integer",
    ),
    "window longer than the series": (
        lambda d, m: [
            "fit",
            AIRLINE,
            "--model",
            "gru",
            "--window",
            200,
            "--horizon",
            12,
            "--out",
            d / "o",
        ],
        "window 200",
    ),
    "unknown model": (
        lambda d, m: [
            "fit",
            AIRLINE,
            "--model",
            "lstmm",
            "--window",
            24,
            "--horizon",
            12,
            "--out",
            d / "o",
        ],
        "unknown model 'lstmm'",
    ),
    "unknown column": (lambda d, m: ["fit", AIRLINE, *FIT, "--target", "Sales"], "Sales"),
    "not a model dir": (lambda d, m: ["predict", d], "not a seqcast model directory"),
    "corrupted safetensors": (
        lambda d, m: ["predict", _corrupt(d, m)],
        "not a safetensors file",
    ),
    "bad interval level": (
        lambda d, m: ["predict", m, "--intervals", "80,150"],
        "whole percentage",
    ),
    "unknown strategy": (
        lambda d, m: ["fit", AIRLINE, *FIT, "--strategy", "magic"],
        "unknown strategy",
    ),
    "unknown compare model": (
        lambda d, m: ["compare", AIRLINE, "--horizon", 12, "--models", "foo", "--out", d / "c"],
        "unknown model 'foo'",
    ),
    "missing required option": (lambda d, m: ["fit", AIRLINE], "Missing option"),
    "horizon beyond a direct model": (
        lambda d, m: ["predict", m, "--horizon", 50],
        "trained for a horizon of 12",
    ),
    "negative dropout": (lambda d, m: ["fit", AIRLINE, *FIT, "--dropout", "-0.5"], "dropout"),
    "impute to an unknown file type": (
        lambda d, m: ["impute", AIRLINE, "--out", d / "o" / "filled.xlsx"],
        "expected a name ending in .csv",
    ),
    "impute a missing file": (
        lambda d, m: ["impute", d / "nope.csv", "--out", d / "o.csv"],
        "no such file",
    ),
    "impute with an unknown method": (
        lambda d, m: ["impute", AIRLINE, "--out", d / "o.csv", "--method", "spline"],
        "unknown --method 'spline'",
    ),
    "impute a series with no value": (
        lambda d, m: ["impute", _write(d, "blank.csv", "ds,y\n1,\n2,\n3,\n"), "--out", d / "o.csv"],
        "no observed value",
    ),
    "impute without --out": (lambda d, m: ["impute", AIRLINE], "Missing option '--out'"),
    "unknown imputation method": (
        lambda d, m: [
            "compare",
            AIRLINE,
            "--horizon",
            12,
            "--out",
            d / "c",
            "--impute-method",
            "x",
        ],
        "unknown --impute-method 'x'",
    ),
}
FIT = ["--model", "linear", "--window", 4, "--horizon", 2, "--epochs", 1, "--out", "unused-out"]


def _corrupt(tmp_path, model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 20)
    return broken


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, model_dir, monkeypatch):
    make_args, fragment = BAD[case]
    result = run(*make_args(tmp_path, model_dir), cwd=tmp_path)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name in ("o", "c", "unused-out", "o.csv")]
    assert leftovers == [], f"{case}: left {leftovers} behind"


def test_impute_for_scoring_never_lets_held_out_values_into_the_training_part():
    # a gap just before the last 3 points: interpolating over the whole series would draw the
    # gap's fill towards the held-out values; the training part must be filled from itself
    from seqcast.cli.missing import gaps_filled

    base = pd.DataFrame({"unique_id": "a", "ds": np.arange(30), "y": np.arange(30.0)})
    base.loc[25:26, "y"] = np.nan
    fills = []
    for held_out in (0.0, 1000.0):
        frame = base.copy()
        frame.loc[27:, "y"] = held_out
        filled, _ = gaps_filled(frame, {}, "linear", 0, scored=3)
        fills.append(filled["y"].to_numpy()[25:27])
    np.testing.assert_array_equal(fills[0], fills[1])
