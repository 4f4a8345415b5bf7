"""Data larger than memory: a long-format Parquet file or directory of parts, read fragment by
fragment, and training windows cut per batch from one fragment's arrays at a time.

    source = ParquetSource("series/")             # a directory of parts, or one file
    for frame in source.frames(): ...             # one validated long frame per fragment
    batches = WindowStream(source, pipeline, steps=12, batch_size=256, seed=0)
    for xb, yb in batches: ...                    # (B, window, F), (B, steps) float tensors

A fragment is one Parquet file. Each is read on its own (`pyarrow.dataset`), turned into a
pandas frame and checked by `seqcast.data.frames.load_frame`, the same validation as any
other input, so memory holds one fragment at a time, never the data set.

**One series, one fragment.** Per-series normalisation needs a series' whole history, so a
series must lie in a single fragment (write parts partitioned by `unique_id`, e.g. by hash or
by ranges of ids). `ParquetSource.layout()` checks it before training with one pass over the
id column (a 64-bit hash of each id kept, 8 bytes a series) and refuses a series found in two
fragments, naming both.

**An epoch** of `WindowStream` visits every fragment of this process' shard once, in an
order drawn from its `generator` (seeded by `seed`; its state at an epoch's start fixes the
whole epoch, as `training`'s `_Batches` does), and draws up to `windows_per_series` training
windows from each series: all of its windows when it has no more, otherwise that many starts
drawn uniformly with replacement. Windows are shuffled within their fragment and batches run
on across fragment boundaries, so every batch but an epoch's last is full. An epoch therefore
costs at most `windows_per_series` windows per series, whatever the series' lengths.

**Normalisation** is the Forecaster's (`WindowPipeline`): each series scaled by the
statistics of its own rows in the training data (`pipeline.scaling(frame)`), each window
shifted by its last target value when `local_level`, targets with it. Training windows are
those whose targets end before each series' `validation_size` cut, as in memory.

**Processes.** Under `torch.distributed` (the Lightning engine's DDP, or `torchrun`) the
fragments are sharded, fragment `i` to rank `i % world`, so each process reads only its own
parts; all ranks run the same number of batches (the smallest shard's count, computed alike
on every rank from `layout()`), so a collective never waits on a rank that has finished.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from seqcast.data import frames
from seqcast.errors import SeqcastError, check_positive_int
from seqcast.training.batches import _rank_and_world

log = logging.getLogger(__name__)

__all__ = ["ParquetSource", "WindowStream", "is_parquet_source", "Layout"]


def is_parquet_source(data: Any) -> bool:
    """Whether `data` should be streamed: a ParquetSource, or a directory holding Parquet
    parts. (A single Parquet file given as a path is read into memory as before; wrap it in
    `ParquetSource` to stream it.)"""
    if isinstance(data, ParquetSource):
        return True
    if not isinstance(data, str | os.PathLike):
        return False
    path = Path(data)
    return path.is_dir() and any(_parquet_files(path))


def _parquet_files(path: Path) -> Iterator[Path]:
    return (p for p in path.rglob("*") if p.is_file() and p.suffix in (".parquet", ".pq"))


def _pyarrow_dataset():
    try:
        import pyarrow.dataset as ds
    except ImportError:
        raise SeqcastError(
            "reading Parquet needs pyarrow; install it with `pip install pyarrow` "
            "(or `pip install seqcast[parquet]`)"
        ) from None
    return ds


@dataclass(frozen=True)
class Layout:
    """What one pass over the id column found: per fragment, its series' lengths."""

    lengths: list[np.ndarray]  # fragment -> (series,) row counts

    @property
    def n_series(self) -> int:
        return sum(len(n) for n in self.lengths)


