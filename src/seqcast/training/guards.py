"""The divergence guard of both engines: stop a run whose loss becomes non-finite or explodes,
and leave the model with the weights of its last good epoch.

The rule (checked at the end of every epoch, and before a checkpoint is written):

- any step's training loss is NaN or infinite, or any weight is after the epoch's last step
  (its gradients were non-finite);
- or the epoch's mean step loss is more than `divergence_factor` (default 1e4) times the loss
  of the run's first step, the one loss computed before any update. Noise between batches
  moves a loss by a few times, a learning rate far too high by orders of magnitude at once;
  the mean of an epoch rather than one step keeps a single odd batch from tripping it. A run
  whose first loss is 0 has nothing to compare with and gets only the non-finite check.

Per step the guard only keeps the detached loss (no device sync); the checks run once an
epoch. The good weights are copied at the start and after every epoch that passes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqcast.errors import TrainingDivergedError


class _DivergenceGuard:
    def __init__(self, model: nn.Module, factor: float | None, lr: float | None) -> None:
        self.model, self.factor, self.lr = model, factor, lr
        self.first_loss: float | None = None  # the run's first step loss
        self.losses: list[Tensor] = []  # this epoch's step losses, detached
        self.good_epochs = 0
        self.keep_good_weights()

    def keep_good_weights(self) -> None:
        self.good = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def start_epoch(self) -> None:
        self.losses = []

    def record(self, loss: Tensor) -> None:
        self.losses.append(loss.detach())

    def check(self, epoch: int, epochs: int, steps: int) -> None:
        """Raise TrainingDivergedError (after restoring the good weights) when the steps seen
        so far in `epoch` (from 0) break the rule; otherwise keep the weights as good."""
        if not self.losses:
            return
        losses = torch.stack(self.losses).double().cpu()  # (steps so far,)
        if self.first_loss is None:
            self.first_loss = float(losses[0])
        bad = ~torch.isfinite(losses)
        limit = math.inf
        if self.factor is not None and self.first_loss and math.isfinite(self.first_loss):
            limit = self.factor * self.first_loss
        if bad.any():
            step = int(bad.nonzero()[0])
            what = f"the loss became {float(losses[step]):.4g}"
        elif float(losses.mean()) > limit:
            step = int((losses > limit).nonzero()[0])  # the mean is past it: some step is
            what = (
                f"the loss reached {float(losses[step]):.4g}, over {self.factor:,g} times "
                f"its first value {self.first_loss:.4g}"
            )
        elif not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            step = len(losses) - 1
            what = "the gradients became non-finite (the weights are NaN or infinite)"
        else:
            self.good_epochs = epoch if len(self.losses) < steps else epoch + 1
            self.keep_good_weights()
            return
        self.model.load_state_dict(self.good)
        raise TrainingDivergedError(self.message(epoch, epochs, step, steps, what))

    def message(self, epoch: int, epochs: int, step: int, steps: int, what: str) -> str:
        lr = "" if self.lr is None else f" ({self.lr:g})"
        kept = f"epoch {self.good_epochs}" if self.good_epochs else "the start, before training"
        return (
            f"training diverged at epoch {epoch + 1} of {epochs}, step {step + 1} of {steps}: "
            f"{what}; the learning rate{lr} is likely too high, or the data unscaled: lower "
            f"`lr`, scale the series, or clip gradients (clip_norm); the model keeps the "
            f"weights of {kept}"
        )

    def state(self) -> dict:
        """What a checkpoint keeps of the guard (the good weights are the checkpoint's own)."""
        return {
            "first_loss": self.first_loss,
            "good_epochs": self.good_epochs,
            "losses": torch.stack(self.losses) if self.losses else None,
        }

    def load_state(self, state: dict) -> None:
        self.first_loss, self.good_epochs = state["first_loss"], state["good_epochs"]
        losses = state["losses"]
        device = next(self.model.parameters(), torch.empty(0)).device
        self.losses = [] if losses is None else list(losses.to(device).unbind())
        self.keep_good_weights()
