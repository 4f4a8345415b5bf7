"""Training: one Lightning module and one trainer set-up behind every `fit` in seqcast.

`fit_arrays(model, X, Y, ...)` is the single entry point: `Sequential.fit` (the notes' Keras
workflow) and `Forecaster.fit` both call it. Batches are cut from whole tensors by index (no
per-sample Python, no collate), the same seed gives the same numbers on CPU, and nothing is
written to disk (no `lightning_logs`, no checkpoints) unless a `log_dir` is given.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqcast import metrics as metric_fns
from seqcast.errors import SeqcastError, check_choice

OPTIMIZERS = {
    "adam": (torch.optim.Adam, 1e-3),
    "rmsprop": (torch.optim.RMSprop, 1e-3),
    "sgd": (torch.optim.SGD, 1e-2),
    "adamw": (torch.optim.AdamW, 1e-3),
}
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
    "huber": nn.functional.huber_loss,
}
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

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))


@dataclass
class TrainSettings:
    """Everything `fit_arrays` needs besides the model and data; stored in model configs."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    loss: str = "mse"
    clip_norm: float | None = None
    clip_value: float | None = None
    early_stopping: int | None = None  # patience in epochs, on val_loss
    seed: int | None = None
    shuffle: bool = True
    progress: bool = True
    accelerator: str = "auto"
    log_dir: str | None = None

    def validate(self) -> TrainSettings:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SeqcastError(f"`epochs` must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SeqcastError(f"`batch_size` must be a positive integer, got {self.batch_size!r}")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        if self.lr is not None and not self.lr > 0:
            raise SeqcastError(f"`lr` must be a positive number, got {self.lr!r}")
        for name in ("clip_norm", "clip_value"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SeqcastError(f"`{name}` must be a positive number, got {value!r}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise SeqcastError("give either `clip_norm` or `clip_value`, not both")
        return self


# -- data -------------------------------------------------------------------------------------


def as_tensor(a: Any, name: str) -> Tensor:
    """numpy / torch / nested lists -> float32 tensor (float64 stays float64)."""
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    if not t.is_floating_point():
        t = t.float()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if t.dim() < 2:
        raise SeqcastError(f"`{name}` must have a batch axis; got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise SeqcastError(f"`{name}` contains NaN; fill or drop missing values before training")
    return t


class _Batches(torch.utils.data.IterableDataset):
    """Whole batches cut from in-memory tensors by index: one gather per batch, no collate."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int | None):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else seed)
        if seed is None:
            self.generator.seed()

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield (
                    self.x[start : start + self.batch_size],
                    self.y[start : start + self.batch_size],
                )
            else:
                idx = order[start : start + self.batch_size]
                yield self.x[idx], self.y[idx]


def _loader(x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int | None):
    return torch.utils.data.DataLoader(_Batches(x, y, batch_size, shuffle, seed), batch_size=None)


# -- the Lightning module ---------------------------------------------------------------------


def _lightning():
    import lightning.pytorch as pl  # imported on first fit: predict and load never pay for it

    return pl


def _make_module(model: nn.Module, settings: TrainSettings, metrics: dict[str, Callable]):
    pl = _lightning()

    class SeqcastModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.loss_fn = LOSSES[settings.loss]

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)

        def _shared(self, batch: tuple[Tensor, Tensor], prefix: str) -> Tensor:
            x, y = batch
            pred = self.model(x)
            if pred.shape != y.shape:
                pred = pred.reshape(y.shape) if pred.numel() == y.numel() else pred
            loss = self.loss_fn(pred, y)
            size = x.shape[0]
            self.log(
                f"{prefix}loss", loss, on_step=False, on_epoch=True, batch_size=size, prog_bar=True
            )
            for name, fn in metrics.items():
                self.log(
                    f"{prefix}{name}",
                    fn(y, pred.detach()),
                    on_step=False,
                    on_epoch=True,
                    batch_size=size,
                )
            return loss

        def training_step(self, batch, batch_idx):
            return self._shared(batch, "")

        def validation_step(self, batch, batch_idx):
            return self._shared(batch, "val_")

        def configure_optimizers(self):
            cls, default_lr = OPTIMIZERS[settings.optimizer]
            return cls(self.model.parameters(), lr=settings.lr or default_lr)

    return SeqcastModule()


def _history_callback(history: History):
    pl = _lightning()
    import time

    class Recorder(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            history.seconds_per_epoch.append(time.perf_counter() - self.start)
            for key, value in trainer.callback_metrics.items():
                history.history.setdefault(key, []).append(float(value))

    return Recorder()


def _best_weights_callback(patience: int):
    """Early stopping on val_loss that restores the best epoch's weights at the end."""
    pl = _lightning()

    class RestoreBest(pl.callbacks.EarlyStopping):
        def __init__(self) -> None:
            super().__init__(monitor="val_loss", patience=patience, mode="min")
            self.best_state: dict[str, Tensor] | None = None
            self.best_value = math.inf

        def on_validation_end(self, trainer, module):
            value = trainer.callback_metrics.get("val_loss")
            if value is not None and float(value) < self.best_value:
                self.best_value = float(value)
                self.best_state = copy.deepcopy(module.model.state_dict())
            super().on_validation_end(trainer, module)

        def on_train_end(self, trainer, module):
            if self.best_state is not None:
                module.model.load_state_dict(self.best_state)

    return RestoreBest()


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


def fit_arrays(
    model: nn.Module,
    x: Any,
    y: Any,
    settings: TrainSettings,
    validation_data: tuple[Any, Any] | None = None,
    metrics: Sequence[str | Callable] | None = None,
) -> History:
    """Train `model` on (x, y) arrays; returns the per-epoch history. The model is left in
    eval mode on the CPU-or-GPU device it was trained on."""
    settings.validate()
    metric_map = resolve_metrics(metrics)
    x, y = as_tensor(x, "X"), as_tensor(y, "y")
    if len(x) != len(y):
        raise SeqcastError(f"X has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise SeqcastError("no training samples: X is empty")
    pl = _lightning()
    with _quiet_lightning():
        if settings.seed is not None:
            pl.seed_everything(settings.seed, workers=True, verbose=False)
        module = _make_module(model, settings, metric_map)
        history = History()
        callbacks = [_history_callback(history)]
        val_loader = None
        if validation_data is not None:
            xv, yv = as_tensor(validation_data[0], "X_val"), as_tensor(validation_data[1], "y_val")
            val_loader = _loader(xv, yv, max(settings.batch_size, 256), False, None)
            if settings.early_stopping:
                callbacks.append(_best_weights_callback(settings.early_stopping))
        elif settings.early_stopping:
            raise SeqcastError("early stopping watches val_loss: give validation data")
        trainer = pl.Trainer(
            max_epochs=settings.epochs,
            accelerator=settings.accelerator,
            devices=1,
            logger=_logger(settings.log_dir),
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=settings.progress,
            num_sanity_val_steps=0,
            gradient_clip_val=settings.clip_norm or settings.clip_value,
            gradient_clip_algorithm="value" if settings.clip_value else "norm",
            callbacks=callbacks,
            default_root_dir=settings.log_dir,
        )
        train_loader = _loader(x, y, settings.batch_size, settings.shuffle, settings.seed)
        trainer.fit(module, train_loader, val_loader)
    model.eval()
    return history


def _logger(log_dir: str | None):
    if log_dir is None:
        return False
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(log_dir, name="seqcast")


# -- inference without a trainer ----------------------------------------------------------------


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def predict_arrays(model: nn.Module, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for x, batched, in eval mode and without gradients."""
    x = as_tensor(x, "X")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        parts = [
            model(x[i : i + batch_size].to(device, dtype)).cpu()
            for i in range(0, len(x), batch_size)
        ]
    model.train(was_training)
    return torch.cat(parts).numpy()


def evaluate_arrays(
    model: nn.Module,
    x: Any,
    y: Any,
    loss: str = "mse",
    metrics: Sequence[str | Callable] | None = None,
) -> dict[str, float]:
    y_true = as_tensor(y, "y")
    pred = torch.as_tensor(predict_arrays(model, x))
    if pred.shape != y_true.shape and pred.numel() == y_true.numel():
        pred = pred.reshape(y_true.shape)
    y_true = y_true.to(pred.dtype)
    out = {"loss": float(LOSSES[check_choice("loss", loss, LOSSES)](pred, y_true))}
    for name, fn in resolve_metrics(metrics).items():
        out[name] = float(fn(y_true, pred))
    return out
