"""What both engines do alike around their steps: seed the run, match predictions to targets,
record and report each epoch (`History`, the INFO line, `on_epoch_end`), and stop early with
best-weight restore (`_BestWeights`)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqcast.training.settings import History, TrainSettings

#: one INFO line per epoch with `progress`, on the package's logger "seqcast.training"
log = logging.getLogger("seqcast.training")


def _seed_everything(seed: int) -> None:
    """What Lightning's seed_everything seeds: Python's, numpy's and torch's generators."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _match(pred: Tensor, y: Tensor) -> Tensor:
    """Predictions shaped like the targets when only the layout differs ((B, 1) vs (B,))."""
    if pred.shape != y.shape and pred.numel() == y.numel():
        return pred.reshape(y.shape)
    return pred


def _monitor(has_validation: bool) -> str:
    """What "plateau" watches: the validation loss, or the training loss without one."""
    return "val_loss" if has_validation else "loss"


class _BestWeights:
    """Early stopping on val_loss, the rule of both engines: stop after `patience` epochs
    without a strictly lower value, then go back to the best epoch's weights."""

    def __init__(self, patience: int) -> None:
        self.patience, self.waited = patience, 0
        self.best_value, self.best_state = math.inf, None

    def should_stop(self, value: float, model: nn.Module) -> bool:
        if value < self.best_value:
            self.best_value, self.waited = value, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def _best_weights(settings: TrainSettings, has_validation: bool) -> _BestWeights | None:
    if settings.early_stopping and has_validation:
        return _BestWeights(settings.early_stopping)
    return None


#: on_epoch_end(epoch, values): epoch counts from 0 (as Keras' callbacks do); values are that
#: epoch's entries of the History (loss, metrics, val_*, and lr under a schedule).
EpochHook = Callable[[int, dict[str, float]], Any]


def _record(history: History, values: dict[str, float], seconds: float) -> None:
    history.seconds_per_epoch.append(seconds)
    for key, value in values.items():
        history.history.setdefault(key, []).append(value)


def _announce(
    epoch: int,
    values: dict[str, float],
    seconds: float,
    settings: TrainSettings,
    on_epoch_end: EpochHook | None,
) -> None:
    """Report an epoch: an INFO line (with `progress`; the record carries epoch, epochs,
    values and seconds as attributes for handlers) and `on_epoch_end`."""
    if settings.progress:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        extra = {"epoch": epoch, "epochs": settings.epochs, "values": values, "seconds": seconds}
        log.info("epoch %d/%d  %s  %.2fs", epoch + 1, settings.epochs, shown, seconds, extra=extra)
    if on_epoch_end is not None:
        on_epoch_end(epoch, dict(values))
