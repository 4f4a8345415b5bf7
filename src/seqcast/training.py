"""Training: the one `fit` behind `Sequential.fit` and `Forecaster.fit`.

`fit_arrays(model, X, Y, ...)` is the single entry point. Batches are cut from whole tensors by
index (no per-sample Python, no collate), the same seed gives the same numbers on CPU, and
nothing is written to disk (no `lightning_logs`, no checkpoints) unless a `log_dir` is given.

Two engines run the same loop (`TrainSettings.trainer`):

- "lean" (the default on one device): a plain PyTorch loop. The models seqcast trains are small
  and their steps short (about 1 to 3 ms for the notes' LSTM at batch 32), and Lightning's
  per-step bookkeeping measured about 1.4 ms a step on top: most of an epoch. Adam and AdamW
  use torch's fused single-kernel update (4x faster than the per-tensor loop on these models).
- "lightning": Lightning's `Trainer`, for what it does that the lean loop does not: a
  `log_dir` (CSV logs), other accelerators, and DDP across processes and machines. "auto"
  picks it when a `log_dir` is given or the accelerator is not cpu / cuda / gpu / auto.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqcast import metrics as metric_fns
from seqcast.errors import SeqcastError, check_choice
from seqcast.layers import _compiled


class KerasAdam(torch.optim.Adam):
    """torch's Adam (fused kernel included) making Keras' update: epsilon 1e-7 on the
    uncorrected sqrt(v).

    Keras steps `p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`; torch steps
    `p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`. They agree when torch's eps at
    step t is `eps / sqrt(1 - b2^t)`, which `step` sets: 3.2e-6 at step 1, 2.3e-7 after the
    first epoch of the handson tasks, 1e-7 in the long run, against torch's default 1e-8. On
    the handson models most first gradients are 1e-6 to 1e-5, so torch's default takes almost
    full-size first steps where Keras takes steps tens of percent shorter.
    """

    def __init__(self, params, lr: float = 1e-3, eps: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(params, lr=lr, eps=eps, **kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("keras_eps", group["eps"])
        group.setdefault("keras_step", 0)  # Keras' `iterations`, one count for the group

    def prepare_step(self) -> None:
        """Count the step and set this step's torch eps (also called by `_FusedAdamStep`)."""
        for group in self.param_groups:
            group["keras_step"] += 1
            beta2 = group["betas"][1]
            group["eps"] = group["keras_eps"] / math.sqrt(1 - beta2 ** group["keras_step"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        self.prepare_step()
        return super().step(closure)


#: name -> (optimizer, default lr). "keras_adam" makes Keras' Adam update (`KerasAdam`: epsilon
#: 1e-7 on the uncorrected sqrt(v)), so a run from Keras' weights and batches follows Keras' step
#: for step; over many seeds it reaches the same mean accuracy as torch's "adam". RMSprop takes
#: Keras' defaults (rho 0.9, epsilon 1e-7; torch's are 0.99 and 1e-8), since the notes' recipes
#: that use it were tuned with Keras.
OPTIMIZERS = {
    "adam": (torch.optim.Adam, 1e-3),
    "keras_adam": (KerasAdam, 1e-3),
    "rmsprop": (functools.partial(torch.optim.RMSprop, alpha=0.9, eps=1e-7), 1e-3),
    "sgd": (torch.optim.SGD, 1e-2),
    "adamw": (torch.optim.AdamW, 1e-3),
}
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
    "huber": nn.functional.huber_loss,
}
TRAINERS = ("auto", "lean", "lightning")
LEAN_ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
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
    # a name from LOSSES, or a callable loss(pred, y) -> scalar tensor: the hook for losses
    # that need more than the target (masks, per-sample scales: see seqcast.ensemble)
    loss: str | Callable[[Tensor, Tensor], Tensor] = "mse"
    clip_norm: float | None = None
    clip_value: float | None = None
    early_stopping: int | None = None  # patience in epochs, on val_loss
    seed: int | None = None
    shuffle: bool = True
    progress: bool = True
    accelerator: str = "auto"
    log_dir: str | None = None
    trainer: str = "auto"  # "lean" | "lightning" | "auto" (see the module docstring)
    # CPU threads while training: torch's intra-op threads and those of the LSTM-stack
    # wavefront (`_compiled.lstm_stack`). None: see _threads_for, and the wavefront may use
    # every core this process may use.
    threads: int | None = None

    def validate(self) -> TrainSettings:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SeqcastError(f"`epochs` must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SeqcastError(f"`batch_size` must be a positive integer, got {self.batch_size!r}")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not callable(self.loss):
            check_choice("loss", self.loss, LOSSES)
        if self.lr is not None and not self.lr > 0:
            raise SeqcastError(f"`lr` must be a positive number, got {self.lr!r}")
        for name in ("clip_norm", "clip_value"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SeqcastError(f"`{name}` must be a positive number, got {value!r}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise SeqcastError("give either `clip_norm` or `clip_value`, not both")
        check_choice("trainer", self.trainer, TRAINERS)
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise SeqcastError(f"`threads` must be a positive integer, got {self.threads!r}")
        return self

    def engine(self) -> str:
        """The engine "auto" resolves to: lightning for logs and other accelerators."""
        if self.trainer != "auto":
            return self.trainer
        lean_ok = self.log_dir is None and self.accelerator in LEAN_ACCELERATORS
        return "lean" if lean_ok else "lightning"


# -- data -------------------------------------------------------------------------------------


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
            self.loss_fn = loss_function(settings.loss)

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
    x, y = as_tensor(x, "X"), as_tensor(y, "y", min_dims=1)
    if len(x) != len(y):
        raise SeqcastError(f"X has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise SeqcastError("no training samples: X is empty")
    if validation_data is None and settings.early_stopping:
        raise SeqcastError("early stopping watches val_loss: give validation data")
    val = None
    if validation_data is not None:
        val = (
            as_tensor(validation_data[0], "X_val"),
            as_tensor(validation_data[1], "y_val", min_dims=1),
        )
    if settings.engine() == "lean":
        history = _fit_lean(model, x, y, settings, val, metric_map)
    else:
        history = _fit_lightning(model, x, y, settings, val, metric_map)
    model.eval()
    return history


def _fit_lightning(model, x, y, settings, val, metric_map) -> History:
    pl = _lightning()
    with _quiet_lightning():
        if settings.seed is not None:
            pl.seed_everything(settings.seed, workers=True, verbose=False)
        module = _make_module(model, settings, metric_map)
        history = History()
        callbacks = [_history_callback(history)]
        val_loader = None
        if val is not None:
            val_loader = _loader(*val, _val_batch_size(settings), False, None)
            if settings.early_stopping:
                callbacks.append(_best_weights_callback(settings.early_stopping))
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
    return history


def _val_batch_size(settings: TrainSettings) -> int:
    return max(settings.batch_size, 256)


# -- the lean engine ----------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    """What Lightning's seed_everything seeds: Python's, numpy's and torch's generators."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    cls, default_lr = OPTIMIZERS[settings.optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    options: dict[str, Any] = {}
    if settings.optimizer in ("adam", "keras_adam", "adamw") and all(
        p.dtype in (torch.float32, torch.float64) and p.device.type in ("cpu", "cuda")
        for p in params
    ):
        options["fused"] = True  # one kernel for all parameters instead of a loop over them
    return cls(params, lr=settings.lr or default_lr, **options)


class _FusedAdamStep:
    """`optimizer.step()` of a fused torch Adam or AdamW (`KerasAdam` included) as torch's own
    fused path computes it, one `torch._fused_adam_` call per parameter group (the same
    numbers, bit for bit: test), without torch.optim's per-step Python: profiler ranges, step
    hooks, state look-ups, grouping by device and dtype. In the lean loop of a small CPU model
    torch's step and `zero_grad` measured ~200 us a step, this step and `zero_grad` ~60.

    Whatever it does not cover goes to `optimizer.step()`: the first step (which creates the
    state), a parameter without a gradient, amsgrad, capturable, differentiable, a tensor
    learning rate or betas, a group on several devices or dtypes, and registered step hooks.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.groups: list[tuple] | None = None
        self.checked = False

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def __call__(self) -> None:
        if self.groups is None or any(p.grad is None for p in self.params):
            self.optimizer.step()
            if not self.checked:
                self.groups, self.checked = self._groups(), True
            return
        prepare = getattr(self.optimizer, "prepare_step", None)
        if prepare is not None:
            prepare()
        for group, params, exp_avgs, exp_avg_sqs, steps, update in self.groups:
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            update(
                params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps,
                amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=group["maximize"], grad_scale=None, found_inf=None,
            )  # fmt: skip

    def _groups(self) -> list[tuple] | None:
        """Per group: (group, params, exp_avgs, exp_avg_sqs, steps, fused op), or None when
        this optimizer needs torch's own step."""
        opt = self.optimizer
        module = sys.modules.get("torch.optim.optimizer")
        hooks = [
            getattr(opt, "_optimizer_step_pre_hooks", None),
            getattr(opt, "_optimizer_step_post_hooks", None),
            getattr(module, "_global_optimizer_pre_hooks", None),
            getattr(module, "_global_optimizer_post_hooks", None),
        ]
        if (
            not isinstance(opt, torch.optim.Adam)
            or any(h is None or len(h) for h in hooks)
            or not hasattr(torch, "_fused_adam_")
        ):
            return None
        groups = []
        for group in opt.param_groups:
            params = group["params"]
            states = [opt.state.get(p, {}) for p in params]
            if (
                not group.get("fused")
                or group.get("amsgrad") or group.get("capturable") or group.get("differentiable")
                or any(isinstance(v, Tensor) for v in (group["lr"], *group["betas"]))
                or len({(p.device, p.dtype) for p in params}) > 1
                or not all({"step", "exp_avg", "exp_avg_sq"} <= s.keys() for s in states)
            ):  # fmt: skip
                return None
            decoupled = group.get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW))
            update = torch._fused_adamw_ if decoupled else torch._fused_adam_
            groups.append((
                group, params, [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states], [s["step"] for s in states], update,
            ))  # fmt: skip
        return groups


def _match(pred: Tensor, y: Tensor) -> Tensor:
    """Predictions shaped like the targets when only the layout differs ((B, 1) vs (B,))."""
    if pred.shape != y.shape and pred.numel() == y.numel():
        return pred.reshape(y.shape)
    return pred


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


def _batches(x: Tensor, y: Tensor, size: int, order: Tensor | None) -> Iterator[tuple]:
    for start in range(0, len(x), size):
        if order is None:
            yield x[start : start + size], y[start : start + size]
        else:
            idx = order[start : start + size]  # index_select: half the cost of x[idx] here
            yield x.index_select(0, idx), y.index_select(0, idx)


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


def _fit_lean(model, x, y, settings, val, metric_map) -> History:
    """The training loop on one device, on `_threads_for` intra-op threads."""
    device = _lean_device(settings.accelerator)
    threads = _threads_for(model, settings, device)
    with _intra_op_threads(threads), _compiled.using_stack_threads(settings.threads):
        return _lean_loop(model, x, y, settings, val, metric_map, device)


def _lean_loop(model, x, y, settings, val, metric_map, device) -> History:
    """Shuffle, step, clip, validate, stop early."""
    if settings.seed is not None:
        _seed_everything(settings.seed)
    model.to(device)
    x, y = x.to(device), y.to(device)
    if val is not None:
        val = val[0].to(device), val[1].to(device)
    loss_fn = loss_function(settings.loss)
    optimizer = _optimizer(model, settings)
    fused_step = _FusedAdamStep(optimizer)
    generator = torch.Generator()
    if settings.seed is None:
        generator.seed()
    else:
        generator.manual_seed(settings.seed)
    history = History()
    best_value, best_state, waited = math.inf, None, 0
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        model.train()
        train = _EpochMeans()
        order = torch.randperm(len(x), generator=generator).to(device) if settings.shuffle else None
        for xb, yb in _batches(x, y, settings.batch_size, order):
            pred = _match(model(xb), yb)
            loss = loss_fn(pred, yb)
            fused_step.zero_grad()
            loss.backward()
            if settings.clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
            elif settings.clip_value:
                nn.utils.clip_grad_value_(model.parameters(), settings.clip_value)
            fused_step()
            size = len(xb)
            train.count += size
            train.add("loss", loss, size)
            for name, fn in metric_map.items():
                train.add(name, fn(yb, pred.detach()), size)
        values = train.means()
        if val is not None:
            values |= _validate(model, *val, loss_fn, metric_map, _val_batch_size(settings))
        history.seconds_per_epoch.append(time.perf_counter() - start)
        for key, value in values.items():
            history.history.setdefault(key, []).append(value)
        if settings.progress:
            _print_epoch(epoch, settings.epochs, values, history.seconds_per_epoch[-1])
        if settings.early_stopping and val is not None:
            if values["val_loss"] < best_value:
                best_value, waited = values["val_loss"], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= settings.early_stopping:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def loss_function(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable:
    return loss if callable(loss) else LOSSES[loss]


def _validate(model, xv, yv, loss_fn, metric_map, batch_size) -> dict[str, float]:
    model.eval()
    means = _EpochMeans()
    with torch.no_grad():
        for xb, yb in _batches(xv, yv, batch_size, None):
            pred = _match(model(xb), yb)
            size = len(xb)
            means.count += size
            means.add("loss", loss_fn(pred, yb), size)
            for name, fn in metric_map.items():
                means.add(name, fn(yb, pred), size)
    return means.means("val_")


def _print_epoch(epoch: int, epochs: int, values: dict[str, float], seconds: float) -> None:
    shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
    print(f"epoch {epoch + 1}/{epochs}  {shown}  {seconds:.2f}s", file=sys.stderr, flush=True)


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
    y_true = as_tensor(y, "y", min_dims=1)
    pred = torch.as_tensor(predict_arrays(model, x))
    if pred.shape != y_true.shape and pred.numel() == y_true.numel():
        pred = pred.reshape(y_true.shape)
    y_true = y_true.to(pred.dtype)
    out = {"loss": float(LOSSES[check_choice("loss", loss, LOSSES)](pred, y_true))}
    for name, fn in resolve_metrics(metrics).items():
        out[name] = float(fn(y_true, pred))
    return out
