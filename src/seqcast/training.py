"""Training: the one loop behind `Sequential.fit`, `Forecaster.fit`, the ensemble members
and `seqcast.impute`.

`fit_arrays(model, X, Y, settings, ...)` is the single entry point and `TrainSettings` the one
list of training settings (`TrainSettings.from_kwargs` / `.replace` check names against it).
Batches are cut from whole tensors by index (`_Batches`: no per-sample Python, no collate),
the same seed gives the same numbers on CPU, and nothing is written to disk (no
`lightning_logs`, no checkpoints) unless a `log_dir` is given.

Two engines run the same recipe (`TrainSettings.trainer`): the same batches, optimizer,
learning-rate schedule, clipping, early stopping with best-weight restore, and per-epoch
report (`on_epoch_end` and an INFO line on the "seqcast.training" logger).

- "lean" (the default on one device): a plain PyTorch loop. The models seqcast trains are small
  and their steps short (about 1 to 3 ms for the notes' LSTM at batch 32), and Lightning's
  per-step bookkeeping measured about 1.4 ms a step on top: most of an epoch. Adam and AdamW
  use torch's fused single-kernel update (4x faster than the per-tensor loop on these models).
- "lightning": Lightning's `Trainer`, for what it does that the lean loop does not: CSV logs
  in a `log_dir`, other accelerators, several devices or nodes (`devices`, `num_nodes`,
  `strategy`) and Lightning callbacks. "auto" picks it when any of those is asked for.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
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
#: Learning-rate schedules (`TrainSettings.schedule`). "onecycle" and "cosine" step after every
#: batch over the whole run (epochs x batches per epoch), "plateau" after every epoch.
SCHEDULES = ("onecycle", "cosine", "plateau")
PER_BATCH_SCHEDULES = ("onecycle", "cosine")
#: Keras' names for settings: `fit(..., verbose=False)` is `progress=False`.
SETTING_ALIASES = {"verbose": "progress"}

log = logging.getLogger(__name__)  # "seqcast.training": one INFO line per epoch with `progress`

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
    trainer: str = "auto"  # "lean" | "lightning" | "auto" (see the module docstring)
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
        if self.lr is not None and not self.lr > 0:
            raise SeqcastError(f"`lr` must be a positive number, got {self.lr!r}")
        for name in ("clip_norm", "clip_value"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SeqcastError(f"`{name}` must be a positive number, got {value!r}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise SeqcastError("give either `clip_norm` or `clip_value`, not both")
        if self.early_stopping is not None:
            _check_count("early_stopping", self.early_stopping)  # 0: off, as None
        self._validate_schedule()
        check_choice("trainer", self.trainer, TRAINERS)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)
        _check_positive_int("num_nodes", self.num_nodes)
        if isinstance(self.devices, int) and not isinstance(self.devices, bool):
            if self.devices < 1 and self.devices != -1:
                raise SeqcastError(f"`devices` must be a positive integer, -1, a list or a "
                                   f"string, got {self.devices!r}")  # fmt: skip
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
        if not 0 < self.pct_start < 1:
            raise SeqcastError(f"`pct_start` must be in (0, 1), got {self.pct_start!r}")
        if not 0 < self.lr_factor < 1:
            raise SeqcastError(f"`lr_factor` must be in (0, 1), got {self.lr_factor!r}")
        if not self.min_lr >= 0:
            raise SeqcastError(f"`min_lr` must be 0 or more, got {self.min_lr!r}")
        _check_count("lr_patience", self.lr_patience)

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


# -- the recipe both engines follow --------------------------------------------------------------


def loss_function(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable:
    return loss if callable(loss) else LOSSES[loss]


def _base_lr(settings: TrainSettings) -> float:
    return settings.lr or OPTIMIZERS[settings.optimizer][1]


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    cls, _ = OPTIMIZERS[settings.optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    options: dict[str, Any] = {}
    if settings.optimizer in ("adam", "keras_adam", "adamw") and all(
        p.dtype in (torch.float32, torch.float64) and p.device.type in ("cpu", "cuda")
        for p in params
    ):
        options["fused"] = True  # one kernel for all parameters instead of a loop over them
    return cls(params, lr=_base_lr(settings), **options)


def _scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int):
    """The torch scheduler `settings.schedule` names (None for a constant rate). "onecycle"
    and "cosine" span every step of the run, stopped early or not, so the rate they reach
    at step k does not depend on the patience."""
    lr_scheduler = torch.optim.lr_scheduler
    total = settings.epochs * steps_per_epoch
    if settings.schedule == "onecycle":
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=_base_lr(settings), total_steps=total, pct_start=settings.pct_start
        )
    if settings.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=settings.min_lr)
    if settings.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=settings.lr_factor, patience=settings.lr_patience,
            min_lr=settings.min_lr,
        )  # fmt: skip
    return None


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
    *,
    callbacks: Sequence[Any] | None = None,
    on_epoch_end: EpochHook | None = None,
) -> History:
    """Train `model` on (x, y) arrays; returns the per-epoch history. The model is left in
    eval mode, on the device it trained on after the lean engine and on the CPU after
    Lightning (its teardown moves the model there).

    `callbacks`: Lightning callbacks (they need the Lightning engine, which "auto" then
    picks). `on_epoch_end(epoch, values)`: called after every epoch by either engine, epoch
    from 0, values that epoch's History entries; a progress bar attaches here."""
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
    callbacks = list(callbacks or [])
    if settings.engine(bool(callbacks)) == "lean":
        if callbacks:
            raise SeqcastError(
                "`callbacks` are Lightning callbacks and need trainer='lightning' (or 'auto'); "
                "for per-epoch values on the lean loop use `on_epoch_end`"
            )
        history = _fit_lean(model, x, y, settings, val, metric_map, on_epoch_end)
    else:
        history = _fit_lightning(model, x, y, settings, val, metric_map, callbacks, on_epoch_end)
    model.eval()
    return history


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


