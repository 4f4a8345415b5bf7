"""Hostile and damaged model directories: each is refused with one SeqcastError line naming
the problem and the fix, before any tensor is read; loading executes nothing and allocates
no more than the files hold. Plus concurrent writers to one directory."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from seqcast import Forecaster
from seqcast.errors import SeqcastError

FIXES = (
    "save the model again",
    "fit and save",
    "upgrade seqcast",
    "copy the file",
    "imported",
    "give the folder",
)


def series(n_series: int = 3, length: int = 40) -> pd.DataFrame:
    t = np.arange(length)
    y = [10 * (k + 1) + np.sin(t / 3 + k) for k in range(n_series)]
    ids = np.repeat([f"s{k}" for k in range(n_series)], length)
    return pd.DataFrame({"unique_id": ids, "ds": np.tile(t, n_series), "y": np.ravel(y)})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("io") / "model"
    fc = Forecaster("gru", window=12, horizon=4, units=4, epochs=1, seed=0).fit(series())
    fc.save(path)
    return path


# -- ways to damage a model directory ---------------------------------------------------------
def tensors(path: Path, change) -> None:
    state = load_file(str(path / "model.safetensors"))
    change(state)
    save_file(state, str(path / "model.safetensors"))


def config(path: Path, change) -> None:
    body = json.loads((path / "config.json").read_text())
    change(body)
    (path / "config.json").write_text(json.dumps(body))


def raw_weights(path: Path, header: bytes, data: bytes = b"") -> None:
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)


def first_layer(body: dict) -> dict:
    return body["architecture"]["layers"][0]


WEIGHT = "model.layers.2.kernel"
CASES = {
    "header claims a huge length": (
        lambda p: (p / "model.safetensors").write_bytes(
            struct.pack("<Q", 2**60) + (p / "model.safetensors").read_bytes()[8:]
        ),
        r"claims a 1,152,921,504,606,846,976-byte header but the file has",
    ),
    "truncated weights file": (
        lambda p: (p / "model.safetensors").write_bytes(
            (p / "model.safetensors").read_bytes()[:-10]
        ),
        r"claims bytes \d+\.\.\d+ of a [\d,]+-byte data section \(truncated\?\)",
    ),
    "weights file of 3 bytes": (
        lambda p: (p / "model.safetensors").write_bytes(b"abc"),
        r"too short to be a safetensors file",
    ),
    "header that is not JSON": (
        lambda p: raw_weights(p, b"\xff\xfe not json at all"),
        r"unreadable header",
    ),
    "header entry with an unknown dtype": (
        lambda p: raw_weights(p, b'{"x": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}'),
        r"tensor 'x' has a malformed header entry",
    ),
    "tensors that overlap": (
        lambda p: raw_weights(
            p,
            json.dumps(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                }
            ).encode(),
            bytes(12),
        ),
        r"tensors 'a' and 'b' overlap",
    ),
    "tensor dtype disagrees with config.json": (
        lambda p: tensors(p, lambda s: s.update({WEIGHT: s[WEIGHT].double()})),
        rf"tensor '{WEIGHT}' is F64 \[4, 4\] but config.json implies F32 \[4, 4\]",
    ),
    "tensor shape disagrees with config.json": (
        lambda p: tensors(p, lambda s: s.update({WEIGHT: torch.zeros(4, 5)})),
        rf"tensor '{WEIGHT}' is F32 \[4, 5\] but config.json implies F32 \[4, 4\]",
    ),
    "config claims a far larger layer than the file holds": (
        lambda p: config(p, lambda b: first_layer(b)["config"].update(units=10**6)),
        r"is F32 \[12\] but config.json implies F32 \[3000000\]",
    ),
    "missing tensor": (
        lambda p: tensors(p, lambda s: s.pop(WEIGHT)),
        rf"does not match config.json: it lacks \['{WEIGHT}'\]",
    ),
    "extra tensor": (
        lambda p: tensors(p, lambda s: s.update({"model.evil": torch.zeros(3)})),
        r"does not match config.json: it has extra \['model.evil'\]",
    ),
    "context tensor that disagrees with its description": (
        lambda p: tensors(p, lambda s: s.update({"context.y": torch.zeros(5).double()})),
        r"tensor 'context.y' is F64 \[5\] but config.json implies F64 \[36\]",
    ),
    "unknown layer class": (
        lambda p: config(p, lambda b: first_layer(b).update(class_name="NoSuchLayer")),
        r"unknown layer class 'NoSuchLayer'",
    ),
    "layer class naming a Python built-in": (
        lambda p: config(p, lambda b: first_layer(b).update(class_name="eval")),
        r"unknown layer class 'eval'",
    ),
    "layer class naming a module path": (
        lambda p: config(p, lambda b: first_layer(b).update(class_name="os.system")),
        r"unknown layer class 'os.system'",
    ),
    "architecture that is not an object": (
        lambda p: config(p, lambda b: b.update(architecture=["GRU"])),
        r"architecture is not a JSON object",
    ),
    "unknown weights dtype": (
        lambda p: config(p, lambda b: b.update(dtype="complex128")),
        r"config.json describes a model seqcast cannot build \(KeyError",
    ),
    "future format_version": (
        lambda p: config(p, lambda b: b.update(format_version=99)),
        r"written by a newer seqcast \(format 99, this one reads up to 3\)",
    ),
    "format_version that is not a number": (
        lambda p: config(p, lambda b: b.update(format_version="3")),
        r"has format_version '3', not a positive integer",
    ),
    "not a seqcast config": (
        lambda p: config(p, lambda b: b.update(format="keras")),
        r"is not a seqcast model config \(format 'keras'\)",
    ),
    "config.json that is not JSON": (
        lambda p: (p / "config.json").write_text("{'format': not json"),
        r"config.json is not valid JSON",
    ),
    "config.json that is a list": (
        lambda p: (p / "config.json").write_text("[1, 2]"),
        r"config.json must hold a JSON object",
    ),
    "scaler.json that is binary": (
        lambda p: (p / "scaler.json").write_bytes(b"\x00\xff\xfe"),
        r"scaler.json is not valid JSON",
    ),
    "no weights file": (
        lambda p: (p / "model.safetensors").unlink(),
        r"has no model.safetensors; the model directory is incomplete",
    ),
    "weights file linked from outside": (
        lambda p: link_outside(p, "model.safetensors"),
        r"model.safetensors is a link to .*outside the model directory.*copy the file",
    ),
    "config linked to a system file": (
        lambda p: (p / "config.json").unlink() or (p / "config.json").symlink_to("/etc/hostname"),
        r"config.json is a link to /etc/hostname, outside the model directory",
    ),
}


def link_outside(path: Path, name: str) -> None:
    outside = path.parent / f"{path.name}-outside-{name}"
    shutil.move(path / name, outside)
    (path / name).symlink_to(outside)


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_model_directory_is_refused_with_one_line(saved, tmp_path, case):
    damage, message = CASES[case]
    path = tmp_path / "model"
    shutil.copytree(saved, path)
    damage(path)
    tracemalloc.start()
    try:
        with pytest.raises(SeqcastError, match=message) as err:
            Forecaster.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = str(err.value)
    assert "\n" not in text and any(fix in text for fix in FIXES), text
    assert peak < 2**20 + 4 * sum(f.stat().st_size for f in path.iterdir()), peak


def test_the_table_covers_the_cases_and_the_intact_copy_loads(saved, tmp_path):
    assert len(CASES) >= 20
    shutil.copytree(saved, tmp_path / "model")
    assert len(Forecaster.load(tmp_path / "model").predict()) == 3 * 4


def test_a_link_inside_the_directory_is_accepted(saved, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(saved, path)
    (path / "scaler.json").rename(path / "scaler-real.json")
    (path / "scaler.json").symlink_to("scaler-real.json")
    pd.testing.assert_frame_equal(Forecaster.load(path).predict(), Forecaster.load(saved).predict())


# -- concurrent writers ---------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    from seqcast import Forecaster
    from seqcast.errors import SeqcastError
    out, seed, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    t = np.arange(40)
    frame = pd.DataFrame({"unique_id": "a", "ds": t, "y": np.sin(t / 3) + seed})
    fc = Forecaster("gru", window=8, horizon=2, units=16, epochs=1, seed=seed).fit(frame)
    while time.time() < start:
        pass
    for attempt in range(5):
        try:
            fc.save(out)
            print("saved", attempt)
        except SeqcastError as err:
            print("refused", err)
    fc.save(out + f"-own-{seed}")
    """
)


def test_two_processes_saving_to_one_directory_leave_one_whole_model(tmp_path):
    """Each round starts two writers that save different models to the same directory at
    the same moment, five times each: every save either lands whole or is refused with a
    clear message, and the directory always ends as exactly one of the two models."""
    import time

    outcomes = []
    for round_ in range(3):
        out = str(tmp_path / f"shared{round_}")
        start = time.time() + 6.0  # both processes have imported and fitted by then
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, out, str(seed), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in (1, 2)
        ]
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, stderr
            for line in stdout.splitlines():
                assert line.startswith("saved") or "another process is writing" in line, line
                outcomes.append(line.split()[0])
        state = load_file(str(Path(out) / "model.safetensors"))
        own = [load_file(f"{out}-own-{seed}/model.safetensors") for seed in (1, 2)]
        matches = [all(torch.equal(state[k], o[k]) for k in state) and state.keys() == o.keys()
                   for o in own]  # fmt: skip
        assert sum(matches) == 1, f"round {round_}: the directory mixes the two models"
        Forecaster.load(out).predict()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".shared{round_}")]
        assert leftovers == [], leftovers
    assert "saved" in outcomes
