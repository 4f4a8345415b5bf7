"""Training: the one loop behind `Sequential.fit`, `Forecaster.fit`, the ensemble members
and `seqcast.impute`.

`fit_arrays(model, X, Y, settings, ...)` is the single entry point and `TrainSettings` the one
list of training settings (`TrainSettings.from_kwargs` / `.replace` check names against it).
Batches are cut from whole tensors by index (`_Batches`: no per-sample Python, no collate),
the same seed gives the same numbers on CPU, and nothing is written to disk unless asked: CSV
logs with a `log_dir`, and with a `checkpoint_dir` the whole state of the run in
`<checkpoint_dir>/checkpoint.safetensors`, replaced atomically every epoch (or every
`checkpoint_every` steps on the lean engine), from which `resume=True` continues. A run whose
loss turns non-finite or explodes stops with `TrainingDivergedError` and keeps its last good
weights.

Two engines run the same recipe (`TrainSettings.trainer`): the same batches, optimizer,
learning-rate schedule, clipping, early stopping with best-weight restore, and per-epoch
report (`on_epoch_end` and an INFO line on the "seqcast.training" logger), divergence guard
and checkpoint file.

- "lean" (the default on one device): a plain PyTorch loop. The models seqcast trains are small
  and their steps short (about 1 to 3 ms for the notes' LSTM at batch 32), and Lightning's
  per-step bookkeeping measured about 1.4 ms a step on top: most of an epoch. Adam and AdamW
  use torch's fused single-kernel update (4x faster than the per-tensor loop on these models).
- "lightning": Lightning's `Trainer`, for what it does that the lean loop does not: CSV logs
  in a `log_dir`, other accelerators, several devices or nodes (`devices`, `num_nodes`,
  `strategy`) and Lightning callbacks. "auto" picks it when any of those is asked for. With
  `groups` (one series id per sample; `Forecaster.fit` gives them) each series trains whole
  on one process; `rank()` and `is_global_zero()` tell the code after `fit` which process
  it runs in, so that one process writes.

One concept a module; dependencies point down (`optim`, `batches` and `guards` import no
sibling; `settings` < `checkpoints`, `recipe` < `loop`, `lightning_state` < `lightning` <
`fit`):

- `optim`: `KerasAdam`, `OPTIMIZERS`, optimizer and schedule construction, clipping, the fused
  Adam step.
- `settings`: `TrainSettings` (the one list), `History`, losses, metrics and their checks.
- `batches`: `as_tensor` and `_Batches`, the one batcher of both engines (sharded by series
  across processes under Lightning).
- `guards`: the divergence guard: non-finite or exploding loss, last good weights kept.
- `checkpoints`: the run's state to and from `checkpoint.safetensors` (atomic replace, resume
  on the same trajectory).
- `recipe`: what both engines do alike: seeding, per-epoch record and report, early stopping
  with best weights.
- `loop`: the lean engine.
- `lightning_state`: the guard and the checkpoints as one Lightning callback.
- `lightning`: the Lightning engine; `rank`, `is_global_zero`.
- `fit`: `fit_arrays` (checks and casts the inputs, picks the engine), `predict_arrays`,
  `evaluate_arrays`.

Everything is importable from `seqcast.training` itself. To patch a helper in a test, patch it
in the module that defines it (`seqcast.training.batches._rank_and_world`, say): the name
here is a copy, and the code that calls it looks it up in its own module.
"""

from seqcast.training.batches import _Batches as _Batches
from seqcast.training.batches import as_tensor
from seqcast.training.fit import evaluate_arrays, fit_arrays, predict_arrays
from seqcast.training.lightning import _make_module as _make_module
from seqcast.training.lightning import is_global_zero, rank
from seqcast.training.loop import SMALL_MODEL_PARAMETERS
from seqcast.training.loop import _intra_op_threads as intra_op_threads
from seqcast.training.optim import OPTIMIZERS, KerasAdam
from seqcast.training.optim import _FusedAdamStep as _FusedAdamStep
from seqcast.training.optim import _optimizer as _optimizer
from seqcast.training.recipe import EpochHook
from seqcast.training.settings import (
    LEAN_ACCELERATORS,
    LOSSES,
    METRICS,
    PER_BATCH_SCHEDULES,
    SCHEDULES,
    SETTING_ALIASES,
    TRAINERS,
    History,
    TrainSettings,
    loss_function,
    resolve_metrics,
)

__all__ = [
    "LEAN_ACCELERATORS",
    "LOSSES",
    "METRICS",
    "OPTIMIZERS",
    "PER_BATCH_SCHEDULES",
    "SCHEDULES",
    "SETTING_ALIASES",
    "SMALL_MODEL_PARAMETERS",
    "TRAINERS",
    "EpochHook",
    "History",
    "KerasAdam",
    "TrainSettings",
    "as_tensor",
    "evaluate_arrays",
    "fit_arrays",
    "intra_op_threads",
    "is_global_zero",
    "loss_function",
    "predict_arrays",
    "rank",
    "resolve_metrics",
]
