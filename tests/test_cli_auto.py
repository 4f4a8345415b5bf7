"""`seqcast fit --model auto` on long multi-series data, then predict and summary from the saved
directory, run as a user runs them."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "seqcast.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        t = np.arange(40)
        y = (20 + 5 * i) * (1 + 0.25 * np.sin(2 * np.pi * t / 4)) * np.exp(rng.normal(0, 0.03, 40))
        rows.append(pd.DataFrame({"store": f"s{i}", "week": t, "sales": y}))
    path = tmp_path_factory.mktemp("auto") / "panel.csv"
    pd.concat(rows).sort_values(["week", "store"]).to_csv(path, index=False)  # date-sorted
    return path


def test_fit_auto_predict_and_summary(panel, tmp_path):
    out = tmp_path / "model"
    fit = run(
        "fit", panel, "--model", "auto", "--horizon", 4, "--season", 4, "--id-col", "store",
        "--time-col", "week", "--target", "sales", "--out", out,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert "chose" in fit.stdout and "backtest sMAPE" in fit.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["auto"]["choice"] == config["auto"]["backtest_scores"][0]["candidate"]

    forecast = tmp_path / "f.csv"
    pred = run("predict", out, "--intervals", "80", "--out", forecast)
    assert pred.returncode == 0, pred.stderr
    frame = pd.read_csv(forecast)
    assert len(frame) == 4 * 4 and frame["y_hat"].notna().all()
    assert sorted(frame["unique_id"].unique()) == ["s0", "s1", "s2", "s3"]
    assert (frame["y_lo_80"] <= frame["y_hi_80"]).all()

    summary = run("summary", out)
    assert summary.returncode == 0, summary.stderr
    assert "networks" in summary.stdout and "backtest" in summary.stdout


def test_fit_without_window_is_only_for_auto(panel, tmp_path):
    result = run(
        "fit", panel, "--model", "lstm", "--horizon", 4, "--id-col", "store", "--out",
        tmp_path / "m",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--window is required" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
