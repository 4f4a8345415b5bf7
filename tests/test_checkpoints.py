"""Training checkpoints: atomic writes, resume on the same trajectory (bit for bit on the CPU,
through the API and through `seqcast fit` killed with SIGKILL), and the refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from seqcast.errors import CheckpointError, SeqcastError
from seqcast.layers import LSTM, Dense, Dropout, Flatten
from seqcast.sequential import Sequential
from seqcast.training import TrainSettings, fit_arrays
from seqcast.training.checkpoints import (
    CHECKPOINT_FILE,
    load_checkpoint,
    save_checkpoint,
    write_atomic,
)

AIRLINE = (
    Path(__file__).resolve().parents[1] / "src" / "seqcast" / "data" / "airline_passengers.csv"
)


def data(n=200, steps=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 1)).astype(np.float32)
    return x, x[:, -3:, 0].sum(axis=1, keepdims=True)


def lstm(units=8):
    torch.manual_seed(1)
    return Sequential([LSTM(units), Dropout(0.2), Dense(1)], input_shape=(10, 1))


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


class Interrupted(Exception):
    pass


def stop_after(epoch: int):
    def hook(e, values):
        if e == epoch:
            raise Interrupted  # after this epoch's report, before its checkpoint

    return hook


# -- atomic files ------------------------------------------------------------------------------


def test_write_atomic_replaces_whole_or_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    write_atomic(path, b"old")
    seen = []

    def failing_replace(src, dst):
        seen.append(Path(src))
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_atomic(path, b"new" * 1000)
    assert path.read_bytes() == b"old"
    assert seen[0].parent == tmp_path  # the temporary file sits beside the target (one rename)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # and is removed
    monkeypatch.undo()
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


def test_checkpoint_round_trip_keeps_every_kind_of_value(tmp_path):
    state = {
        "weights": {
            "a": torch.arange(6.0).reshape(2, 3),
            "b": torch.tensor(2.5, dtype=torch.float64),
        },
        "int_keys": {0: {"step": torch.tensor(3.0)}, 7: {"x": None}},
        "python_rng": (3, tuple(range(5)), None),
        "numpy": np.array([1, 2**32 - 1], dtype=np.uint32),
        "numbers": [0.1, float("inf"), 3, True, "text"],
    }
    save_checkpoint(tmp_path, state)
    back = load_checkpoint(tmp_path)
    assert torch.equal(back["weights"]["a"], state["weights"]["a"])
    assert back["weights"]["b"].dtype == torch.float64
    assert torch.equal(back["int_keys"][0]["step"], torch.tensor(3.0))
    assert back["int_keys"][7] == {"x": None}
    assert back["python_rng"] == state["python_rng"]
    assert back["numpy"].dtype == np.uint32 and back["numpy"].tolist() == [1, 2**32 - 1]
    assert back["numbers"] == state["numbers"]
    # a plain safetensors file: tensors plus one JSON document, nothing to unpickle
    tensors = safetensors.torch.load_file(str(tmp_path / CHECKPOINT_FILE))
    assert len(tensors) == 3
    with safetensors.safe_open(str(tmp_path / CHECKPOINT_FILE), framework="pt") as f:
        json.loads(f.metadata()["seqcast_checkpoint"])


# -- resume on the same trajectory (API) -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},  # a checkpoint every epoch
        {"checkpoint_every": 3},  # every 3 steps: the run stops inside an epoch's steps
        {"schedule": "onecycle", "lr": 1e-2, "checkpoint_every": 5},
        {"schedule": "plateau", "lr_patience": 1, "early_stopping": 2},
        {"trainer": "lightning", "schedule": "onecycle", "lr": 1e-2, "early_stopping": 5},
    ],
    ids=["epoch", "steps", "onecycle-steps", "plateau-early-stop", "lightning"],
)
def test_a_resumed_run_ends_bit_identical_to_one_never_stopped(tmp_path, options):
    x, y = data()
    val = (x[:40], y[:40])
    settings = TrainSettings.from_kwargs(epochs=6, batch_size=32, seed=5, progress=False,
                                         **options)  # fmt: skip
    reference = lstm()
    expected = fit_arrays(reference, x, y, settings, validation_data=val)

    settings = settings.replace(checkpoint_dir=str(tmp_path))
    with pytest.raises(Interrupted):
        fit_arrays(lstm(), x, y, settings, validation_data=val, on_epoch_end=stop_after(3))
    done = load_checkpoint(tmp_path)["counters"]
    assert 0 < done["epoch"] < 6 or done["step"] > 0  # it stopped part way
    resumed = lstm()  # fresh weights: everything comes from the checkpoint
    history = fit_arrays(resumed, x, y, settings.replace(resume=True), validation_data=val)
    assert same_weights(resumed, reference)
    assert history.history["loss"] == expected.history["loss"]
    assert history.history["val_loss"] == expected.history["val_loss"]


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=3, seed=0, progress=False,
                                         checkpoint_dir=str(tmp_path))  # fmt: skip
    first = lstm()
    fit_arrays(first, x, y, settings)
    again = lstm()
    history = fit_arrays(again, x, y, settings.replace(resume=True))
    assert same_weights(first, again) and history.epochs == 3


def test_a_temporary_file_left_by_a_killed_writer_is_removed_when_the_run_restarts(tmp_path):
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=2, seed=0, progress=False,
                                         checkpoint_dir=str(tmp_path))  # fmt: skip
    fit_arrays(lstm(), x, y, settings)
    torn = tmp_path / f".{CHECKPOINT_FILE}.x1y2z3.tmp"
    torn.write_bytes(b"half a checkpoint")
    fit_arrays(lstm(), x, y, settings.replace(resume=True))
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]


# -- refusals ----------------------------------------------------------------------------------


def test_resume_without_a_checkpoint_says_so(tmp_path):
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=1, progress=False, resume=True,
                                         checkpoint_dir=str(tmp_path / "none"))  # fmt: skip
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume from: .* does not exist"):
        fit_arrays(lstm(), x, y, settings)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"model": lambda: lstm(units=4)}, r"model: Sequential"),
        ({"settings": {"batch_size": 16}}, r"batch_size: 32 there, 16 here"),
        ({"settings": {"seed": 9}}, r"seed: 0 there, 9 here"),
        ({"data": lambda x, y: (x * 2, y)}, r"data: "),
    ],
    ids=["model", "batch_size", "seed", "data"],
)
def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(tmp_path, change, named):
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=1, seed=0, progress=False,
                                         checkpoint_dir=str(tmp_path))  # fmt: skip
    fit_arrays(lstm(), x, y, settings)
    model = change.get("model", lstm)()
    x2, y2 = change.get("data", lambda a, b: (a, b))(x, y)
    other = settings.replace(resume=True, **change.get("settings", {}))
    with pytest.raises(CheckpointError, match=f"written by a different run .*{named}"):
        fit_arrays(model, x2, y2, other)


def test_an_unreadable_checkpoint_is_refused(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"\x00garbage" * 10)
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=1, progress=False, resume=True,
                                         checkpoint_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(CheckpointError, match="not a readable seqcast checkpoint"):
        fit_arrays(lstm(), x, y, settings)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resume": True}, "give `checkpoint_dir` too"),
        ({"checkpoint_dir": "d", "checkpoint_every": 0}, "`checkpoint_every` must be a positive"),
        ({"divergence_factor": 0.5}, "`divergence_factor` must be a number above 1"),
    ],
)
def test_checkpoint_settings_are_checked(kwargs, message):
    with pytest.raises(SeqcastError, match=message):
        TrainSettings.from_kwargs(**kwargs)


def test_checkpoint_every_is_the_lean_engines(tmp_path):
    x, y = data(n=40)
    model = Sequential([Flatten(), Dense(1)], input_shape=(10, 1))
    settings = TrainSettings.from_kwargs(
        epochs=1, progress=False, trainer="lightning", checkpoint_dir=str(tmp_path),
        checkpoint_every=2,
    )  # fmt: skip
    with pytest.raises(SeqcastError, match="`checkpoint_every` .* lean engine"):
        fit_arrays(model, x, y, settings)


# -- the acceptance run: seqcast fit killed with SIGKILL, resumed -----------------------------


def _fit_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "seqcast.cli", "fit", str(AIRLINE), "--model", "lstm",
        "--window", "12", "--horizon", "12", "--epochs", "150", "--seed", "7", "--quiet",
        "--out", str(out), *extra,
    ]  # fmt: skip


def _model_tensors(directory: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(directory / "model.safetensors"))


def test_seqcast_fit_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    checkpoints = tmp_path / "checkpoints"
    checkpoint = checkpoints / CHECKPOINT_FILE
    # a checkpoint after every step, and the kill as soon as the first is there: the whole
    # 150-epoch run takes about a second on a quiet machine, so waiting longer can miss it
    every_step = ("--checkpoint-dir", str(checkpoints), "--checkpoint-every", "1")
    started = time.monotonic()
    proc = subprocess.Popen(
        _fit_command(tmp_path / "killed", *every_step),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        while not checkpoint.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() - started < 300, "no checkpoint after 300 s"
            time.sleep(0.05)
        first_checkpoint_s = time.monotonic() - started
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counters = load_checkpoint(checkpoints)["counters"]
    killed_at = counters["epoch"]
    assert killed_at < 150  # killed part way, after at least one checkpoint
    assert not (tmp_path / "killed").exists()
    # killed mid-write, a temporary file may be left beside the (whole) checkpoint
    assert {p.name for p in checkpoints.iterdir()} - {CHECKPOINT_FILE} <= {
        p.name for p in checkpoints.glob(f".{CHECKPOINT_FILE}.*.tmp")
    }

    resumed = subprocess.run(
        _fit_command(tmp_path / "resumed", *every_step, "--resume"),
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in checkpoints.iterdir()] == [CHECKPOINT_FILE]  # the leftover is gone
    whole = subprocess.run(_fit_command(tmp_path / "whole"), capture_output=True, text=True,
                           env=env, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr

    a, b = _model_tensors(tmp_path / "resumed"), _model_tensors(tmp_path / "whole")
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    print(f"first checkpoint after {first_checkpoint_s:.1f} s; killed at {counters} of 150 "
          f"epochs; {len(a)} tensors bit-identical after resume")  # fmt: skip


def test_seqcast_fit_resume_without_checkpoint_dir_is_a_usage_error(tmp_path):
    result = subprocess.run(_fit_command(tmp_path / "m", "--resume"), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: --resume and --checkpoint-every need --checkpoint-dir DIR"
    )
