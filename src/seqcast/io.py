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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqcast.errors import SeqcastError

FORMAT = "seqcast-forecaster"
FORMAT_VERSION = 1
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
