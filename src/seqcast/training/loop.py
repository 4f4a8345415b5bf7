"""The lean engine: a plain PyTorch training loop on one device (shuffle, step, clip,
schedule, validate, report, stop early), run on `_threads_for` intra-op threads."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError
from seqcast.layers import _compiled
from seqcast.training.batches import _Batches, _val_batch_size
from seqcast.training.checkpoints import checkpoints_for, restore_run, run_state
from seqcast.training.guards import _DivergenceGuard
from seqcast.training.optim import _base_lr, _clipper, _FusedAdamStep, _optimizer, _scheduler
from seqcast.training.recipe import (
    _announce,
    _best_weights,
    _match,
    _monitor,
    _record,
    _seed_everything,
)
from seqcast.training.settings import PER_BATCH_SCHEDULES, History, TrainSettings, loss_function


def _lean_device(accelerator: str) -> torch.device:
    if accelerator in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise SeqcastError(
                f"accelerator={accelerator!r} but no CUDA device is available; use 'cpu' or 'auto'"
            )
        return torch.device("cuda")
    if accelerator == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class _EpochMeans:
    """Batch-size-weighted means of the loss and metrics over an epoch (what Lightning logs
    with on_epoch=True), summed as tensors so no step waits on a device sync."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, name: str, value: Tensor, size: int) -> None:
        value = value.detach() * size
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def means(self, prefix: str = "") -> dict[str, float]:
        return {prefix + k: float(v) / self.count for k, v in self.sums.items()}


#: Below this many parameters a CPU model trains on one intra-op thread by default: its ops
#: (a (32, 20) @ (20, 80) product, say) are far too small to split, and a second thread only
#: adds a hand-off per op; on a 2-core machine whose other core is busy it measured 10 to 25
#: times slower per step.
SMALL_MODEL_PARAMETERS = 1_000_000


def _threads_for(model: nn.Module, settings: TrainSettings, device: torch.device) -> int:
    if settings.threads is not None:
        return settings.threads
    if device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return torch.get_num_threads()


@contextlib.contextmanager
def _intra_op_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != previous:
            torch.set_num_threads(previous)


def _fit_lean(model, x, y, settings, val, metric_map, on_epoch_end) -> History:
    """The training loop on one device, on `_threads_for` intra-op threads."""
    device = _lean_device(settings.accelerator)
    threads = _threads_for(model, settings, device)
    with _intra_op_threads(threads), _compiled.using_stack_threads(settings.threads):
        return _lean_loop(model, x, y, settings, val, metric_map, device, on_epoch_end)


def _out_of_time(settings, history: History) -> bool:
    limit = settings.time_limit
    return limit is not None and sum(history.seconds_per_epoch) >= limit


