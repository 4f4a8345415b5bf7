"""The entry points: `fit_arrays` checks its inputs and picks the engine; `predict_arrays`
and `evaluate_arrays` run a model without a trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError, check_choice
from seqcast.training.batches import as_tensor
from seqcast.training.lightning import _fit_lightning
from seqcast.training.loop import _fit_lean
from seqcast.training.recipe import EpochHook
from seqcast.training.settings import (
    LOSSES,
    History,
    TrainSettings,
    loss_function,
    resolve_metrics,
)


def fit_arrays(
    model: nn.Module,
    x: Any,
    y: Any,
    settings: TrainSettings,
    validation_data: tuple[Any, Any] | None = None,
    metrics: Sequence[str | Callable] | None = None,
    *,
    callbacks: Sequence[Any] | None = None,
    on_epoch_end: EpochHook | None = None,
    groups: Any = None,
) -> History:
    """Train `model` on (x, y) arrays; returns the per-epoch history. The model is left in
    eval mode, on the device it trained on after the lean engine and on the CPU after
    Lightning (its teardown moves the model there).

    `callbacks`: Lightning callbacks (they need the Lightning engine, which "auto" then
    picks). `on_epoch_end(epoch, values)`: called after every epoch by either engine, epoch
    from 0, values that epoch's History entries; a progress bar attaches here. `groups`: one
    series id per sample; on several processes (Lightning) each series trains on one."""
    settings.validate()
    metric_map = resolve_metrics(metrics)
    val = None
    if y is None and isinstance(x, torch.utils.data.IterableDataset):
        _check_streamed(settings, validation_data)
    else:
        x, y, val = _checked_arrays(model, x, y, settings, validation_data)
    callbacks = list(callbacks or [])
    if settings.engine(bool(callbacks)) == "lean":
        if callbacks:
            raise SeqcastError(
                "`callbacks` are Lightning callbacks and need trainer='lightning' (or 'auto'); "
                "for per-epoch values on the lean loop use `on_epoch_end`"
            )
        history = _fit_lean(model, x, y, settings, val, metric_map, on_epoch_end)
    else:
        if settings.checkpoint_every is not None:
            raise SeqcastError(
                "`checkpoint_every` (steps) runs on the lean engine; the Lightning engine "
                "writes its checkpoint once an epoch: leave `checkpoint_every` unset"
            )
        history = _fit_lightning(
            model, x, y, settings, val, metric_map, callbacks, on_epoch_end, groups
        )
    model.eval()
    return history


def _checked_arrays(model, x, y, settings, validation_data) -> tuple:
    """(x, y, validation pair or None) as tensors in the model's dtype, checked."""
    x, y = _in_model_dtype(model, as_tensor(x, "X"), as_tensor(y, "y", min_dims=1))
    if len(x) != len(y):
        raise SeqcastError(f"X has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise SeqcastError("no training samples: X is empty")
    if validation_data is None and settings.early_stopping:
        raise SeqcastError("early stopping watches val_loss: give validation data")
    val = None
    if validation_data is not None:
        val = _in_model_dtype(
            model,
            as_tensor(validation_data[0], "X_val"),
            as_tensor(validation_data[1], "y_val", min_dims=1),
        )
    return x, y, val


def _check_streamed(settings: TrainSettings, validation_data: Any) -> None:
    """Training on batches streamed from disk (`seqcast.data.stream.WindowStream`: an
    IterableDataset of (x, y) batches with a length), on either engine; under Lightning's
    DDP each process streams its own parts."""
    if validation_data is not None or settings.early_stopping:
        raise SeqcastError(
            "training streamed from Parquet takes no validation data or early stopping; drop "
            "them (conformal intervals are still calibrated on held-out ends)"
        )
    if settings.checkpoint_dir is not None:
        raise SeqcastError(
            "checkpoints fingerprint in-memory training data; drop checkpoint_dir when "
            "training from Parquet parts"
        )


def _in_model_dtype(model: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
    """`tensors` in the dtype of the model's parameters, as `predict_arrays` runs them (a
    float64 array trains a float32 model in float32); a model without parameters takes them
    as they are."""
    dtype = next((p.dtype for p in model.parameters()), None)
    return tuple(t if dtype is None else t.to(dtype) for t in tensors)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def predict_arrays(model: nn.Module, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for x, batched, in eval mode and without gradients."""
    x = as_tensor(x, "X")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    # a model without parameters (a fixed function) takes the input's own dtype
    dtype = next((p.dtype for p in model.parameters()), x.dtype)
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
    loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
    metrics: Sequence[str | Callable] | None = None,
) -> dict[str, float]:
    y_true = as_tensor(y, "y", min_dims=1)
    pred = torch.as_tensor(predict_arrays(model, x))
    if pred.shape != y_true.shape and pred.numel() == y_true.numel():
        pred = pred.reshape(y_true.shape)
    y_true = y_true.to(pred.dtype)
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    out = {"loss": float(loss_function(loss)(pred, y_true))}
    for name, fn in resolve_metrics(metrics).items():
        out[name] = float(fn(y_true, pred))
    return out