class ParquetSource:
    """A long-format Parquet file or directory of parts (`unique_id`, `ds`, `y`, covariates
    by default; other names through `id_col`, `time_col`, `target`, as `load_frame` takes
    them), read one fragment (file) at a time."""

    def __init__(
        self,
        path: str | os.PathLike,
        id_col: str = "unique_id",
        time_col: str = "ds",
        target: str = "y",
        covariates: Sequence[str] | None = None,
    ) -> None:
        path = Path(path)
        if not path.exists():
            raise SeqcastError(f"{path} does not exist; give a Parquet file or directory")
        if path.is_dir() and not any(_parquet_files(path)):
            raise SeqcastError(f"{path} holds no .parquet files; give a directory of parts")
        ds = _pyarrow_dataset()
        try:
            self.dataset = ds.dataset(str(path), format="parquet")
        except Exception as err:  # pyarrow's own errors: ArrowInvalid, OSError...
            raise SeqcastError(
                f"{path} is not readable as Parquet ({err}); check the files"
            ) from None
        self.path, self.id_col, self.time_col, self.target = path, id_col, time_col, target
        self.covariates = list(covariates or [])
        names = self.dataset.schema.names
        wanted = [id_col, time_col, target, *self.covariates]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise SeqcastError(
                f"{path} lacks column(s) {missing} (it has {names}); name the columns with "
                "id_col= / time_col= / target= / covariates="
            )
        self.columns = wanted
        self.fragments = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
        self._layout: Layout | None = None

    def __len__(self) -> int:
        return len(self.fragments)

    def __repr__(self) -> str:
        return f"ParquetSource({str(self.path)!r}, fragments={len(self)})"

    def read(self, i: int) -> pd.DataFrame:
        """Fragment `i` as a validated long frame (`load_frame`'s checks and order)."""
        table = self.fragments[i].to_table(columns=self.columns).to_pandas()
        try:
            return frames.load_frame(
                table, self.time_col, self.target, self.id_col, self.covariates or None
            )
        except SeqcastError as err:
            raise SeqcastError(f"{self.fragments[i].path}: {err}") from None

    def frames(self, indices: Sequence[int] | None = None) -> Iterator[pd.DataFrame]:
        """The validated frame of each fragment in `indices` (default: all), one at a time."""
        for i in range(len(self)) if indices is None else indices:
            yield self.read(i)

    def layout(self) -> Layout:
        """Each fragment's series lengths, from the id column alone; refuses a series that
        spans two fragments (found by a 64-bit hash of its id, so memory grows by 8 bytes a
        series, not by the data). Computed once."""
        if self._layout is not None:
            return self._layout
        seen_hash = np.zeros(0, dtype=np.uint64)
        seen_frag = np.zeros(0, dtype=np.int64)
        lengths = []
        for i, fragment in enumerate(self.fragments):
            counts = fragment.to_table(columns=[self.id_col]).column(0).value_counts()
            ids = counts.field("values").to_pandas().astype(str).to_numpy(object)
            hashes = pd.util.hash_array(ids)
            where = np.minimum(np.searchsorted(seen_hash, hashes), max(len(seen_hash) - 1, 0))
            hit = seen_hash[where] == hashes if len(seen_hash) else np.zeros(len(ids), bool)
            if hit.any():
                k = int(np.flatnonzero(hit)[0])
                other = self.fragments[int(seen_frag[where[k]])].path
                raise SeqcastError(
                    f"series {ids[k]!r} is in two Parquet parts ({other} and {fragment.path}); "
                    "streaming needs each series whole in one part: rewrite the parts "
                    "partitioned by the id column"
                )
            order = np.argsort(np.concatenate([seen_hash, hashes]), kind="stable")
            seen_hash = np.concatenate([seen_hash, hashes])[order]
            seen_frag = np.concatenate([seen_frag, np.full(len(hashes), i)])[order]
            lengths.append(counts.field("counts").to_numpy().astype(np.int64))
        self._layout = Layout(lengths)
        return self._layout


