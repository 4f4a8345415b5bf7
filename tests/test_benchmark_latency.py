"""benchmarks/latency.py runs end to end on a tiny budget and writes the promised JSON.

Only the shape of the results is checked, never a timing: the machine running the tests may be
shared or slow.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"
STRATEGIES = ("recursive", "direct", "seq2seq")
CALLS = ("predict()", "predict(intervals=[80, 95])", "predict(frame)")
TIMINGS = ("import_torch_ms", "import_ms", "load_ms", "first_predict_ms", "median_ms", "p90_ms")


@pytest.mark.benchmark
def test_latency_tiny_run_writes_finite_positive_timings(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    # SEQCAST_NO_COMPILE: the C++ kernels' first build can take tens of seconds; they have
    # their own tests.
    env = {**os.environ, "SEQCAST_NO_COMPILE": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--repeats", "5", "--epochs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.json"]
    data = json.loads(out.read_text())
    assert data["settings"]["model"] == "lstm"
    assert data["settings"]["horizon"] == 12
    assert data["settings"]["repeats"] == 5
    rows = data["rows"]
    assert [(r["strategy"], r["call"]) for r in rows] == [(s, c) for s in STRATEGIES for c in CALLS]
    for row in rows:
        assert row["repeats"] == 5
        for key in (*TIMINGS, "fit_seconds"):
            value = row[key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, row)
        assert row["median_ms"] <= row["p90_ms"]
        assert row["import_torch_ms"] <= row["import_ms"]
    # the table comes last: a header, then one line per row
    table = result.stdout.strip().splitlines()[-1 - len(rows) :]
    assert table[0].startswith("strategy")
    assert all(line.split()[0] in STRATEGIES for line in table[1:])


def test_latency_rejects_unknown_strategy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--strategies", "sideways", "--repeats", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown strategy" in result.stderr
    assert list(tmp_path.iterdir()) == []
