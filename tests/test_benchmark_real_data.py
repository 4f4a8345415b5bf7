"""benchmarks/real_data.py runs end to end in --quick mode and writes the promised JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"
MODELS = ["seasonal_naive", "linear"]
PEERS = ["SeasonalNaive", "AutoETS", "AutoARIMA"]
KEYS = {
    "dataset",
    "holdout",
    "model",
    "library",
    "mae",
    "rmse",
    "smape",
    "mase",
    "coverage_80",
    "fit_seconds",
}
HAVE_SF = importlib.util.find_spec("statsforecast") is not None


@pytest.mark.benchmark
def test_real_data_quick_run_writes_finite_rows(tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    # SEQCAST_NO_COMPILE: the C++ kernels' first build can take tens of seconds; they have
    # their own tests.
    env = {**os.environ, "SEQCAST_NO_COMPILE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--datasets",
            "airline12",
            "--models",
            ",".join(MODELS),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    # one learned model: the ensemble needs two, so it is left out
    assert [r["model"] for r in rows] == [*MODELS, *PEERS]
    for row in rows:
        assert KEYS <= set(row), row
        assert row["dataset"] == "airline12" and row["holdout"] == 12
        if row["library"] == "statsforecast" and not HAVE_SF:
            assert row["status"].startswith("skipped") and row["mase"] is None
            continue
        for key in ("mae", "rmse", "smape", "mase", "coverage_80", "fit_seconds"):
            assert math.isfinite(row[key]) and row[key] >= 0, (row["model"], key)
        hits = row["coverage_80"] * row["holdout"]  # one series: a count of held-out points
        assert math.isclose(hits, round(hits), abs_tol=1e-9) and 0 <= round(hits) <= 12
    by = {(r["model"], r["library"]): r for r in rows}
    if HAVE_SF:  # the same seasonal-naive forecast from both libraries (seqcast in float32)
        ours, theirs = by[("seasonal_naive", "seqcast")], by[("SeasonalNaive", "statsforecast")]
        assert math.isclose(ours["mae"], theirs["mae"], rel_tol=1e-6)
    # the summary line comes last
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("airline12: best seqcast model seasonal_naive MASE")
    assert "AutoARIMA" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.json"]


def test_real_data_rejects_unknown_model() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr
