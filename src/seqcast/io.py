"""A model on disk is a directory: `config.json` (everything needed to rebuild it, with a
format version), `model.safetensors` (the weights) and `scaler.json`. Loading never unpickles
and never runs code from the files; a directory is written whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqcast.errors import SeqcastError

FORMAT = "seqcast-forecaster"
# 2: the default series (context) as typed tensors in model.safetensors, model weights under
# "model."; version 1 kept the context as JSON lists
FORMAT_VERSION = 2
FILES = ("config.json", "model.safetensors", "scaler.json")


def write_model_dir(
    path: str | os.PathLike,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    scaler: dict[str, Any],
) -> Path:
    """Write the three files into a fresh temporary folder beside `path`, then move it into
    place, so a failure never leaves a half-written model."""
    target = Path(path)
    if target.exists() and not (target.is_dir() and _is_model_dir_or_empty(target)):
        raise SeqcastError(
            f"{target} exists and is not a seqcast model directory; choose a new --out path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
        (staging / "config.json").write_text(json.dumps(body, indent=2))
        (staging / "scaler.json").write_text(json.dumps(scaler, indent=2))
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(staging / "model.safetensors"))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _is_model_dir_or_empty(path: Path) -> bool:
    return not any(path.iterdir()) or (path / "config.json").exists()


def read_model_dir(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict]:
    """(config, CPU weights, scaler dict) from a model directory, each checked."""
    root = Path(path)
    if not root.is_dir():
        raise SeqcastError(f"no model directory at {root}; give the folder written by fit --out")
    config_path = root / "config.json"
    if not config_path.exists():
        raise SeqcastError(
            f"{root} is not a seqcast model directory (no config.json); give the folder "
            "written by `seqcast fit --out` or Forecaster.save"
        )
    config = _read_json(config_path)
    if config.get("format") != FORMAT:
        raise SeqcastError(
            f"{config_path} is not a seqcast model config (format {config.get('format')!r})"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise SeqcastError(
            f"{root} was written by a newer seqcast (format {config['format_version']}); "
            "upgrade seqcast to load it"
        )
    weights = root / "model.safetensors"
    if not weights.exists():
        raise SeqcastError(f"{root} has no model.safetensors; the model directory is incomplete")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SeqcastError(
            f"{weights} is corrupted or not a safetensors file ({_first_line(err)}); "
            "save the model again"
        ) from None
    scaler_path = root / "scaler.json"
    scaler = _read_json(scaler_path) if scaler_path.exists() else {}
    return config, state, scaler


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeqcastError(f"{path} is not valid JSON ({_first_line(err)})") from None
    if not isinstance(value, dict):
        raise SeqcastError(f"{path} must hold a JSON object")
    return value


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# -- the series a model forecasts from by default ---------------------------------------------
CONTEXT_PREFIX = "context."


def context_to_tensors(frame: pd.DataFrame) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A long frame as typed tensors plus a small JSON description, for model.safetensors:
    values as float64, time stamps as int64 (nanoseconds since the epoch, in UTC, for dates;
    the time zone kept by name), ids as runs of (id, length) since rows come grouped by series.
    Nothing is rounded or turned into text, unlike a JSON list of dates."""
    ds = frame["ds"]
    is_time = pd.api.types.is_datetime64_any_dtype(ds)
    tz = str(ds.dt.tz) if is_time and ds.dt.tz is not None else None
    stamps = ds.dt.tz_convert("UTC") if tz else ds
    ints = stamps.to_numpy("datetime64[ns]").astype(np.int64) if is_time else ds.to_numpy()
    ids = frame["unique_id"].astype(str)
    runs = ids.groupby(ids, sort=False).size()
    tensors = {CONTEXT_PREFIX + "ds": torch.as_tensor(np.asarray(ints, dtype=np.int64))}
    columns = [c for c in frame.columns if c not in ("unique_id", "ds")]
    for c in columns:
        tensors[CONTEXT_PREFIX + c] = torch.as_tensor(frame[c].to_numpy(np.float64))
    meta = {
        "ids": [[str(i), int(n)] for i, n in runs.items()],
        "columns": columns,
        "ds_is_time": bool(is_time),
        "tz": tz,
    }
    return tensors, meta


def context_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> pd.DataFrame:
    """Undo `context_to_tensors`; refuses a description that does not fit the tensors."""
    try:
        ids = np.repeat([i for i, _ in meta["ids"]], [int(n) for _, n in meta["ids"]])
        ds = tensors[CONTEXT_PREFIX + "ds"].numpy()
        columns = {c: tensors[CONTEXT_PREFIX + c].numpy() for c in meta["columns"]}
    except (KeyError, TypeError, ValueError) as err:
        raise SeqcastError(
            f"the model's stored series are damaged ({_first_line(err)}); fit and save it again"
        ) from None
    if any(len(v) != len(ids) for v in [ds, *columns.values()]):
        raise SeqcastError("the model's stored series do not match their description; refit")
    if meta["ds_is_time"]:
        stamps = pd.to_datetime(ds, unit="ns")
        stamps = stamps.tz_localize("UTC").tz_convert(meta["tz"]) if meta["tz"] else stamps
        ds_col = pd.Series(stamps)
    else:
        ds_col = pd.Series(ds, dtype="int64")
    frame = pd.DataFrame({"unique_id": ids, "ds": ds_col})
    for c, v in columns.items():
        frame[c] = v
    return frame


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(model tensors, context tensors) of a model file."""
    context = {k: v for k, v in state.items() if k.startswith(CONTEXT_PREFIX)}
    return {k: v for k, v in state.items() if k not in context}, context


def context_from_json(data: dict[str, Any]) -> pd.DataFrame:
    """The context of a version-1 model directory (JSON lists, dates as naive strings)."""
    frame = pd.DataFrame(data["columns"])
    if data["ds_is_time"]:
        ds = pd.to_datetime(pd.Series(data["ds"])).astype("datetime64[ns]")
    else:
        ds = pd.Series(data["ds"], dtype="int64")
    frame.insert(1, "ds", ds)
    return frame
