"""Training checkpoints: the whole state of a run in one file, so a killed run resumes on the
same trajectory (the same seed on CPU ends bit-identical to a run never stopped).

`<checkpoint_dir>/checkpoint.safetensors` holds every tensor (the model's weights, the
optimizer's moments, the best epoch's weights, the random generators' states, the batch-order
generator's) and, in the header's metadata, one JSON document with the rest: counters, history,
scheduler and optimizer settings, early-stopping state, and the run's fingerprint (model
layout, data, and the settings that shape the trajectory). Loading reads tensors and JSON only:
nothing in the file is executed. The file is replaced atomically (written to a temporary file
in the same directory, flushed to disk, then renamed over the old one), so a run killed at any
moment leaves the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor, nn

from seqcast.errors import CheckpointError
from seqcast.training.settings import PER_BATCH_SCHEDULES, History, TrainSettings

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT_VERSION = 1
_META_KEY = "seqcast_checkpoint"


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # as an ordinary file, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _pack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """`obj` as JSON, its tensors moved into `tensors` (tuples, int keys, arrays tagged)."""
    if isinstance(obj, Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _pack(v, tensors) for k, v in obj.items()}
        return {"__items__": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__items__" in obj:
        return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
    return {k: _unpack(v, tensors) for k, v in obj.items()}


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (nested dicts, lists, tuples, numbers, strings, tensors, arrays) as the
    checkpoint of `directory`, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    document = json.dumps({"format_version": FORMAT_VERSION, **_pack(state, tensors)})
    data = safetensors.torch.save(tensors, metadata={_META_KEY: document})
    path = directory / CHECKPOINT_FILE
    write_atomic(path, data)
    return path


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any]:
    """The state `save_checkpoint` wrote in `directory` (tensors on the CPU)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint to resume from: {path} does not exist; train once with "
            "`checkpoint_dir` set (without `resume`), or point `checkpoint_dir` at the run's folder"
        )
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            document = (f.metadata() or {})[_META_KEY]
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        state = json.loads(document)
    except (OSError, KeyError, ValueError, safetensors.SafetensorError) as e:
        raise CheckpointError(
            f"{path} is not a readable seqcast checkpoint ({type(e).__name__}: {e}); delete it "
            "to start again"
        ) from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state.get('format_version')!r}; this seqcast reads "
            f"format {FORMAT_VERSION}: resume with the version that wrote it, or start again"
        )
    return _unpack(state, tensors)


# -- what identifies a run -------------------------------------------------------------------

#: The settings that shape a run's trajectory: a checkpoint resumes only under the same ones.
#: `epochs` counts where a schedule spans the whole run; otherwise a finished run may be
#: resumed with more epochs.
TRAJECTORY_SETTINGS = (
    "batch_size", "optimizer", "lr", "loss", "clip_norm", "clip_value", "early_stopping",
    "schedule", "pct_start", "min_lr", "lr_factor", "lr_patience", "seed", "shuffle",
)  # fmt: skip


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()[:12]


def _crc(t: Tensor) -> int:
    return zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def fingerprint(
    model: nn.Module, data: tuple[Tensor | None, ...], settings: TrainSettings
) -> dict[str, str]:
    """What a checkpoint must agree on to be resumed: the model's class, configuration and
    weight layout, the data (shapes, dtypes, a CRC of the bytes), the trajectory's settings."""
    config = getattr(model, "get_config", None)
    try:
        config = json.dumps(config(), sort_keys=True) if callable(config) else ""
    except (TypeError, ValueError):
        config = ""
    layout = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    out = {
        "model": f"{type(model).__qualname__} {_digest(config, layout)}",
        "data": _digest(
            [None if t is None else (tuple(t.shape), str(t.dtype), _crc(t)) for t in data]
        ),  # fmt: skip
    }
    for name in TRAJECTORY_SETTINGS:
        value = getattr(settings, name)
        out[name] = getattr(value, "__qualname__", None) or repr(value)
    if settings.schedule in PER_BATCH_SCHEDULES:
        out["epochs"] = repr(settings.epochs)
    return out


def check_fingerprint(saved: dict[str, str], current: dict[str, str], directory: Any) -> None:
    differ = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if not differ:
        return
    shown = "; ".join(f"{k}: {saved.get(k, 'unset')} there, {current.get(k, 'unset')} here"
                      for k in differ)  # fmt: skip
    raise CheckpointError(
        f"the checkpoint in {directory} was written by a different run ({shown}); resume with "
        "the model, data and settings it was written with, or train without `resume` (or in "
        "another `checkpoint_dir`) to start again"
    )


# -- the parts of a run's state --------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's (CPU and, when in use, CUDA) generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_state(
    model, optimizer, scheduler, history: History, best, guard, **counters: Any
) -> dict[str, Any]:
    """Everything a run carries from one step to the next, as `save_checkpoint` takes it."""
    return {
        "counters": counters,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "history": {"history": history.history, "seconds": history.seconds_per_epoch},
        "best": None if best is None else {
            "waited": best.waited, "best_value": best.best_value, "best_state": best.best_state,
        },
        "guard": guard.state(),
        "rng": rng_state(),
    }  # fmt: skip


def restore_run(
    state: dict[str, Any], model, optimizer, scheduler, history: History, best, guard
) -> dict[str, Any]:
    """Put a loaded checkpoint back into the run's objects; returns its counters."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    history.history = {k: list(v) for k, v in state["history"]["history"].items()}
    history.seconds_per_epoch = list(state["history"]["seconds"])
    if best is not None and state["best"] is not None:
        best.waited, best.best_value = state["best"]["waited"], state["best"]["best_value"]
        best.best_state = state["best"]["best_state"]
    guard.load_state(state["guard"])
    set_rng_state(state["rng"])
    return state["counters"]


class Checkpoints:
    """Where and when a run writes its checkpoint, and the fingerprint it must match."""

    def __init__(self, settings: TrainSettings, model: nn.Module, data: tuple) -> None:
        self.directory = Path(settings.checkpoint_dir)
        self.every = settings.checkpoint_every
        self.fingerprint = fingerprint(model, data, settings)
        # a run killed while writing leaves its half-written temporary file; the checkpoint
        # itself is whole (it is only ever replaced by a rename), so the leftover just goes
        for torn in self.directory.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            torn.unlink(missing_ok=True)

    def due(self, global_step: int) -> bool:
        """Whether the step just taken ends a `checkpoint_every` stretch."""
        return self.every is not None and global_step % self.every == 0

    def save(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.directory, {"fingerprint": self.fingerprint, **state})

    def load(self) -> dict[str, Any]:
        state = load_checkpoint(self.directory)
        check_fingerprint(state.get("fingerprint", {}), self.fingerprint, self.directory)
        return state


def checkpoints_for(settings: TrainSettings, model: nn.Module, data: tuple) -> Checkpoints | None:
    return None if settings.checkpoint_dir is None else Checkpoints(settings, model, data)
