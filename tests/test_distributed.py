"""Training on several processes for real: Lightning DDP over gloo on the CPU, started from a
script (Lightning runs the script again for the second process) and by torchrun as two
"nodes" on localhost."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqcast import training
from seqcast.errors import SeqcastError
from seqcast.training import TrainSettings

SERIES, POINTS, WINDOW = 8, 60, 10
#: training windows start at 0..39 of each series, validation windows at 40..49
TRAIN_STARTS, VAL_STARTS = range(0, 40), range(40, 50)
BATCH = 20  # per process; the one-process reference takes 2 * BATCH

# Each process of the run executes this whole script (Lightning starts the second one with
# the same command line). `ddp` trains on 2 processes by series; `one` trains one process on
# the same per-step batches: step i sees rank 0's batch i followed by rank 1's batch i.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np, torch
    import lightning.pytorch as pl
    from seqcast import training
    from seqcast.layers import LSTM, Dense
    from seqcast.sequential import Sequential

    out, mode = sys.argv[1], sys.argv[2]
    SERIES, POINTS, WINDOW, BATCH = {SERIES}, {POINTS}, {WINDOW}, {BATCH}
    rng = np.random.default_rng(0)
    t = np.arange(POINTS)
    series = [np.sin(2 * np.pi * t / 12 + k) + 0.1 * rng.normal(size=POINTS)
              for k in range(SERIES)]

    def windows(starts):
        x = [s[i : i + WINDOW] for s in series for i in starts]
        y = [s[i + WINDOW] for s in series for i in starts]
        ids = [k for k in range(SERIES) for _ in starts]
        return (np.array(x, np.float32)[:, :, None], np.array(y, np.float32)[:, None],
                np.array(ids))

    x, y, ids = windows(range({TRAIN_START}, {TRAIN_STOP}))
    val = windows(range({VAL_START}, {VAL_STOP}))[:2]
    torch.manual_seed(0)
    model = Sequential([LSTM(8), Dense(1)], input_shape=(WINDOW, 1))
    settings = dict(epochs=4, optimizer="sgd", lr=0.1, shuffle=False, seed=0,
                    early_stopping=3, trainer="lightning", accelerator="cpu", progress=False)
    seen, threads = [], []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            threads.append(torch.get_num_threads())

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.extend(batch[0][:, 0, 0].tolist())  # each window's first value

    start = time.perf_counter()
    if mode == "ddp":
        run = training.TrainSettings.from_kwargs(
            **settings, batch_size=BATCH, devices=2, strategy="ddp")
        history = training.fit_arrays(model, x, y, run, val, callbacks=[Record()], groups=ids)
    else:
        # the 2-process run's per-step batches: rank 0 trains series 0, 2, 4, 6 and rank 1
        # series 1, 3, 5, 7 (in order, unshuffled); step i takes BATCH windows of each
        share = [np.flatnonzero(ids % 2 == r) for r in (0, 1)]
        order = np.concatenate([share[r][i : i + BATCH]
                                for i in range(0, len(share[0]), BATCH) for r in (0, 1)])
        run = training.TrainSettings.from_kwargs(**settings, batch_size=2 * BATCH, devices=1)
        history = training.fit_arrays(model, x[order], y[order], run, val,
                                      callbacks=[Record()])
    seconds = time.perf_counter() - start
    rank = training.rank()
    dist = torch.distributed
    backend = dist.get_backend() if dist.is_initialized() else None
    torch.save(model.state_dict(), f"{{out}}/{{mode}}-rank{{rank}}.pt")
    firsts = {{round(float(v), 6): k for k, row in enumerate(x[:, 0, 0]) for v in [row]}}
    record = dict(history=history.history, seconds=seconds, rank=rank, backend=backend,
                  world=dist.get_world_size() if dist.is_initialized() else 1,
                  zero=training.is_global_zero(), threads=threads,
                  series=sorted({{int(ids[firsts[round(v, 6)]]) for v in seen}}))
    with open(f"{{out}}/{{mode}}-rank{{rank}}.json.partial", "w") as f:
        json.dump(record, f)
    os.replace(f"{{out}}/{{mode}}-rank{{rank}}.json.partial", f"{{out}}/{{mode}}-rank{{rank}}.json")
    if dist.is_initialized():
        dist.barrier()  # rank 0 exits after the other process has written its files
    """
).format(
    SERIES=SERIES,
    POINTS=POINTS,
    WINDOW=WINDOW,
    BATCH=BATCH,
    TRAIN_START=TRAIN_STARTS.start,
    TRAIN_STOP=TRAIN_STARTS.stop,
    VAL_START=VAL_STARTS.start,
    VAL_STOP=VAL_STARTS.stop,
)


