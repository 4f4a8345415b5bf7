"""Every script in examples/ runs, tiny, as a user runs it: in a subprocess, from the repository.

Each run happens in an empty working directory, which must stay empty: the scripts write
files only where `--out` tells them. SEQCAST_NO_COMPILE=1 keeps the runs off the C++ kernels,
whose first use may compile them (tens of seconds); the kernels have their own tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: object, cwd: Path) -> str:
    cwd.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "SEQCAST_NO_COMPILE": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert list(cwd.iterdir()) == [], f"{name} wrote into the working directory"
    return result.stdout


def numbers_after(label: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(re.escape(label) + r"\s*([-0-9.e+]+)", text)]


def test_hello_shapes(tmp_path):
    out = run_example("hello_shapes.py", cwd=tmp_path / "run")
    assert "x_data: shape (3, 5, 4)" in out
    assert out.count("outputs: shape (3, 5, 2)") == 2
    assert out.count("outputs: shape (3, 2)") == 2
    assert out.count("states: shape (3, 2)") == 2
    assert "final state equals the last output (outputs[:, -1]): True" in out
    assert "final state equals the output: True" in out
    assert "h equals the output: True" in out


def test_toy_sequence_regression(tmp_path):
    out = run_example("toy_sequence_regression.py", "--epochs", 1, cwd=tmp_path / "run")
    for count in ("90,600", "180,300", "362,400", "721,200", "724,800", "2,162,400"):
        assert count in out
    assert out.count("unseen windows: [6 7 8 9] ->") == 4
    assert out.count("training MSE after 1 epochs:") == 4


def test_synthetic_series(tmp_path):
    out = run_example("synthetic_series.py", "--epochs", 1, "--samples", 200, cwd=tmp_path / "run")
    table = out.split("validation MSE per model")[1]
    for model in (
        "naive (1 step)",
        "linear",
        "SimpleRNN(1)",
        "deep RNN + Dense",
        "recursive deep RNN + Dense",
        "seq2vec",
        "seq2seq SimpleRNN",
        "seq2seq LSTM",
        "seq2seq GRU",
        "Conv1D + GRU",
        "WaveNet",
    ):
        assert model in table
    scores = numbers_after("validation MSE", out)
    assert len(scores) == 13
    assert all(0 <= s < 10 for s in scores)


def test_layer_norm_cell(tmp_path):
    out = run_example("layer_norm_cell.py", "--epochs", 1, "--samples", 200, cwd=tmp_path / "run")
    (gap,) = numbers_after("largest output difference hand-written vs built-in:", out)
    assert gap < 1e-9
    assert out.count("Total params: 1,550") == 2
    assert len(numbers_after("last_time_step_mse", out)) == 2


def test_airline_lstm(tmp_path):
    png = tmp_path / "figures" / "airline.png"
    out = run_example(
        "airline_lstm.py",
        "--epochs",
        1,
        "--recommended-epochs",
        2,
        "--out",
        png,
        cwd=tmp_path / "run",
    )
    assert "Total params: 362,701" in out
    assert "train X (105, 12, 1) Y (105, 1), test X (27, 12, 1) Y (27, 1)" in out
    (mse,) = numbers_after("test MSE (scaled data):", out)
    assert 0 <= mse < 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the recommended configuration, fit before 1960 and scored on 1960 beside the note's model
    assert "fit on 1949-01 .. 1959-12 (132 months), forecast 1960-01 .. 1960-12" in out
    assert "the last 27 windows, targets 1958-10 .. 1960-12" in out
    assert "Forecaster(model='deep_rnn', window=24, horizon=12, season=12" in out
    table = out.split("last 12 months (1960)")[1].strip().splitlines()
    assert table[0].split() == ["MAPE", "%", "MAE", "RMSE", "MASE"]
    rows = {line[:34].strip(): [float(v) for v in line[34:].split()] for line in table[1:]}
    assert list(rows) == [
        "note's LSTM(300), 1 month ahead",
        "recommended deep_rnn, 1-12 ahead",
        "seasonal naive (1959 repeated)",
    ]
    assert all(len(v) == 4 and all(x >= 0 for x in v) for v in rows.values())
    # seasonal naive needs no training: its 1960 scores are fixed
    assert rows["seasonal naive (1959 repeated)"] == [9.99, 47.83, 50.71, 1.571]


def test_airline_lstm_recipe_only_and_select(tmp_path):
    out = run_example(
        "airline_lstm.py",
        "--epochs",
        1,
        "--skip-recommended",
        "--out",
        tmp_path / "a.png",
        cwd=tmp_path / "run",
    )
    assert "test MSE (scaled data):" in out
    assert "recommended" not in out
    out = run_example(
        "airline_lstm.py",
        "--select",
        "--select-seeds",
        0,
        "--recommended-epochs",
        1,
        cwd=tmp_path / "select",
    )
    assert "validation on 1949-01 .. 1959-12 only" in out
    table = out.split("validation MASE (mean over seeds), best first")[1]
    for model in ("linear", "simple_rnn", "deep_rnn", "lstm", "gru", "seasonal_naive"):
        assert model in table
    assert "1960" not in table


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_main_and_help(script, tmp_path):
    source = (EXAMPLES / script).read_text()
    assert "def main(argv: list[str] | None = None)" in source
    assert 'if __name__ == "__main__":\n    main()' in source
    assert f"examples/{script}" in (EXAMPLES / "README.md").read_text()
