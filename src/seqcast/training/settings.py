"""`TrainSettings`, the one list of training settings, and what they name: losses, metrics,
trainers, schedules; `History`, the per-epoch values a fit returns."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from seqcast import metrics as metric_fns
from seqcast.errors import SeqcastError, check_choice
from seqcast.training.optim import OPTIMIZERS

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
    "huber": nn.functional.huber_loss,
}
TRAINERS = ("auto", "lean", "lightning")
LEAN_ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
#: Lightning's accelerator names (or give a Lightning Accelerator object)
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
#: Learning-rate schedules (`TrainSettings.schedule`). "onecycle" and "cosine" step after every
#: batch over the whole run (epochs x batches per epoch), "plateau" after every epoch.
SCHEDULES = ("onecycle", "cosine", "plateau")
PER_BATCH_SCHEDULES = ("onecycle", "cosine")
#: Keras' names for settings: `fit(..., verbose=False)` is `progress=False`.
SETTING_ALIASES = {"verbose": "progress"}


METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": lambda y, p: nn.functional.mse_loss(p, y),
    "mae": lambda y, p: nn.functional.l1_loss(p, y),
    "last_time_step_mse": metric_fns.last_time_step_mse,
}


@dataclass
class History:
    """Per-epoch values, Keras-style: `history.history["val_loss"][-1]`."""

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds_per_epoch: list[float] = field(default_factory=list)
    stopped_at_time_limit: bool = False  # TrainSettings.time_limit ended the run

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))


@dataclass
class TrainSettings:
    """Every training setting, the one place they are listed: `Sequential.fit` keywords,
    `Forecaster` and the CLI all build one of these (`from_kwargs`, `replace`)."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's default; the peak for "onecycle"
    # a name from LOSSES, or a callable loss(pred, y) -> scalar tensor: the hook for losses
    # that need more than the target (masks, per-sample scales: see seqcast.ensemble and
    # seqcast.impute)
    loss: str | Callable[[Tensor, Tensor], Tensor] = "mse"
    clip_norm: float | None = None
    clip_value: float | None = None
    early_stopping: int | None = None  # patience in epochs, on val_loss; best weights restored
    # learning-rate schedule (SCHEDULES), as torch's schedulers make it: "onecycle"
    # (OneCycleLR: from lr / 25 up to lr over the first `pct_start` of the steps, then down to
    # lr / 2.5e5, momentum cycled between 0.95 and 0.85), "cosine" (CosineAnnealingLR from lr
    # down to `min_lr` over all steps), "plateau" (ReduceLROnPlateau: lr times `lr_factor`
    # after `lr_patience` epochs without a lower val_loss, or loss without validation data)
    schedule: str | None = None
    pct_start: float = 0.3
    min_lr: float = 0.0
    lr_factor: float = 0.1
    lr_patience: int = 10
    seed: int | None = None
    shuffle: bool = True
    progress: bool = True  # Keras' `verbose`
    trainer: str = "auto"  # "lean" | "lightning" | "auto" (see seqcast.training's docstring)
    # where and on how much it trains: "auto" / "cpu" / "cuda" run on the lean loop; anything
    # else, several devices or nodes, or another strategy need Lightning (`engine`)
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: Any = "auto"  # a Lightning strategy name ("ddp", ...) or object
    log_dir: str | None = None  # Lightning's CSVLogger writes <log_dir>/seqcast/version_N/
    # CPU threads while training: torch's intra-op threads and those of the LSTM-stack
    # wavefront (`_compiled.lstm_stack`). None: see _threads_for, and the wavefront may use
    # every core this process may use.
    threads: int | None = None
    # checkpoints (seqcast.training.checkpoints): the whole state of the run in
    # <checkpoint_dir>/checkpoint.safetensors, replaced atomically at the end of every epoch,
    # or every `checkpoint_every` optimizer steps (lean engine); `resume` continues from it
    checkpoint_dir: str | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    # divergence guard (seqcast.training.guards): stop when a step's loss is non-finite or an
    # epoch's mean step loss passes `divergence_factor` times the first step's; None: only the
    # non-finite check
    divergence_factor: float | None = 1e4
    # seconds of training: the run stops after the epoch in which they pass (at least one
    # epoch; early stopping's best weights are still restored), and History says so
    time_limit: float | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> TrainSettings:
        """Defaults with `kwargs` changed: `TrainSettings.from_kwargs(epochs=20, lr=1e-2)`.
        An unknown name is a SeqcastError that lists the valid ones."""
        return cls().replace(**kwargs)

    def replace(self, **kwargs: Any) -> TrainSettings:
        """A validated copy with `kwargs` changed (names checked as in `from_kwargs`)."""
        return dataclasses.replace(self, **_setting_names(kwargs)).validate()

    def validate(self) -> TrainSettings:
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not callable(self.loss):
            check_choice("loss", self.loss, LOSSES)
        for name in ("lr", "clip_norm", "clip_value", "time_limit"):
            if getattr(self, name) is not None:
                _check_positive_float(name, getattr(self, name))
        if self.clip_norm is not None and self.clip_value is not None:
            raise SeqcastError("give either `clip_norm` or `clip_value`, not both")
        if self.early_stopping is not None:
            _check_count("early_stopping", self.early_stopping)  # 0: off, as None
        self._validate_schedule()
        self._validate_checkpoints()
        check_choice("trainer", self.trainer, TRAINERS)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)
        self._validate_placement()
        reason = self.lightning_reason()
        if self.trainer == "lean" and reason:
            raise SeqcastError(
                f"trainer='lean' trains on one device and writes no logs; {reason} needs "
                "trainer='lightning' (or 'auto')"
            )
        return self

    def _validate_schedule(self) -> None:
        if self.schedule is not None:
            check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("pct_start", "min_lr", "lr_factor"):
            _check_finite(name, getattr(self, name))
        if not 0 < self.pct_start < 1:
            raise SeqcastError(f"`pct_start` must be in (0, 1), got {self.pct_start!r}")
        if not 0 < self.lr_factor < 1:
            raise SeqcastError(f"`lr_factor` must be in (0, 1), got {self.lr_factor!r}")
        if not self.min_lr >= 0:
            raise SeqcastError(f"`min_lr` must be 0 or more, got {self.min_lr!r}")
        _check_count("lr_patience", self.lr_patience)

    def _validate_checkpoints(self) -> None:
        if self.resume and self.checkpoint_dir is None:
            raise SeqcastError("`resume` continues from a checkpoint: give `checkpoint_dir` too")
        if self.checkpoint_every is not None:
            _check_positive_int("checkpoint_every", self.checkpoint_every)
        factor = self.divergence_factor
        if factor is not None and not (_is_finite(factor) and factor > 1):
            raise SeqcastError(
                f"`divergence_factor` must be a number above 1 (or None: off), got {factor!r}"
            )

    def _validate_placement(self) -> None:
        """Devices, nodes, accelerator and strategy: what Lightning would refuse later, and
        the strategies that pickle the model into new processes (seqcast's trainer does not
        pickle; "ddp" runs the script again for each process instead)."""
        _check_positive_int("num_nodes", self.num_nodes)
        if isinstance(self.devices, bool) or (
            isinstance(self.devices, int) and self.devices < 1 and self.devices != -1
        ):
            raise SeqcastError(f"`devices` must be a positive integer, -1, a list or a "
                               f"string, got {self.devices!r}")  # fmt: skip
        if isinstance(self.accelerator, str):
            check_choice("accelerator", self.accelerator, ACCELERATORS)
        if isinstance(self.strategy, str) and "spawn" in self.strategy:
            raise SeqcastError(
                f"strategy={self.strategy!r} pickles the model into new processes, which "
                "seqcast's trainer does not support; use 'ddp' (each process runs the script "
                "again) or launch the processes with torchrun"
            )

    def lightning_reason(self) -> str | None:
        """What in these settings only the Lightning engine does (None: nothing)."""
        if self.log_dir is not None:
            return "a log_dir"
        for name, lean in (("devices", 1), ("num_nodes", 1), ("strategy", "auto")):
            if getattr(self, name) != lean:
                return f"{name}={getattr(self, name)!r}"
        if self.accelerator not in LEAN_ACCELERATORS:
            return f"accelerator={self.accelerator!r}"
        return None

    def engine(self, callbacks: bool = False) -> str:
        """The engine "auto" resolves to: Lightning for logs, other accelerators, several
        devices or nodes, another strategy, or Lightning `callbacks`."""
        if self.trainer != "auto":
            return self.trainer
        return "lightning" if callbacks or self.lightning_reason() else "lean"


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SeqcastError(f"`{name}` must be a positive integer, got {value!r}")