def _run(command: list[str], cwd: Path, timeout: float, env: dict | None = None):
    """Run `command` in its own process group; on timeout end that group (the processes it
    started included) and fail."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{command[:3]} did not finish in {timeout} s:\n{output[-3000:]}")
    return proc.returncode, output


def _env() -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # the run caps each process' threads itself
    env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU even on a GPU machine
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-process DDP run and the 1-process reference, each once for the module."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "train.py"
    script.write_text(SCRIPT)
    walls = {}
    for mode in ("ddp", "one"):
        start = time.perf_counter()
        code, output = _run([sys.executable, str(script), str(out), mode], out, 120, _env())
        walls[mode] = time.perf_counter() - start
        assert code == 0, output[-3000:]
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    states = {p.stem: torch.load(p) for p in out.glob("*.pt")}
    print(f"wall seconds: 2 processes {walls['ddp']:.1f}, 1 process {walls['one']:.1f}")
    return records, states


def test_two_processes_train_with_gloo_and_end_with_identical_weights(runs):
    records, states = runs
    assert set(records) == {"ddp-rank0", "ddp-rank1", "one-rank0"}
    r0, r1 = records["ddp-rank0"], records["ddp-rank1"]
    assert (r0["world"], r1["world"]) == (2, 2)
    assert (r0["backend"], r1["backend"]) == ("gloo", "gloo")
    assert (r0["zero"], r1["zero"]) == (True, False)
    # every series whole on one process: rank 0 the even ones, rank 1 the odd ones
    assert r0["series"] == [0, 2, 4, 6] and r1["series"] == [1, 3, 5, 7]
    # a small model trains on one thread a process, within cores // processes
    cores = len(os.sched_getaffinity(0))
    assert set(r0["threads"]) == set(r1["threads"]) == {1} and 1 <= max(1, cores // 2)
    a, b = states["ddp-rank0"], states["ddp-rank1"]
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max weight difference between ranks: {diff}")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert r0["history"] == r1["history"]  # synced means: the same record on both
    loss = r0["history"]["loss"]
    assert len(loss) == 4 and loss[-1] < 0.7 * loss[0], loss


def test_two_processes_follow_the_one_process_loss_curve(runs):
    """The same per-step batches: DDP averages two batch-mean gradients, one process takes the
    mean over their union, the same number. Only float32 summation order differs (the
    all-reduce adds two partial gradients; one process adds all samples at once), about 1e-7
    relative a step; rtol 1e-4 leaves room for 32 SGD steps to carry it, yet is far below the
    differences a wrong share or a summed instead of averaged gradient would make (SGD, not
    Adam, so the gradient's scale shows)."""
    records, states = runs
    two, one = records["ddp-rank0"]["history"], records["one-rank0"]["history"]
    print("loss 2 processes:", two["loss"], "val_loss:", two["val_loss"])
    print("loss 1 process:  ", one["loss"], "val_loss:", one["val_loss"])
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4)
    a, b = states["ddp-rank0"], states["one-rank0"]
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max weight difference, 2 processes vs 1: {diff:.2e}")
    assert diff < 1e-5


TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, pandas as pd, torch
    from seqcast import training
    from seqcast.forecast import Forecaster

    out = sys.argv[1]
    frame = pd.read_csv(sys.argv[2], parse_dates=["ds"])
    fc = Forecaster("lstm", window=12, horizon=3, epochs=3, batch_size=16, seed=0,
                    train_options=dict(devices=1, num_nodes=2, accelerator="cpu",
                                       strategy="ddp"))
    start = time.perf_counter()
    fc.fit(frame)
    rank = training.rank()
    torch.save(fc.model_.state_dict(), f"{out}/rank{rank}.pt")
    if training.is_global_zero():
        fc.save(f"{out}/model")
    json.dump(dict(loss=fc.history_.history["loss"], seconds=time.perf_counter() - start,
                   world=torch.distributed.get_world_size()), open(f"{out}/rank{rank}.json", "w"))
    torch.distributed.barrier()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    t = np.arange(POINTS)
    return pd.concat(
        pd.DataFrame({
            "unique_id": f"s{k}",
            "ds": pd.date_range("2020-01-01", periods=POINTS, freq="D"),
            "y": 10 + np.sin(2 * np.pi * t / 7 + k) + 0.1 * rng.normal(size=POINTS),
        })
        for k in range(SERIES)
    )  # fmt: skip


