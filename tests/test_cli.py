"""The `seqcast` command, run as a user runs it: in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

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
    ]


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
        "corrupted or not a safetensors",
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
    leftovers = [p.name for p in tmp_path.iterdir() if p.name in ("o", "c", "unused-out")]
    assert leftovers == [], f"{case}: left {leftovers} behind"