def _is_finite(value: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_finite(name: str, value: Any) -> None:
    if not _is_finite(value):
        raise SeqcastError(f"`{name}` must be a finite number, got {value!r}")


def _check_positive_float(name: str, value: Any) -> None:
    if not (_is_finite(value) and value > 0):
        raise SeqcastError(
            f"`{name}` must be a positive number, got {value!r}; give a finite value above 0"
        )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SeqcastError(f"`{name}` must be a non-negative integer, got {value!r}")


def _setting_names(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` keyed by TrainSettings field (aliases resolved); unknown names are an error."""
    fields = [f.name for f in dataclasses.fields(TrainSettings)]
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        key = SETTING_ALIASES.get(name, name)
        if key not in fields:
            raise SeqcastError(
                f"unknown training setting {name!r}; expected one of {', '.join(fields)} "
                f"(or {', '.join(SETTING_ALIASES)})"
            )
        if key in out:
            raise SeqcastError(f"`{key}` given twice (`verbose` is Keras' name for `progress`)")
        out[key] = value
    return out


def loss_function(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable:
    return loss if callable(loss) else LOSSES[loss]


def resolve_metrics(metrics: Sequence[str | Callable] | None) -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    for m in metrics or ():
        if callable(m):
            out[getattr(m, "__name__", "metric")] = m
        elif m in METRICS:
            out[m] = METRICS[m]
        else:
            raise SeqcastError(
                f"unknown metric {m!r}; expected one of {', '.join(METRICS)} or a callable "
                "f(y_true, y_pred) -> tensor"
            )
    return out
