"""The lean loop's divergence guard and checkpoints under the Lightning engine, as one
Lightning callback: the same rule (`guards`) and the same checkpoint file (`checkpoints`), so
a run may be checkpointed by one engine and read by the other's tools alike.

Under Lightning a checkpoint is written at the start of every epoch after the first one run
(once the previous epoch's schedule step, history and early-stopping decision are in) and at
the end of training, by the process of rank 0; steps within an epoch are the lean engine's
(`checkpoint_every`). Resuming loads it on every process when training starts, and sets
Lightning's epoch counters past the epochs done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from seqcast.errors import TrainingDivergedError
from seqcast.training.checkpoints import checkpoints_for, restore_run, run_state
from seqcast.training.guards import _DivergenceGuard
from seqcast.training.optim import _base_lr
from seqcast.training.recipe import _BestWeights
from seqcast.training.settings import History, TrainSettings


def recipe_callbacks(
    settings: TrainSettings,
    model: nn.Module,
    data: Sequence[Any],
    train: Any,
    history: History,
    best: _BestWeights | None,
) -> list:
    """The guard-and-checkpoint callback of a Lightning run (`data`: x, y and the validation
    pair or None, as the fingerprint takes them; `train`: the training batches, a `_Batches`
    or a stream, whose `generator` a checkpoint keeps). A stream (y None) is refused before
    this when a checkpoint is asked for: its data has no fingerprint."""
    import lightning.pytorch as pl

    x, y, val = data
    saver = checkpoints_for(settings, model, (x, y, *(val or (None, None))))

    class GuardAndCheckpoints(pl.Callback):
        def on_train_start(self, trainer, module):
            self.guard = _DivergenceGuard(model, settings.divergence_factor, _base_lr(settings))
            self.first_epoch = 0
            if saver is None or not settings.resume:
                return
            scheduler = self._scheduler(trainer)
            counters = restore_run(saver.load(), *self._parts(trainer, scheduler))
            train.generator.set_state(counters["order"])
            self.first_epoch = done = counters["epoch"]
            for progress in (trainer.fit_loop.epoch_progress.current,
                             trainer.fit_loop.epoch_progress.total):  # fmt: skip
                progress.ready = progress.started = done
                progress.processed = progress.completed = done
            trainer.should_stop = bool(counters["stopped"])

        def on_train_epoch_start(self, trainer, module):
            self.guard.start_epoch()
            if saver is not None and trainer.current_epoch > self.first_epoch:
                self._save(trainer, stopped=False)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.guard.record(outputs["loss"] if isinstance(outputs, dict) else outputs)

        def on_train_epoch_end(self, trainer, module):
            error = None
            try:
                self.guard.check(
                    trainer.current_epoch, settings.epochs, trainer.num_training_batches
                )
            except TrainingDivergedError as e:
                error = e
            # every process stops alike: one that saw nothing goes back to its good weights
            if trainer.strategy.reduce_boolean_decision(error is not None, all=False):
                if error is None:
                    model.load_state_dict(self.guard.good)
                    error = TrainingDivergedError(
                        f"training diverged on another process at epoch "
                        f"{trainer.current_epoch + 1} of {settings.epochs}; lower `lr` or "
                        "scale the series"
                    )
                raise error

        def on_train_end(self, trainer, module):
            if saver is not None:
                self._save(trainer, stopped=bool(trainer.should_stop))

        def _scheduler(self, trainer):
            configs = trainer.lr_scheduler_configs
            return configs[0].scheduler if configs else None

        def _parts(self, trainer, scheduler) -> tuple:
            return model, trainer.optimizers[0], scheduler, history, best, self.guard

        def _save(self, trainer, stopped: bool) -> None:
            if not trainer.is_global_zero:
                return
            parts = self._parts(trainer, self._scheduler(trainer))
            saver.save(run_state(
                *parts, epoch=trainer.current_epoch, step=0, global_step=trainer.global_step,
                stopped=stopped, seconds=0.0, order=train.generator.get_state(),
                train_sums={}, train_count=0,
            ))  # fmt: skip

    return [GuardAndCheckpoints()]
