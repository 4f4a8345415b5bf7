"""The Lightning engine: the lean loop's recipe as a LightningModule and a callback, for CSV
logs in a `log_dir`, other accelerators, several devices or nodes and Lightning callbacks.
Lightning is imported on the first fit that uses it.

Several processes (`devices`, `num_nodes`, strategy "ddp"): Lightning starts the other
processes of this machine by running the script's command line again (or finds them started
by `torchrun`); each takes its share of the batches (`_Batches`, or a stream of batches
such as `seqcast.data.stream.WindowStream`, which reads only its own Parquet parts), DDP
averages the gradients,
the logged means are synced, so every process stops at the same epoch and ends with the same
weights. Process groups: gloo on CPU, nccl on GPU (Lightning's defaults). `rank()` and
`is_global_zero()` tell the code after `fit` which process it runs in, so that one writes."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError
from seqcast.layers import _compiled
from seqcast.training.batches import _Batches, _loader, _rank_and_world, _val_batch_size
from seqcast.training.lightning_state import recipe_callbacks
from seqcast.training.loop import _intra_op_threads, _threads_for
from seqcast.training.optim import _optimizer, _scheduler
from seqcast.training.recipe import (
    EpochHook,
    _announce,
    _best_weights,
    _BestWeights,
    _match,
    _monitor,
    _record,
    _seed_everything,
)
from seqcast.training.settings import PER_BATCH_SCHEDULES, History, TrainSettings, loss_function


def _lightning():
    import lightning.pytorch as pl  # imported on first fit: predict and load never pay for it

    return pl


def _make_module(
    model: nn.Module,
    settings: TrainSettings,
    metrics: dict[str, Callable],
    steps_per_epoch: Callable[[], int] = lambda: 1,
    monitor: str = "val_loss",
):
    """The LightningModule: the lean loop's loss, metrics, optimizer and schedule.
    `steps_per_epoch` is asked once the processes are up (a process' share of the batches)."""
    pl = _lightning()

    class SeqcastModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.loss_fn = loss_function(settings.loss)

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)

        def _shared(self, batch: tuple[Tensor, Tensor], prefix: str) -> Tensor:
            x, y = batch
            pred = _match(self.model(x), y)
            loss = self.loss_fn(pred, y)
            # epoch means over every process' batches when there are several
            log = functools.partial(
                self.log, on_step=False, on_epoch=True, batch_size=len(x),
                sync_dist=self.trainer.world_size > 1,
            )  # fmt: skip
            log(f"{prefix}loss", loss)
            for name, fn in metrics.items():
                log(f"{prefix}{name}", fn(y, pred.detach()))
            return loss

        def training_step(self, batch, batch_idx):
            return self._shared(batch, "")

        def validation_step(self, batch, batch_idx):
            return self._shared(batch, "val_")

        def configure_optimizers(self):
            optimizer = _optimizer(self.model, settings)
            scheduler = _scheduler(optimizer, settings, steps_per_epoch())
            if scheduler is None:
                return optimizer
            interval = "step" if settings.schedule in PER_BATCH_SCHEDULES else "epoch"
            config = {"scheduler": scheduler, "interval": interval, "monitor": monitor}
            return {"optimizer": optimizer, "lr_scheduler": config}

    return SeqcastModule()