class WindowStream(torch.utils.data.IterableDataset):
    """Training batches (x, y) cut from one fragment's arrays at a time: x (B, window, F)
    scaled and level-shifted as `pipeline` does, y (B, steps) the target's next `steps`
    values in the same units. The batch source of `training.fit_arrays(model, stream, None,
    ...)`: iterable, with `len()` (batches per epoch) and `to(device)`."""

    def __init__(
        self,
        source: ParquetSource,
        pipeline: Any,
        steps: int,
        batch_size: int,
        windows_per_series: int = 32,
        validation_size: float = 0.0,
        seed: int | None = 0,
        shuffle: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.source, self.pipeline = source, pipeline
        self.steps = check_positive_int("steps", steps)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.per_series = check_positive_int("windows_per_series", windows_per_series)
        self.validation_size, self.shuffle, self.dtype = float(validation_size), shuffle, dtype
        self.seeded = seed is not None
        self.generator = torch.Generator()  # its state at an epoch's start fixes that epoch
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.device = torch.device("cpu")
        self.windows_seen = 0
        # (rank, world) of the run, set by the Lightning engine once its processes are up
        # (as on `training`'s `_Batches`); None: ask torch.distributed
        self.placement: tuple[int, int] | None = None
        self._check_history()

    def to(self, device: torch.device | str) -> WindowStream:
        self.device = torch.device(device)
        return self

    # -- sizes ------------------------------------------------------------------------------
    def _train_windows(self, lengths: np.ndarray) -> np.ndarray:
        """Training windows per series: starts whose targets end before the series' cut."""
        cut = np.floor(lengths * (1 - self.validation_size)).astype(np.int64)
        return np.maximum(cut - self.pipeline.window - self.steps + 1, 0)

    def _check_history(self) -> None:
        need = self.pipeline.window + self.steps
        for i, lengths in enumerate(self.source.layout().lengths):
            if (lengths < need).any():
                raise SeqcastError(
                    f"{self.source.fragments[i].path} has a series of {int(lengths.min())} "
                    f"points; every series needs at least window + horizon = {need}: drop the "
                    "short series or use a smaller window"
                )
        if not any(self._train_windows(n).any() for n in self.source.layout().lengths):
            raise SeqcastError(
                f"no training window fits before the validation part (validation_size="
                f"{self.validation_size}); use a smaller window or validation_size, or more data"
            )

    def _shard(self) -> tuple[list[int], int]:
        """(this rank's fragments, the batches every rank runs per epoch)."""
        rank, world = self._rank_and_world()
        per_fragment = [
            int(np.minimum(self._train_windows(n), self.per_series).sum())
            for n in self.source.layout().lengths
        ]
        batches = [math.ceil(sum(per_fragment[r::world]) / self.batch_size) for r in range(world)]
        if world > 1 and len(self.source) < world:
            raise SeqcastError(
                f"{len(self.source)} Parquet part(s) for {world} processes; each process "
                "streams whole parts, so write at least one part per process"
            )
        return list(range(rank, len(self.source), world)), min(batches)

    def _rank_and_world(self) -> tuple[int, int]:
        return self.placement if self.placement is not None else _rank_and_world()

    def __len__(self) -> int:
        return self._shard()[1]

    # -- one epoch --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self._epoch():
            self.windows_seen += len(x)  # windows trained on, not those a cut-off part drew
            yield x.to(self.device), y.to(self.device)

    def _epoch(self) -> Iterator[tuple[Tensor, Tensor]]:
        mine, n_batches = self._shard()
        if self._rank_and_world()[1] > 1 and not self.seeded:
            raise SeqcastError(
                "training on several processes needs a `seed`, so that every process draws "
                "the same epochs"
            )
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator)))
        if self.shuffle:
            mine = [mine[k] for k in rng.permutation(len(mine))]
        size, done = self.batch_size, 0
        carried: tuple[Tensor, Tensor] | None = None  # a fragment's last, partial batch
        for i in mine:
            if done == n_batches:
                return
            values, at = self._fragment(i, rng)
            _release_memory()  # the last fragment's frame, so resident memory stays flat
            pos = 0
            if carried is not None:  # top up the partial batch from this fragment
                pos = min(size - len(carried[0]), len(at))
                x, y = self._cut(values, at[:pos])
                carried = (torch.cat([carried[0], x]), torch.cat([carried[1], y]))
                if len(carried[0]) < size:
                    continue
                yield carried
                carried, done = None, done + 1
            for start in range(pos, len(at), size):
                if done == n_batches:
                    return
                x, y = self._cut(values, at[start : start + size])
                if len(x) < size:
                    carried = (x, y)
                    break
                yield x, y
                done += 1
        if carried is not None and done < n_batches:
            yield carried

    def _fragment(self, i: int, rng: np.random.Generator) -> tuple[Tensor, np.ndarray]:
        """(fragment `i`'s scaled values, the first rows of up to `windows_per_series`
        windows of each of its series, shuffled)."""
        frame = self.source.read(i)
        frames.check_no_missing(frame, what="training")
        values, lengths = scaled_values(frame, self.pipeline)
        starts, offsets = _draw_starts(lengths, self._train_windows(lengths), self.per_series, rng)
        at = offsets + starts
        if self.shuffle:
            at = at[rng.permutation(len(at))]
        return torch.as_tensor(values, dtype=self.dtype), at

    def _cut(self, values: Tensor, at: np.ndarray) -> tuple[Tensor, Tensor]:
        return cut_windows(values, at, self.pipeline.window, self.steps, self.pipeline.local_level)


