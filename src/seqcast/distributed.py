"""Forecasting many series: a saved model applied to a directory of long-format Parquet parts,
one task per part, on Dask (`dask.distributed`) or, without it, in this process.

    n_rows = predict_parts("model/", "series/", "forecasts/")                # LocalCluster
    n_rows = predict_parts("model/", "series/", "forecasts/", scheduler="tcp://host:8786")
    n_rows = predict_parts("model/", "series/", "forecasts/", engine="local")  # no Dask

Each task reads one input part (a Parquet file; every series whole in one part), forecasts
all of its series with one batched forward pass (`Forecaster.predict`: each series
normalised by its own history, so series never seen in training are forecast too) and
writes one output part, `part-00000.parquet`, ... in the input parts' sorted order, holding
unique_id, ds, y_hat (+ interval columns). Nothing but paths and row counts passes through
the scheduler: workers read and write the files themselves, so they must see the same paths.

The model is loaded once per worker process (a cache in this module keyed by the model
directory and its files' modification times), not once per part or series. Every task runs
PyTorch on one intra-op thread, whatever the engine, so the engines give bit-identical
forecasts and a LocalCluster of one single-threaded worker per core does not oversubscribe.

Dask is an optional extra (`pip install seqcast[distributed]`); engine="auto" uses it when
it is installed and runs the same tasks one after another in this process when it is not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from seqcast import training
from seqcast.data.stream import ParquetSource
from seqcast.errors import SeqcastError, check_choice

log = logging.getLogger(__name__)

ENGINES = ("auto", "dask", "local")
PART_NAME = "part-{:05d}.parquet"

_models: dict[tuple[str, float], Any] = {}  # this process' loaded models
_lock = threading.Lock()
loads = 0  # models this process has loaded (a worker's count shows the model loaded once)


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def predict_parts(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    horizon: int | None = None,
    intervals: Sequence[int] | str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    engine: str = "auto",
    id_col: str = "unique_id",
    time_col: str = "ds",
    target: str = "y",
) -> int:
    """Forecast every series of the Parquet parts in `data` (a directory, or one file) with
    the model saved in `model_dir`, writing one Parquet part per input part into `out_dir`;
    returns the number of rows written (series x horizon).

    `scheduler`: a Dask scheduler's address (a running cluster); without it a LocalCluster
    of `workers` processes (default: one per core), one thread each. `engine`: "dask",
    "local" (in this process, part after part) or "auto" (Dask when installed)."""
    check_choice("engine", engine, ENGINES)
    model = _load_model(str(model_dir))  # fails here, once, for a bad model directory
    source = ParquetSource(data, id_col, time_col, target, model._covariates)
    out = _empty_dir(Path(out_dir))
    options = {
        "horizon": horizon,
        "intervals": intervals,
        "load_options": {"id_col": id_col, "time_col": time_col, "target": target},
        "columns": source.columns,
    }
    tasks = [
        (str(fragment.path), str(out / PART_NAME.format(i)))
        for i, fragment in enumerate(source.fragments)
    ]
    use_dask = engine == "dask" or (
        engine == "auto" and (scheduler is not None or dask_available())
    )
    if scheduler is not None and not use_dask:
        raise SeqcastError("a scheduler address needs engine='dask' (or 'auto')")
    if not use_dask:
        counts = [predict_part(str(model_dir), src, dst, **options) for src, dst in tasks]
    else:
        with _client(scheduler, workers) as client:
            futures = client.map(
                predict_part, [str(model_dir)] * len(tasks), *zip(*tasks, strict=True),
                **options, pure=False,
            )  # fmt: skip
            counts = client.gather(futures)
    total = int(sum(counts))
    log.info("wrote %d forecast rows in %d parts to %s", total, len(tasks), out)
    return total


def predict_part(
    model_dir: str,
    part: str,
    out_path: str,
    horizon: int | None,
    intervals: Sequence[int] | str | None,
    load_options: dict[str, str],
    columns: list[str],
) -> int:
    """One task: forecast the series of Parquet file `part`, write them to `out_path`
    (written beside it, then renamed), return the number of rows."""
    import pyarrow.parquet as pq

    model = _load_model(model_dir)
    table = pq.read_table(part, columns=columns).to_pandas()
    with training.intra_op_threads(1):  # one thread per single-threaded Dask worker
        forecast = model.predict(table, horizon=horizon, intervals=intervals, **load_options)
    tmp = f"{out_path}.tmp"
    forecast.to_parquet(tmp, index=False)
    os.replace(tmp, out_path)
    return len(forecast)


def _load_model(model_dir: str):
    """The Forecaster saved in `model_dir`, loaded once per process and directory version."""
    from seqcast.forecast import Forecaster

    global loads
    path = Path(model_dir)
    if not path.is_dir():
        raise SeqcastError(f"{model_dir} is not a model directory; give what `seqcast fit` saved")
    stamp = max((f.stat().st_mtime for f in path.iterdir()), default=0.0)
    key = (str(path.resolve()), stamp)
    with _lock:
        if key not in _models:
            model = Forecaster.load(path)
            if model.auto_ is not None:
                raise SeqcastError(
                    "model='auto' is not run on Parquet parts yet; use a network model"
                )
            _models.clear()  # one model a process: a newer version replaces the old
            _models[key] = model
            loads += 1
        return _models[key]


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A Dask client on the cluster at `scheduler`, or on a LocalCluster of `workers`
    single-threaded processes started (and closed) here."""
    if not dask_available():
        raise SeqcastError(
            "engine='dask' needs Dask: `pip install seqcast[distributed]`, or use engine='local'"
        )
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise SeqcastError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}); check the address "
                "and that `dask scheduler` is running"
            ) from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SeqcastError(f"`workers` must be a positive integer, got {workers!r}")
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _empty_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise SeqcastError(f"{path} is a file; --out needs a directory for the Parquet parts")
    if path.is_dir() and any(path.iterdir()):
        raise SeqcastError(f"{path} is not empty; give a new or empty directory for the forecasts")
    path.mkdir(parents=True, exist_ok=True)
    return path