def test_torchrun_two_nodes_on_localhost_complete_a_fit(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed (it comes with torch's distributed package)")
    (tmp_path / "train.py").write_text(TORCHRUN_SCRIPT)
    _frame().to_csv(tmp_path / "data.csv", index=False)
    port = _free_port()
    # two "nodes": two torchrun agents meeting at the c10d rendezvous on localhost
    nodes = [
        subprocess.Popen(
            [
                torchrun,
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"localhost:{port}",
                "--rdzv-id",
                "seqcast-test",
                "train.py",
                str(tmp_path),
                "data.csv",
            ],
            cwd=tmp_path,
            env=_env(),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    start, outputs = time.perf_counter(), []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=max(1, 150 - (time.perf_counter() - start)))[0])
    except subprocess.TimeoutExpired:
        for node in nodes:
            os.killpg(node.pid, signal.SIGKILL)
        pytest.fail("torchrun did not finish in 150 s")
    print(f"torchrun wall seconds: {time.perf_counter() - start:.1f}")
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in records] == [2, 2]
    assert records[0]["loss"] == records[1]["loss"] and len(records[0]["loss"]) == 3
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from seqcast.forecast import Forecaster

    saved = Forecaster.load(tmp_path / "model")  # written once, by rank 0
    assert all(torch.equal(saved.model_.state_dict()[k], a[k]) for k in a)
    assert len(saved.predict()) == SERIES * 3


STREAM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning.pytorch as pl
    import torch
    from seqcast import Forecaster, training
    from seqcast.data.stream import WindowStream

    out, data = sys.argv[1], sys.argv[2]
    reads, steps = [], []
    original = WindowStream._fragment

    def spy(self, i, rng):  # every part a process reads to train on
        reads.append(self.source.fragments[i].path.rsplit("/", 1)[-1])
        return original(self, i, rng)

    WindowStream._fragment = spy

    class Steps(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            steps.append(0)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            steps[-1] += 1

    fc = Forecaster("lstm", window=8, horizon=3, epochs=6, batch_size=8, lr=0.01, seed=0,
                    train_options=dict(devices=2, strategy="ddp", accelerator="cpu"))
    fc.fit(data, windows_per_series=8, callbacks=[Steps()])
    rank = training.rank()
    torch.save(fc.model_.state_dict(), f"{out}/rank{rank}.pt")
    fc.save(f"{out}/model")  # writes on rank 0 only
    json.dump(dict(world=torch.distributed.get_world_size(), reads=reads, steps=steps,
                   loss=fc.history_.history["loss"], windows=fc.windows_seen_),
              open(f"{out}/rank{rank}.json", "w"))
    torch.distributed.barrier()
    """
)


def _parts(path: Path, parts: int = 4, series: int = 6) -> list[int]:
    """`parts` Parquet parts of `series` series, of 20 to 23 points in the even parts and
    40 to 59 in the odd ones; each part's series lengths."""
    rng = np.random.default_rng(1)
    path.mkdir()
    lengths = []
    for p in range(parts):
        n = rng.integers(*((20, 24) if p % 2 == 0 else (40, 60)), series)
        lengths.append(n)
        pd.DataFrame({
            "unique_id": np.repeat([f"s{p}-{k}" for k in range(series)], n),
            "ds": np.concatenate([np.arange(m) for m in n]),
            "y": np.concatenate([
                5.0 * (k % 4) + 2 * np.sin(2 * np.pi * np.arange(m) / 6 + k)
                + 0.1 * rng.standard_normal(m)
                for k, m in enumerate(n)
            ]),
        }).to_parquet(path / f"part-{p}.parquet", index=False)  # fmt: skip
    return lengths


def test_two_processes_stream_their_own_parquet_parts(tmp_path):
    """Forecaster.fit("parts/") on 2 processes (Lightning DDP, gloo): part i streams on rank
    i % 2 only, both ranks run the same number of steps though their parts hold different
    numbers of windows, and they end with the same weights, written once."""
    pytest.importorskip("pyarrow")
    lengths = _parts(tmp_path / "parts")
    (tmp_path / "train.py").write_text(STREAM_SCRIPT)
    start = time.perf_counter()
    code, output = _run([sys.executable, "train.py", str(tmp_path), "parts"], tmp_path, 180, _env())
    print(f"streamed DDP fit, 2 processes, wall seconds: {time.perf_counter() - start:.1f}")
    assert code == 0, output[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2)
    # each rank reads its own parts, once an epoch, never the other's
    assert sorted(r0["reads"]) == sorted(["part-0.parquet", "part-2.parquet"] * 6)
    assert sorted(r1["reads"]) == sorted(["part-1.parquet", "part-3.parquet"] * 6)
    # windows per rank: up to 8 a series, of those ending before the 0.2 validation cut
    windows = [
        sum(int(np.minimum(np.floor(n * 0.8).astype(int) - 8 - 3 + 1, 8).sum())
            for n in lengths[rank::2])
        for rank in (0, 1)
    ]  # fmt: skip
    expected, larger = (-(-w // 8) for w in windows)
    assert expected < larger  # unequal shards: rank 1's would take more steps ...
    assert r0["steps"] == r1["steps"] == [expected] * 6  # ... yet the same steps on both
    # the larger shard stops after those steps, `expected` full batches of 8 an epoch
    assert [r0["windows"], r1["windows"]] == [6 * windows[0], 6 * 8 * expected]
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert r0["loss"] == r1["loss"]  # synced epoch means
    assert r0["loss"][-1] < 0.5 * r0["loss"][0], r0["loss"]
    from seqcast.forecast import Forecaster

    saved = Forecaster.load(tmp_path / "model")
    assert all(torch.equal(saved.model_.state_dict()[k], a[k]) for k in a)


# -- the pieces, in one process -------------------------------------------------------------


def _shares(batches, world):
    """Each process' samples of one pass and its batch count: every process starts the pass
    from the same generator state."""
    out, state = [], batches.generator.get_state()
    for rank in range(world):
        batches.placement = (rank, world)
        batches.generator.set_state(state)
        out.append([torch.cat([xb for xb, _ in batches]).flatten().tolist(), len(batches)])
    return out


def test_series_stay_whole_on_one_process_and_every_process_steps_alike():
    counts = [30, 20, 20, 10, 10, 5, 3]  # windows per series
    ids = np.repeat([f"s{k}" for k in range(len(counts))], counts)
    x = torch.arange(float(len(ids)))[:, None]
    batches = training._Batches(x, x, 4, shuffle=True, seed=3, shard=True, groups=ids)
    shares = _shares(batches, 2)
    owner = {}
    for rank, (share, _) in enumerate(shares):
        for v in share:
            assert owner.setdefault(ids[int(v)], rank) == rank  # never on two processes
    # largest first to the least loaded (ties: the lower rank): s0 (30) -> 0, s1 (20) -> 1,
    # s2 (20) -> 1, s3 (10) -> 0, s4 (10) -> 0, s5 (5) -> 1, s6 (3) -> 1: 50 and 48 windows;
    # a pass takes 48 on each, in 12 batches of 4
    assert owner == {"s0": 0, "s1": 1, "s2": 1, "s3": 0, "s4": 0, "s5": 1, "s6": 1}
    assert [len(s) for s, _ in shares] == [48, 48] and [n for _, n in shares] == [12, 12]
    # a new pass draws which 48 of rank 0's 50
    batches.placement = (0, 2)
    assert sorted(torch.cat([xb for xb, _ in batches]).flatten().tolist()) != sorted(shares[0][0])


def test_one_big_series_falls_back_to_sharding_by_window():
    ids = np.repeat([0, 1], [90, 10])
    x = torch.arange(100.0)[:, None]
    batches = training._Batches(x, x, 8, shuffle=True, seed=0, shard=True, groups=ids)
    shares = _shares(batches, 2)
    assert [len(s) for s, _ in shares] == [50, 50]
    assert not set(shares[0][0]) & set(shares[1][0])


def test_validation_shares_cover_every_sample_in_equal_batch_counts():
    x = torch.arange(67.0)[:, None]
    batches = training._Batches(x, x, 32, shuffle=False, seed=None, shard=True)
    shares = _shares(batches, 2)
    assert sorted(shares[0][0] + shares[1][0]) == x.flatten().tolist()
    assert [n for _, n in shares] == [2, 2]
    counts = []
    for rank in (0, 1):
        batches.placement = (rank, 2)
        counts.append(len(list(batches)))
    assert counts == [2, 2]
    tiny = training._Batches(x[:1], x[:1], 32, shuffle=False, seed=None, shard=True)
    tiny.placement = (1, 2)
    with pytest.raises(SeqcastError, match="cannot give each of 2 processes"):
        list(tiny)


def test_groups_need_one_id_per_sample():
    x = torch.zeros(5, 1)
    with pytest.raises(SeqcastError, match="one series id per sample"):
        training._Batches(x, x, 2, shuffle=True, seed=0, shard=True, groups=[0, 1])


def test_each_process_gets_its_share_of_the_cores_until_the_fit_ends():
    from types import SimpleNamespace

    from seqcast.training.lightning import _placement_callback

    big = torch.nn.Linear(1024, 1024)  # above SMALL_MODEL_PARAMETERS: no one-thread rule
    x = torch.zeros(4, 1)
    batches = training._Batches(x, x, 2, shuffle=True, seed=0, shard=True)
    callback = _placement_callback(big, TrainSettings(), [batches])
    trainer = SimpleNamespace(
        global_rank=1, world_size=4, num_devices=2,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )  # fmt: skip
    before = torch.get_num_threads()
    callback.setup(trainer, None, "fit")
    try:
        cores = len(os.sched_getaffinity(0))
        assert torch.get_num_threads() == min(before, max(1, cores // 2))
        assert batches.placement == (1, 4) and training.rank() == 1
        assert not training.is_global_zero()
    finally:
        callback.teardown(trainer, None, "fit")
        import seqcast.training.lightning as engine

        engine._last_run = None
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "ddp_spawn"}, "pickles the model"),
        ({"accelerator": "quantum"}, "unknown accelerator 'quantum'"),
        ({"devices": 0}, "`devices` must be a positive integer"),
        ({"num_nodes": 0}, "`num_nodes` must be a positive integer"),
    ],
)
def test_bad_distributed_settings_fail_before_any_work(options, message):
    with pytest.raises(SeqcastError, match=message):
        TrainSettings.from_kwargs(**options)


def test_seqcast_fit_on_two_processes_writes_the_model_once(tmp_path):
    # Lightning starts the second process by running this same command line again
    command = [
        shutil.which("seqcast") or sys.executable, "fit", "data.csv", "--model", "lstm",
        "--window", "12", "--horizon", "3", "--epochs", "2", "--out", "model",
        "--devices", "2", "--accelerator", "cpu", "--dist-strategy", "ddp", "--quiet",
    ]  # fmt: skip
    if command[0] == sys.executable:
        command[1:1] = ["-m", "seqcast.cli"]
    _frame().to_csv(tmp_path / "data.csv", index=False)
    start = time.perf_counter()
    code, output = _run(command, tmp_path, 150, _env())
    print(f"seqcast fit --devices 2 wall seconds: {time.perf_counter() - start:.1f}")
    assert code == 0, output[-3000:]
    assert output.count("saved to model") == 1, output  # one report, from the first process
    from seqcast.forecast import Forecaster

    assert len(Forecaster.load(tmp_path / "model").predict()) == SERIES * 3


def test_rank_before_the_first_fit_comes_from_the_launcher(monkeypatch):
    import seqcast.training.lightning as engine

    monkeypatch.setattr(engine, "_last_run", None)
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert training.rank() == 0 and training.is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning started
    assert training.rank() == 1 and not training.is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # the first process of the second machine
    assert not training.is_global_zero()
    monkeypatch.setenv("RANK", "3")  # torchrun's
    assert training.rank() == 3 and not training.is_global_zero()


def _series_frame(series: int = 3, points: int = 40) -> pd.DataFrame:
    """Series k takes the values 1000 k + t: a window's values name its series."""
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{k}" for k in range(series)], points),
            "ds": np.tile(np.arange(points), series),
            "y": (1000.0 * np.arange(series)[:, None] + np.arange(points)).reshape(-1),
        }
    )


