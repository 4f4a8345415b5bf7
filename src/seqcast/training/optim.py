"""Optimizers and what steps them: `KerasAdam`, the `OPTIMIZERS` table, the optimizer and
learning-rate schedule a `TrainSettings` names, gradient clipping, and `_FusedAdamStep` (Adam's
step without torch.optim's per-step Python). Both engines build their optimizer here.

No runtime import of `seqcast.training.settings`: the settings check their optimizer name
against `OPTIMIZERS`, so the dependency points from settings to here.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from seqcast.training.settings import TrainSettings


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


def _clipper(model: nn.Module, settings: TrainSettings) -> Callable[[], Any] | None:
    """Gradient clipping as one call per step (None: no clipping)."""
    params = list(model.parameters())  # a list: a generator would be spent after one step
    if settings.clip_norm:
        return functools.partial(nn.utils.clip_grad_norm_, params, settings.clip_norm)
    if settings.clip_value:
        return functools.partial(nn.utils.clip_grad_value_, params, settings.clip_value)
    return None


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
        if self.groups is None or self._hooked() or any(p.grad is None for p in self.params):
            self.optimizer.step()
            if not self.checked:
                self.groups, self.checked = None if self._hooked() else self._groups(), True
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

    def _hooked(self) -> bool:
        """Whether step hooks are registered now (on this optimizer or globally): asked at
        every step, so a hook registered after the first step still runs."""
        module = sys.modules.get("torch.optim.optimizer")
        hooks = (
            getattr(self.optimizer, "_optimizer_step_pre_hooks", None),
            getattr(self.optimizer, "_optimizer_step_post_hooks", None),
            getattr(module, "_global_optimizer_pre_hooks", None),
            getattr(module, "_global_optimizer_post_hooks", None),
        )
        return any(h is None or len(h) for h in hooks)

    def _groups(self) -> list[tuple] | None:
        """Per group: (group, params, exp_avgs, exp_avg_sqs, steps, fused op), or None when
        this optimizer needs torch's own step."""
        opt = self.optimizer
        if not isinstance(opt, torch.optim.Adam) or not hasattr(torch, "_fused_adam_"):
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