def _clipper(model: nn.Module, settings: TrainSettings) -> Callable[[], Any] | None:
    """Gradient clipping as one call per step (None: no clipping)."""
    params = list(model.parameters())  # a list: a generator would be spent after one step
    if settings.clip_norm:
        return functools.partial(nn.utils.clip_grad_norm_, params, settings.clip_norm)
    if settings.clip_value:
        return functools.partial(nn.utils.clip_grad_value_, params, settings.clip_value)
    return None


def _lean_loop(model, x, y, settings, val, metric_map, device, on_epoch_end) -> History:
    """Shuffle, step, clip, schedule, validate, report, stop early."""
    if settings.seed is not None:
        _seed_everything(settings.seed)
    model.to(device)
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
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        model.train()
        train = _EpochMeans()
        # per step only what the settings ask for: ~1 ms steps leave no room for more
        for xb, yb in batches:
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
            train.count += size
            train.add("loss", loss, size)
            for name, fn in metric_map.items():
                train.add(name, fn(yb, pred.detach()), size)
        values = train.means()
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
            break
    if best is not None:
        best.restore(model)
    return history


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


# -- the Lightning engine -----------------------------------------------------------------------


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


def _fit_lightning(model, x, y, settings, val, metric_map, callbacks, on_epoch_end) -> History:
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
        train = _Batches(x, y, settings.batch_size, settings.shuffle, settings.seed, shard=True)
        val_loader = None
        if val is not None:
            val_loader = _loader(_Batches(*val, _val_batch_size(settings), False, None, shard=True))
        monitor = _monitor(val is not None)
        module = _make_module(model, settings, metric_map, train.__len__, monitor)
        history = History()
        best = _best_weights(settings, val is not None)
        checkpoints = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
        trainer = pl.Trainer(
            max_epochs=settings.epochs,
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
            callbacks=[_epoch_callback(history, settings, best, on_epoch_end), *callbacks],
            default_root_dir=settings.log_dir,
        )
        trainer.fit(module, _loader(train), val_loader)
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