def test_forecaster_fit_gives_each_training_window_its_series_id(monkeypatch):
    """Forecaster.fit passes `groups` (one series id per training window) to fit_arrays, so
    under DDP each series trains whole on one process. Unscaled windows carry their series
    in their values (1000 k + t), which is checked against the ids given."""
    from seqcast.forecast import Forecaster

    seen, real = {}, training.fit_arrays

    def spy(model, x, y, *args, groups=None, **kwargs):
        seen["x"], seen["groups"] = np.asarray(x), np.asarray(groups)
        return real(model, x, y, *args, groups=groups, **kwargs)

    monkeypatch.setattr(training, "fit_arrays", spy)
    Forecaster(
        "linear", window=WINDOW, horizon=3, scaler=None, local_level=False, epochs=1,
        progress=False,
    ).fit(_series_frame())  # fmt: skip
    x, groups = seen["x"], seen["groups"]
    assert groups.shape == (len(x),)
    np.testing.assert_array_equal(groups, x[:, 0, 0] // 1000)  # ids 0, 1, 2 in frame order
    assert set(groups.tolist()) == {0, 1, 2}


def test_forecaster_save_writes_nothing_on_a_process_other_than_rank_zero(monkeypatch, tmp_path):
    """Every process of a DDP fit ends with the same model; only rank 0 writes it."""
    from seqcast.forecast import Forecaster

    fc = Forecaster("naive", window=WINDOW, horizon=3).fit(_series_frame())
    monkeypatch.setattr(training, "is_global_zero", lambda: False)
    assert fc.save(tmp_path / "model") == tmp_path / "model"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(training, "is_global_zero", lambda: True)
    fc.save(tmp_path / "model")
    assert (tmp_path / "model" / "config.json").exists()