def _epoch_callback(
    history: History,
    settings: TrainSettings,
    best: _BestWeights | None,
    on_epoch_end: EpochHook | None,
):
    """The lean loop's end of epoch under Lightning: history, report, early stopping with
    best-weight restore (the same `_BestWeights` rule)."""
    pl = _lightning()

    class EpochEnd(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            # runs after the epoch's validation and before Lightning steps a "plateau" schedule
            values = {k: float(v) for k, v in trainer.callback_metrics.items()}
            if settings.schedule is not None:
                values["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
            seconds = time.perf_counter() - self.start
            _record(history, values, seconds)
            if trainer.is_global_zero:  # one report, not one per process
                _announce(trainer.current_epoch, values, seconds, settings, on_epoch_end)
            if best is not None and "val_loss" in values:
                stop = best.should_stop(values["val_loss"], module.model)
                # every process decides alike (val_loss is synced), yet Lightning's own
                # EarlyStopping makes sure; so does this
                stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
                trainer.should_stop = trainer.should_stop or stop

        def on_train_end(self, trainer, module):
            if best is not None:
                best.restore(module.model)

    return EpochEnd()


#: (rank, world size) of the last Lightning run in this process; None before any
_last_run: tuple[int, int] | None = None


def rank() -> int:
    """This process' global rank in a multi-process training run: 0 in a run of one process
    (and outside any). Exact after `fit`, and before it under `torchrun` or on the first
    machine; every process of a run ends `fit` with the same weights, so rank 0 alone saves:
    `if training.is_global_zero(): forecaster.save(path)`."""
    if _rank_and_world()[1] > 1:
        return _rank_and_world()[0]
    if _last_run is not None:
        return _last_run[0]
    # before the first fit: torchrun's RANK, or the LOCAL_RANK Lightning gives the processes
    # it starts (Lightning's own rank-zero rule)
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def is_global_zero() -> bool:
    """Whether this process is rank 0 of its training run (True in a run of one process)."""
    known = _rank_and_world()[1] > 1 or _last_run is not None or "RANK" in os.environ
    # else LOCAL_RANK 0 is rank 0 only on the first machine
    return rank() == 0 and (known or os.environ.get("NODE_RANK", "0") == "0")


def _cores() -> int:
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else os.cpu_count() or 1


def _placement_callback(model: nn.Module, settings: TrainSettings, batches: list[Any]):
    """Once the processes are up: tell the batchers this process' rank and the world size,
    and cap its CPU threads to its share of this machine's cores (`threads`, or the lean
    loop's choice, at most cores // processes on this machine, at least 1), until teardown."""
    pl = _lightning()

    class Placement(pl.Callback):
        def setup(self, trainer, module, stage):
            global _last_run
            _last_run = (trainer.global_rank, trainer.world_size)
            for b in batches:
                b.placement = _last_run
            threads = _threads_for(model, settings, trainer.strategy.root_device)
            if settings.threads is None:
                threads = min(threads, max(1, _cores() // max(1, trainer.num_devices)))
            self.stack = contextlib.ExitStack()
            self.stack.enter_context(_intra_op_threads(threads))
            self.stack.enter_context(_compiled.using_stack_threads(threads))

        def teardown(self, trainer, module, stage):
            self.close()

        def on_exception(self, trainer, module, exception):
            self.close()  # Lightning skips teardown when fit raises (a diverged run)

        def close(self) -> None:
            """Restore the thread counts now (idempotent), never when the stack happens to
            be collected, which could be in the middle of a later fit."""
            stack = getattr(self, "stack", None)
            if stack is not None:
                stack.close()

    return Placement()


def _fit_lightning(
    model, x, y, settings, val, metric_map, callbacks, on_epoch_end, groups: Any = None
) -> History:
    """`groups`: one series id per sample of x; with several processes each series trains on
    one process. With `y` None, `x` is a stream of (x, y) batches with a length and a
    `placement` (`seqcast.data.stream.WindowStream`) that shards itself across processes."""
    pl = _lightning()
    for callback in callbacks:
        if not isinstance(callback, pl.Callback):
            raise SeqcastError(
                f"`callbacks` takes Lightning callbacks (lightning.pytorch.Callback); got "
                f"{type(callback).__name__}"
            )
    with _quiet_lightning():
        if settings.seed is not None:
            _seed_everything(settings.seed)
        if y is None:  # a stream: it cuts its own batches and takes its own share
            train = x
        else:
            train = _Batches(
                x, y, settings.batch_size, settings.shuffle, settings.seed, shard=True,
                groups=groups,
            )  # fmt: skip
        batchers = [train]
        if val is not None:
            batchers.append(_Batches(*val, _val_batch_size(settings), False, None, shard=True))
        monitor = _monitor(val is not None)
        module = _make_module(model, settings, metric_map, train.__len__, monitor)
        history = History()
        best = _best_weights(settings, val is not None)
        callbacks = [*recipe_callbacks(settings, model, (x, y, val), train, history, best),
                     *callbacks]  # fmt: skip
        checkpoints = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
        placement = _placement_callback(model, settings, batchers)
        trainer = pl.Trainer(
            max_epochs=settings.epochs,
            max_time=None if settings.time_limit is None else {"seconds": settings.time_limit},
            accelerator=settings.accelerator,
            devices=settings.devices,
            num_nodes=settings.num_nodes,
            strategy=settings.strategy,
            logger=_logger(settings.log_dir),
            enable_checkpointing=checkpoints,  # only a checkpoint callback the caller gave
            enable_model_summary=False,
            enable_progress_bar=False,  # progress: the INFO line and on_epoch_end
            num_sanity_val_steps=0,
            gradient_clip_val=settings.clip_norm or settings.clip_value,
            gradient_clip_algorithm="value" if settings.clip_value else "norm",
            callbacks=[
                placement,
                _epoch_callback(history, settings, best, on_epoch_end),
                *callbacks,
            ],
            default_root_dir=settings.log_dir,
            use_distributed_sampler=False,  # _Batches and streams shard themselves
        )
        previous_threads = torch.get_num_threads()  # Lightning's launcher sets its own
        try:
            trainer.fit(module, *map(_loader, batchers))
        finally:
            placement.close()
            torch.set_num_threads(previous_threads)
    return history


def _logger(log_dir: str | None):
    if log_dir is None:
        return False
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(log_dir, name="seqcast")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up banner and advice warnings say nothing a seqcast user can act on."""
    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*IterableDataset.*__len__.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
