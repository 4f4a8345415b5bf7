"""Arrays in, batches out: `as_tensor` checks and converts the inputs, `_Batches` cuts whole
batches from the tensors by index for both engines (sharded across processes under
Lightning)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from seqcast.errors import SeqcastError

if TYPE_CHECKING:
    from seqcast.training.settings import TrainSettings


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

    With `shard` (Lightning), a process of a multi-process run takes every world-th sample of
    the one order all processes draw alike (so they need a seed), each the same number, so
    every process runs the same number of steps."""

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int | None,
        shard: bool = False,
    ) -> None:  # fmt: skip
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.seeded, self.shard = seed is not None, shard
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def _order(self) -> Tensor | None:
        """Sample positions in this pass's order; None: all, in their order."""
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        rank, world = _rank_and_world() if self.shard else (0, 1)
        if world == 1:
            return order if order is None else order.to(self.x.device)
        if self.shuffle and not self.seeded:
            raise SeqcastError(
                "training on several processes needs a `seed`, so that every process cuts "
                "its share of the same shuffled batches"
            )
        order = torch.arange(n) if order is None else order
        return order[rank::world][: n // world].to(self.x.device)

    def __len__(self) -> int:
        world = _rank_and_world()[1] if self.shard else 1
        return math.ceil(len(self.x) // world / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y, size, order = self.x, self.y, self.batch_size, self._order()
        if order is None:
            for start in range(0, len(x), size):
                yield x[start : start + size], y[start : start + size]
            return
        for start in range(0, len(order), size):
            idx = order[start : start + size]  # index_select: half the cost of x[idx] here
            yield x.index_select(0, idx), y.index_select(0, idx)


def _rank_and_world() -> tuple[int, int]:
    """This process' rank and the number of processes (0, 1 outside torch.distributed)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _loader(batches: _Batches) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(batches, batch_size=None)


def _val_batch_size(settings: TrainSettings) -> int:
    return max(settings.batch_size, 256)
