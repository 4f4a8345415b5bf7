"""Forecasting Parquet parts with seqcast.distributed: a model trained on a few series
forecasts many others, in-process and on Dask (a LocalCluster, and `seqcast predict
--scheduler` against a separately started `dask scheduler` and two `dask worker` processes)
with the same output, the model loaded once per worker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")

from seqcast import Forecaster, distributed  # noqa: E402
from seqcast.errors import SeqcastError  # noqa: E402

WINDOW, HORIZON, PARTS, PER_PART = 12, 4, 4, 150


def _series(ids: range, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in ids:
        n = int(rng.integers(30, 60))
        t = np.arange(n)
        level, amp = 10 + (s % 13), 1 + (s % 5)
        y = level + amp * np.sin(2 * np.pi * t / 6) + 0.2 * rng.standard_normal(n)
        rows.append(pd.DataFrame({"unique_id": f"u{s:05d}", "ds": t, "y": y}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model fit on 20 series, and 600 other series in 4 Parquet parts."""
    root = tmp_path_factory.mktemp("dist")
    fc = Forecaster("lstm", window=WINDOW, horizon=HORIZON, epochs=3, batch_size=32)
    fc.fit(_series(range(20), seed=0))
    model = fc.save(root / "model")
    data = root / "parts"
    data.mkdir()
    frames = []
    for p in range(PARTS):
        frame = _series(range(1000 + p * PER_PART, 1000 + (p + 1) * PER_PART), seed=p + 1)
        frame.to_parquet(data / f"part-{p}.parquet", index=False)
        frames.append(frame)
    return root, model, data, pd.concat(frames, ignore_index=True)


def _read(out: Path) -> pd.DataFrame:
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == PARTS
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def in_process(setup):
    root, model, data, whole = setup
    rows = distributed.predict_parts(model, data, root / "local", engine="local", intervals=[80])
    return rows, _read(root / "local")


def test_unseen_series_are_forecast_part_by_part(setup, in_process):
    _, model, _, whole = setup
    rows, got = in_process
    assert rows == len(got) == PARTS * PER_PART * HORIZON
    # the reference: the whole frame through Forecaster.predict in one call
    want = Forecaster.load(model).predict(whole, intervals=[80])
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-5, atol=1e-5)


def test_a_local_cluster_gives_the_in_process_output(setup, in_process):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    root, model, data, _ = setup
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        rows = distributed.predict_parts(
            model, data, root / "cluster", scheduler=cluster.scheduler_address, intervals=[80]
        )
        loads = client.run(lambda: distributed.loads)  # per worker: loaded once at most
    assert rows == in_process[0]
    pd.testing.assert_frame_equal(_read(root / "cluster"), in_process[1], check_exact=True)
    assert sorted(loads.values()) in ([1, 1], [0, 1])


def test_refusals(setup, tmp_path):
    root, model, data, _ = setup
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SeqcastError, match="is not empty"):
        distributed.predict_parts(model, data, tmp_path, engine="local")
    with pytest.raises(SeqcastError, match="not a model directory"):
        distributed.predict_parts(tmp_path / "nope", data, tmp_path / "o", engine="local")
    with pytest.raises(SeqcastError, match="engine"):
        distributed.predict_parts(model, data, tmp_path / "o", engine="spark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} did not come up within {seconds} s")


def test_seqcast_predict_on_a_separate_dask_cluster(setup, in_process):
    """The acceptance test: `dask scheduler` and two `dask worker` processes started here,
    `seqcast predict MODEL DATA --out OUT --scheduler ADDR` gives the in-process output."""
    pytest.importorskip("distributed")
    dask_cli = shutil.which("dask")
    if dask_cli is None:
        pytest.skip("the `dask` command is not installed (pip install seqcast[distributed])")
    from distributed import Client

    root, model, data, _ = setup
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [
                dask_cli,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            start_new_session=True,
            **common,
        )  # fmt: skip
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        dask_cli,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                    ],
                    start_new_session=True,
                    **common,
                )  # fmt: skip
            )

        def two_workers() -> bool:
            try:
                with Client(address, timeout="2s") as client:
                    return len(client.scheduler_info()["workers"]) == 2
            except (OSError, TimeoutError):
                return False

        _wait_for(two_workers, 120, "the dask scheduler and two workers")
        out = root / "cli"
        command = [sys.executable, "-m", "seqcast.cli", "predict", str(model), str(data),
                   "--out", str(out), "--scheduler", address, "--intervals", "80"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"wrote {in_process[0]} rows" in done.stdout
        pd.testing.assert_frame_equal(_read(out), in_process[1], check_exact=True)
        with Client(address, timeout="10s") as client:
            loads = client.run(lambda: distributed.loads)
        assert sorted(loads.values()) in ([1, 1], [0, 1])  # once per worker, not per part
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_the_cli_refuses_scheduler_for_a_file(setup, tmp_path):
    root, model, _, whole = setup
    whole.head(200).to_csv(tmp_path / "a.csv", index=False)
    command = [sys.executable, "-m", "seqcast.cli", "predict", str(model), str(tmp_path / "a.csv"),
               "--scheduler", "tcp://127.0.0.1:1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--scheduler and --workers apply to a DATA directory" in done.stdout + done.stderr