def _lean_loop(model, x, y, settings, val, metric_map, device, on_epoch_end) -> History:
    """Shuffle, step, clip, schedule, guard, validate, report, checkpoint, stop early."""
    if settings.seed is not None:
        _seed_everything(settings.seed)
    saver = checkpoints_for(settings, model, (x, y, *(val or (None, None))))
    model.to(device)
    if y is None:  # x streams its own batches (seqcast.data.stream.WindowStream)
        batches = x.to(device)
    else:
        batches = _Batches(x.to(device), y.to(device), settings.batch_size, settings.shuffle,
                           settings.seed)  # fmt: skip
    if val is not None:
        val = _Batches(val[0].to(device), val[1].to(device), _val_batch_size(settings), False, None)
    loss_fn = loss_function(settings.loss)
    optimizer = _optimizer(model, settings)
    fused_step = _FusedAdamStep(optimizer)
    scheduler = _scheduler(optimizer, settings, len(batches))
    batch_schedule = scheduler.step if settings.schedule in PER_BATCH_SCHEDULES else None
    clip = _clipper(model, settings)
    best = _best_weights(settings, val is not None)
    history = History()
    guard = _DivergenceGuard(model, settings.divergence_factor, _base_lr(settings))
    run = _Run(batches.generator.get_state())
    parts = (model, optimizer, scheduler, history, best, guard)
    if saver is not None and settings.resume:
        run.resume(restore_run(saver.load(), *parts), device)
    steps = len(batches)

    def save() -> None:
        saver.save(run_state(*parts, **run.counters()))

    while run.epoch < settings.epochs and not run.stopped:
        epoch, start = run.epoch, time.perf_counter() - run.seconds
        model.train()
        batches.generator.set_state(run.order)  # this epoch's order (again, when resumed)
        if run.step == 0:
            guard.start_epoch()
        for step, (xb, yb) in enumerate(batches):
            if step < run.step:
                continue  # resumed within the epoch: done before the checkpoint
            # per step only what the settings ask for: ~1 ms steps leave no room for more
            pred = _match(model(xb), yb)
            loss = loss_fn(pred, yb)
            fused_step.zero_grad()
            loss.backward()
            if clip is not None:
                clip()
            fused_step()
            if batch_schedule is not None:
                batch_schedule()
            size = len(xb)
            run.train.count += size
            run.train.add("loss", loss, size)
            for name, fn in metric_map.items():
                run.train.add(name, fn(yb, pred.detach()), size)
            guard.record(loss)
            run.step, run.global_step = step + 1, run.global_step + 1
            if saver is not None and saver.due(run.global_step) and run.step < steps:
                run.seconds = time.perf_counter() - start
                guard.check(epoch, settings.epochs, steps)  # never a diverged checkpoint
                save()
        guard.check(epoch, settings.epochs, steps)
        values = run.train.means()
        if val is not None:
            values |= _validate(model, val, loss_fn, metric_map)
        if scheduler is not None:
            values["lr"] = optimizer.param_groups[0]["lr"]  # at the epoch's end, before "plateau"
            if batch_schedule is None:
                scheduler.step(values[_monitor(val is not None)])
        seconds = time.perf_counter() - start
        _record(history, values, seconds)
        _announce(epoch, values, seconds, settings, on_epoch_end)
        if best is not None and best.should_stop(values["val_loss"], model):
            run.stopped = True
        if not run.stopped and run.epoch + 1 < settings.epochs and _out_of_time(settings, history):
            run.stopped = history.stopped_at_time_limit = True
        run.next_epoch(batches.generator.get_state())
        last = run.stopped or run.epoch == settings.epochs
        if saver is not None and (saver.every is None or last or saver.due(run.global_step)):
            save()
    if best is not None:
        best.restore(model)
    return history


class _Run:
    """The lean loop's counters and the epoch in progress: what a checkpoint adds to the
    model, optimizer, schedule, history, early stopping and guard."""

    def __init__(self, order: Tensor) -> None:
        self.epoch = self.step = self.global_step = 0  # epochs done, steps done in this one
        self.stopped, self.seconds = False, 0.0
        self.order = order  # the batch-order generator's state at this epoch's start
        self.train = _EpochMeans()

    def next_epoch(self, order: Tensor) -> None:
        self.epoch, self.step, self.seconds, self.order = self.epoch + 1, 0, 0.0, order
        self.train = _EpochMeans()

    def counters(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "stopped": self.stopped, "seconds": self.seconds, "order": self.order,
            "train_sums": self.train.sums, "train_count": self.train.count,
        }  # fmt: skip

    def resume(self, counters: dict, device: torch.device) -> None:
        self.epoch, self.step = counters["epoch"], counters["step"]
        self.global_step, self.stopped = counters["global_step"], counters["stopped"]
        self.seconds, self.order = counters["seconds"], counters["order"]
        self.train.count = counters["train_count"]
        self.train.sums = {k: v.to(device) for k, v in counters["train_sums"].items()}


def _validate(model, batches: _Batches, loss_fn, metric_map) -> dict[str, float]:
    model.eval()
    means = _EpochMeans()
    with torch.no_grad():
        for xb, yb in batches:
            pred = _match(model(xb), yb)
            size = len(xb)
            means.count += size
            means.add("loss", loss_fn(pred, yb), size)
            for name, fn in metric_map.items():
                means.add(name, fn(yb, pred), size)
    return means.means("val_")
