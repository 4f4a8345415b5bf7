"""Arrays in, batches out: `as_tensor` checks and converts the inputs, `_Batches` cuts whole
batches from the tensors by index for both engines (sharded across processes under
Lightning)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from seqcast.errors import SeqcastError

if TYPE_CHECKING:
    from seqcast.training.settings import TrainSettings

log = logging.getLogger("seqcast.training")


def as_tensor(a: Any, name: str, min_dims: int = 2) -> Tensor:
    """numpy / torch / nested lists -> float32 tensor (float64 stays float64). Inputs need a
    sample axis and at least one more; targets (`min_dims=1`) may be one value per sample, as
    Keras accepts."""
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    if not t.is_floating_point():
        t = t.float()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if t.dim() < min_dims:
        what = "a sample axis" if min_dims == 1 else "a sample axis and at least one more"
        raise SeqcastError(f"`{name}` must have {what}; got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise SeqcastError(f"`{name}` contains NaN; fill or drop missing values before training")
    return t


class _Batches(torch.utils.data.IterableDataset):
    """Whole batches cut from in-memory tensors by index: one gather per batch, no collate.
    The one batcher of both engines: the lean loop iterates it, Lightning wraps it in a
    DataLoader. A new order is drawn from its own generator at every pass.

    With `shard` (Lightning), a process of a multi-process run takes its share of the one
    order every process draws alike (from the same seed; without one, rank 0 draws a seed
    and sends it to the others):

    - with `groups` (one series id per sample), the samples of its own series: each series
      goes whole to one process (`_series_owners`), so its windows never straddle two;
    - without, or when the series cannot be spread evenly, every world-th sample.

    A shuffled pass takes the same number of samples on every process (the smallest share;
    a new draw decides which each pass), so every process runs the same number of steps. An
    unshuffled pass (validation) keeps every sample and cuts each share into the same number
    of batches, so the synced means cover the whole set."""

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int | None,
        shard: bool = False, groups: Any = None,
    ) -> None:  # fmt: skip
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.seeded, self.shard = seed is not None, shard
        self.groups = None if groups is None else _group_codes(groups, len(x))
        # (rank, world) of the run, set by the Lightning engine once its processes are up;
        # None: ask torch.distributed
        self.placement: tuple[int, int] | None = None
        self._shares: dict[int, Tensor] = {}  # world -> owner rank of each sample
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def _rank_and_world(self) -> tuple[int, int]:
        if not self.shard:
            return 0, 1
        return self.placement if self.placement is not None else _rank_and_world()

    def _owners(self, world: int) -> Tensor:
        """The process that trains each sample: by series when `groups` allow, else by
        position (every world-th sample of the order, marked -1 here)."""
        if world not in self._shares:
            owners = None if self.groups is None else _series_owners(self.groups, world)
            self._shares[world] = torch.full((len(self.x),), -1) if owners is None else owners
        return self._shares[world]

    def _share(self, world: int) -> int:
        """Samples a shuffled pass takes on each process: the smallest share."""
        owners = self._owners(world)
        if owners[0] < 0:
            return len(self.x) // world
        return int(torch.bincount(owners, minlength=world).min())

    def _order(self) -> Tensor | None:
        """Sample positions in this pass's order; None: all, in their order."""
        n = len(self.x)
        rank, world = self._rank_and_world()
        if world == 1:
            order = torch.randperm(n, generator=self.generator) if self.shuffle else None
            return order if order is None else order.to(self.x.device)
        if self.shuffle and not self.seeded:
            self._share_a_seed()
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        owners = self._owners(world)
        if owners[0] < 0:
            mine = order[rank::world]
        else:
            mine = order[owners[order] == rank]
        if self.shuffle:
            mine = mine[: self._share(world)]
        return mine.to(self.x.device)

    def _share_a_seed(self) -> None:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            raise SeqcastError(
                "training on several processes needs a `seed`, so that every process cuts "
                "its share of the same shuffled batches"
            )
        seed = [int(torch.randint(2**62, ()))]
        dist.broadcast_object_list(seed, src=0)  # every process draws rank 0's orders
        self.generator.manual_seed(seed[0])
        self.seeded = True

    def _batch_count(self, rank: int, world: int) -> int:
        if world == 1:
            return math.ceil(len(self.x) / self.batch_size)
        if self.shuffle:
            return math.ceil(self._share(world) / self.batch_size)
        # unshuffled: every sample, the largest share sets the count for all
        owners = self._owners(world)
        if owners[0] < 0:
            largest = math.ceil(len(self.x) / world)
        else:
            largest = int(torch.bincount(owners, minlength=world).max())
        return math.ceil(largest / self.batch_size)

    def __len__(self) -> int:
        return self._batch_count(*self._rank_and_world())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y, size, order = self.x, self.y, self.batch_size, self._order()
        if order is None:
            for start in range(0, len(x), size):
                yield x[start : start + size], y[start : start + size]
            return
        rank, world = self._rank_and_world()
        count = self._batch_count(rank, world)
        if math.ceil(len(order) / size) != count:  # an unshuffled share smaller than others'
            if len(order) < count:
                raise SeqcastError(
                    f"{len(x)} unshuffled samples (validation data, or shuffle=False) cannot "
                    f"give each of {world} processes {count} batches; give more samples or "
                    "train on fewer processes"
                )
            for idx in torch.tensor_split(order, count):
                yield x.index_select(0, idx), y.index_select(0, idx)
            return
        for start in range(0, len(order), size):
            idx = order[start : start + size]  # index_select: half the cost of x[idx] here
            yield x.index_select(0, idx), y.index_select(0, idx)


def _group_codes(groups: Any, n: int) -> Tensor:
    """Series ids (any values numpy can sort) as codes 0..k-1 in sorted-id order."""
    ids = np.asarray(groups)
    if ids.ndim != 1 or len(ids) != n:
        raise SeqcastError(
            f"`groups` must give one series id per sample ({n}); got shape {ids.shape}"
        )
    return torch.as_tensor(np.unique(ids, return_inverse=True)[1].reshape(-1))


#: Series sharding gives way to sharding by window when the smallest share would be less
#: than this fraction of an even split (one series holding most windows, or fewer series
#: than processes): a shuffled pass trains on the smallest share times the processes.
MIN_SERIES_SHARE = 0.5


def _series_owners(codes: Tensor, world: int) -> Tensor | None:
    """The rank that trains each sample, whole series to one rank, balanced by window count:
    largest series first to the least-loaded rank (ties: the lower series code, the lower
    rank), the same on every process. None when that cannot give every rank at least
    MIN_SERIES_SHARE of an even split."""
    counts = torch.bincount(codes)
    loads = [0] * world
    owner_of = torch.empty(len(counts), dtype=torch.long)
    for code in sorted(range(len(counts)), key=lambda c: (-int(counts[c]), c)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        owner_of[code] = rank
        loads[rank] += int(counts[code])
    if min(loads) < MIN_SERIES_SHARE * len(codes) / world:
        log.info(
            "training on %d processes by window: %d series cannot be split evenly by series",
            world, len(counts),
        )  # fmt: skip
        return None
    return owner_of[codes]


def _rank_and_world() -> tuple[int, int]:
    """This process' rank and the number of processes (0, 1 outside torch.distributed)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _loader(batches: torch.utils.data.IterableDataset) -> torch.utils.data.DataLoader:
    """Whole batches as they come (`_Batches`, or a stream of batches)."""
    return torch.utils.data.DataLoader(batches, batch_size=None)


def _val_batch_size(settings: TrainSettings) -> int:
    return max(settings.batch_size, 256)
