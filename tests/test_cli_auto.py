"""`seqcast fit --model auto` on long multi-series data, then predict and summary from the saved
directory, run as a user runs them."""

import json
import os
import signal
import subprocess
import sys
import time

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


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_fit_auto_killed_mid_way_leaves_no_process_behind(tmp_path):
    rng = np.random.default_rng(3)
    t = np.arange(3000)
    y = 500 + 0.1 * t + 40 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 8, len(t))
    data = tmp_path / "weekly.csv"
    pd.DataFrame({"ds": t, "y": y}).to_csv(data, index=False)
    cmd = [sys.executable, "-m", "seqcast.cli", "fit", str(data), "--model", "auto",
           "--horizon", "13", "--season", "52", "--out", str(tmp_path / "m")]  # fmt: skip
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        kids = set()
        while not kids and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            kids = _children(parent.pid)  # the statistical members' worker processes
        assert kids, "the fit ended (or stalled) before starting its worker processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        time.sleep(5)
        assert not [k for k in kids if _alive(k)], "processes outlived the killed fit"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_season_and_time_limit_flags_refuse_bad_values(panel, tmp_path):
    base = ["fit", panel, "--horizon", 4, "--id-col", "store", "--time-col", "week",
            "--target", "sales", "--out", tmp_path / "m"]  # fmt: skip
    cases = [
        (["--model", "auto", "--season", "24,x"], "--season must be a positive integer"),
        (["--model", "auto", "--time-limit", "ten"], "--time-limit must be a positive duration"),
        (["--model", "lstm", "--window", 8, "--time-limit", "10s"], "--time-limit is for"),
        (["--model", "lstm", "--window", 8, "--season", "4,8"], "several seasons are for"),
    ]
    for extra, message in cases:
        result = run(*base, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_compare_takes_several_seasons_and_a_time_limit_for_auto(panel, tmp_path):
    out = tmp_path / "cmp"
    result = run(
        "compare", panel, "--horizon", 4, "--season", "2,4", "--models", "auto",
        "--time-limit", "20s", "--id-col", "store", "--time-col", "week", "--target", "sales",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    assert board.loc["auto", "fit_seconds"] <= 22  # 20 s and 10%
    config = json.loads((out / "best_model" / "config.json").read_text())
    if "auto" in config:  # the best model is auto: its seasons are both
        assert config["auto"]["notes"]["seasons"] == [2, 4]


def test_fit_normalize_flag_reaches_the_saved_model(panel, tmp_path):
    out = tmp_path / "m"
    result = run(
        "fit", panel, "--model", "gru", "--window", 8, "--horizon", 4, "--epochs", 2,
        "--normalize", "auto", "--id-col", "store", "--time-col", "week", "--target", "sales",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["params"]["normalize"] == "auto"
