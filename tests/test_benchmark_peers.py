"""benchmarks/peers.py runs end to end on a tiny budget, reports what it could not run, and writes
the promised JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
KEYS = {
    "model",
    "peer",
    "status",
    "reason",
    "sec_per_epoch",
    "timed_epochs",
    "epoch_seconds",
    "val_last_step_mse",
    "ratio_vs_seqcast",
    "threads",
    "epochs",
    "version",
    "note",
}


@pytest.mark.benchmark
def test_peers_tiny_run_writes_honest_results(tmp_path: Path) -> None:
    out = tmp_path / "tmp.json"
    # SEQCAST_NO_COMPILE: the C++ kernels' first build can take tens of seconds; they have
    # their own tests.
    env = {**os.environ, "SEQCAST_NO_COMPILE": "1"}
    cmd = [sys.executable, str(SCRIPT), "--samples", "200", "--epochs", "1"]
    cmd += ["--peers", "seqcast,torch,keras", "--models", "lstm,peephole_lstm", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    by = {(r["model"], r["peer"]): r for r in rows}
    assert list(by) == [
        (m, p) for m in ("lstm", "peephole_lstm") for p in ("seqcast", "torch", "keras")
    ]
    for row in rows:
        assert KEYS <= set(row), KEYS - set(row)
        assert row["threads"] == 1 and row["epochs"] == 1
        assert row["status"] in ("ok", "skipped", "failed")
        if row["status"] != "ok":
            assert row["reason"] and row["sec_per_epoch"] is None
    for key in (("lstm", "seqcast"), ("lstm", "torch"), ("peephole_lstm", "seqcast")):
        row = by[key]
        assert row["status"] == "ok", row
        assert math.isfinite(row["sec_per_epoch"]) and row["sec_per_epoch"] > 0
        assert math.isfinite(row["val_last_step_mse"]) and row["val_last_step_mse"] > 0
        assert row["timed_epochs"] == [1] and len(row["epoch_seconds"]) == 1
        assert row["version"] and row["note"]
    assert by["lstm", "seqcast"]["ratio_vs_seqcast"] == 1.0
    ratio = by["lstm", "torch"]["ratio_vs_seqcast"]
    assert math.isclose(
        ratio, by["lstm", "torch"]["sec_per_epoch"] / by["lstm", "seqcast"]["sec_per_epoch"]
    )
    skipped = by["peephole_lstm", "torch"]
    assert skipped["status"] == "skipped" and "torch.nn has no" in skipped["reason"]
    if importlib.util.find_spec("keras") is None:  # the test environment has no Keras
        for model in ("lstm", "peephole_lstm"):  # Keras' peephole LSTM is a custom cell
            keras = by[model, "keras"]
            assert keras["status"] == "skipped" and "No module named" in keras["reason"]
    # one line per run, then the table last, naming every (model, peer)
    table = result.stdout.strip().splitlines()[-len(rows) :]
    assert [tuple(line.split()[:2]) for line in table] == list(by)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp.json"]


def test_peers_rejects_unknown_peer() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--peers", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown peer" in result.stderr