def _release_memory() -> None:
    """Collect the last fragment's objects and hand freed heap pages back to the system
    (glibc's malloc_trim, where there is one): without it, resident memory crept up by about
    3 MB a fragment over hundreds of fragments (pandas' string objects fragment the heap)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def scaled_values(frame: pd.DataFrame, pipeline: Any) -> tuple[np.ndarray, np.ndarray]:
    """(values (rows, 1 + covariates) scaled per series as `pipeline` scales them, each
    series' row count) of a canonical long frame (series as contiguous blocks)."""
    columns = ["y", *pipeline.covariates]
    values = frame[columns].to_numpy(np.float64)
    codes, uniques = pd.factorize(frame["unique_id"], sort=False)
    lengths = np.bincount(codes)
    scaling = pipeline.scaling(frame)
    if scaling is not None:
        rows = pd.Index(scaling.ids).get_indexer(uniques.astype(str))
        cols = [scaling.columns.index(c) for c in columns]
        loc = scaling.loc[np.ix_(rows, cols)][codes]
        scale = scaling.scale[np.ix_(rows, cols)][codes]
        values = (values - loc) / scale
    return values, lengths


def _draw_starts(
    lengths: np.ndarray, n_windows: np.ndarray, per_series: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(window starts within their series, their series' first row), up to `per_series` a
    series: every start of a series with no more windows, else that many drawn uniformly."""
    take = np.minimum(n_windows, per_series)
    series = np.repeat(np.arange(len(lengths)), take)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.arange(len(series)) - np.repeat(np.cumsum(take) - take, take)  # 0.. within series
    many = (n_windows > per_series)[series]
    drawn = np.floor(rng.random(len(series)) * n_windows[series]).astype(np.int64)
    return np.where(many, drawn, rank), first[series]


def cut_windows(
    values: Tensor, at: np.ndarray, window: int, steps: int, local_level: bool
) -> tuple[Tensor, Tensor]:
    """Windows starting at rows `at` of `values` (rows, F): x (n, window, F) and the next
    `steps` targets y (n, steps), both shifted by x's last target when `local_level`."""
    at = torch.as_tensor(at, dtype=torch.int64)
    x = values[at[:, None] + torch.arange(window)]  # (n, W, F)
    y = values[at[:, None] + window + torch.arange(steps), 0]  # (n, S)
    if local_level:
        level = x[:, -1:, 0].clone()  # (n, 1)
        x[..., 0] -= level
        y = y - level
    return x, y
