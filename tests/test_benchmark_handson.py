"""benchmarks/handson.py runs end to end on a tiny budget and writes the promised JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "handson.py"
MODELS = ["naive", "linear", "deep_rnn", "recursive10", "lstm", "conv_gru", "wavenet"]


@pytest.mark.benchmark
def test_handson_tiny_run_writes_finite_results(tmp_path: Path) -> None:
    out = tmp_path / "handson.json"
    # SEQCAST_NO_COMPILE: the C++ kernels' first build can take tens of seconds; they have
    # their own tests.
    env = {**os.environ, "SEQCAST_NO_COMPILE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--epochs",
            "1",
            "--samples",
            "300",
            "--best",
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
    assert [r["model"] for r in rows] == MODELS
    for row in rows:
        assert {"model", "val_mse", "sec_per_epoch", "epochs", "keras_val_mse"} <= set(row)
        assert math.isfinite(row["val_mse"]) and row["val_mse"] >= 0
        if row["model"] == "naive":
            assert row["sec_per_epoch"] is None and row["epochs"] == 0
            continue
        assert row["epochs"] == 1 and row["sec_per_epoch"] > 0
        assert math.isfinite(row["best_val_mse"]) and row["best_settings"]["lr"] > 0
    # the table comes last and names every model
    table = result.stdout.strip().splitlines()[-len(MODELS) :]
    assert [line.split()[0] for line in table] == MODELS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handson.json"]


def test_handson_rejects_unknown_model() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown model" in result.stderr


def test_keras_reference_script_says_what_is_missing(tmp_path: Path) -> None:
    # benchmarks/handson_keras.py needs the bench extra (TensorFlow); without it, one clear
    # line and exit 2, never a traceback or a made-up figure.
    script = SCRIPT.parent / "handson_keras.py"
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorFlow is installed here; the missing-extra path cannot be shown")
    result = subprocess.run(
        [sys.executable, str(script), "--models", "linear", "--samples", "50", "--epochs", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "bench extra" in result.stderr and "Traceback" not in result.stderr
