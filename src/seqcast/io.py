"""A model on disk is a directory: `config.json` (everything needed to rebuild it, with a
format version), `model.safetensors` (the weights) and `scaler.json`. Loading never unpickles
and never runs code from the files; a directory is written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqcast.errors import SeqcastError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

FORMAT = "seqcast-forecaster"
# 2: the default series (context) as typed tensors in model.safetensors, model weights under
# "model."; version 1 kept the context as JSON lists.
# 3: nothing per training series outside the context: scaler.json holds the scaler's kind only
# (series are scaled by their own history when forecast), conformal radii as a fixed table;
# the context's scaling under "scaling.", the weights' dtype in config.json
FORMAT_VERSION = 3
FILES = ("config.json", "model.safetensors", "scaler.json")
LOCK_SUFFIX = ".lock"

# safetensors dtype codes -> torch dtypes (those seqcast writes, and their kin)
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip
CODES = {v: k for k, v in DTYPES.items()}
TensorSpec = tuple[torch.dtype, tuple[int, ...]]


def write_model_dir(
    path: str | os.PathLike,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    scaler: dict[str, Any],
) -> Path:
    """Write the three files into a fresh temporary folder beside `path`, then swap it into
    place by renames, so a failure never leaves a half-written model. A lock beside `path`
    lets one process write it at a time: a second writer is refused, never mixed in."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(target):
        if target.is_symlink() or (
            target.exists() and not (target.is_dir() and _is_model_dir_or_empty(target))
        ):
            raise SeqcastError(
                f"{target} exists and is not a seqcast model directory; choose a new --out path"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
        try:
            body = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
            (staging / "config.json").write_text(json.dumps(body, indent=2))
            (staging / "scaler.json").write_text(json.dumps(scaler, indent=2))
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            save_file(tensors, str(staging / "model.safetensors"))
            _swap_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing `target` is first renamed aside (both
    renames are atomic), then removed."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    os.replace(target, old)  # a directory replaces an empty one
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _writer_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on `.NAME.lock` beside `target` (refused at once when another
    process holds it); the lock file is removed when done. A lock file replaced while it was
    being taken is taken again, so two writers never both hold one."""
    lock_path = target.parent / f".{target.name}{LOCK_SUFFIX}"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_or_refuse(fd, target)
            if os.path.exists(lock_path) and os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file was removed by the writer before us: lock the new one
    try:
        yield
    finally:
        os.unlink(lock_path)
        os.close(fd)


def _lock_or_refuse(fd: int, target: Path) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        raise SeqcastError(
            f"another process is writing a model to {target} right now; wait for it to finish "
            "or choose another --out path"
        ) from None


def _is_model_dir_or_empty(path: Path) -> bool:
    return not any(path.iterdir()) or (path / "config.json").exists()


def read_model_dir(
    path: str | os.PathLike,
    expected: Callable[[dict[str, Any]], dict[str, TensorSpec] | None] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict]:
    """(config, CPU weights, scaler dict) from a model directory, each checked before any
    tensor is read: no file may be a link leading out of the directory; the safetensors
    header must fit in its file and describe tensors that fit in it; and when `expected`
    maps the config to the {name: (dtype, shape)} it implies, the file must hold exactly those.
    Nothing is unpickled or executed, and nothing larger than the files is allocated."""
    root = Path(path)
    if not root.is_dir():
        raise SeqcastError(f"no model directory at {root}; give the folder written by fit --out")
    for name in FILES:
        _check_inside(root, root / name)
    config_path = root / "config.json"
    if not config_path.exists():
        raise SeqcastError(
            f"{root} is not a seqcast model directory (no config.json); give the folder "
            "written by `seqcast fit --out` or Forecaster.save"
        )
    config = _read_json(config_path)
    if config.get("format") != FORMAT:
        raise SeqcastError(
            f"{config_path} is not a seqcast model config (format {config.get('format')!r}); "
            "give the folder written by `seqcast fit --out` or Forecaster.save"
        )
    version = config.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SeqcastError(
            f"{config_path} has format_version {version!r}, not a positive integer; "
            "the file is damaged, fit and save the model again"
        )
    if version > FORMAT_VERSION:
        raise SeqcastError(
            f"{root} was written by a newer seqcast (format {version}, this one reads up to "
            f"{FORMAT_VERSION}); upgrade seqcast to load it"
        )
    weights = root / "model.safetensors"
    if not weights.exists():
        raise SeqcastError(
            f"{root} has no model.safetensors; the model directory is incomplete, "
            "save the model again"
        )
    header = read_header(weights)
    wanted = expected(config) if expected is not None else None
    if wanted is not None:
        check_tensors(header, wanted, weights)
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


def _check_inside(root: Path, path: Path) -> None:
    """Refuse a link that leads out of the model directory (or nowhere)."""
    if not path.is_symlink():
        return
    real, home = path.resolve(), root.resolve()
    if not real.is_relative_to(home) or not real.exists():
        raise SeqcastError(
            f"{path} is a link to {real}, outside the model directory; a model directory "
            "must hold its own files: copy the file into it instead of linking"
        )


def read_header(path: Path) -> dict[str, TensorSpec]:
    """{name: (dtype, shape)} from a safetensors file's header, checked against the file's
    size before anything is read: the header length, then every tensor's byte range."""
    size = path.stat().st_size
    damaged = f"{path} is damaged: save the model again"
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise SeqcastError(
                f"{path} is too short to be a safetensors file; save the model again"
            )
        length = int.from_bytes(head, "little")
        if length > size - 8:
            raise SeqcastError(
                f"{path} claims a {length:,}-byte header but the file has {size:,} bytes "
                "(truncated or not a safetensors file); save the model again"
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = _first_line(err)
        raise SeqcastError(f"{path} has an unreadable header ({reason}); {damaged}") from None
    if not isinstance(header, dict):
        raise SeqcastError(f"{path} has a header that is not a JSON object; {damaged}")
    data_size, spans, out = size - 8 - length, [], {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin, end = _entry(name, entry, path)
        count = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if not 0 <= begin <= end <= data_size or end - begin != count:
            raise SeqcastError(
                f"{path}: tensor {name!r} ({CODES[dtype]} {list(shape)}) claims bytes "
                f"{begin}..{end} of a {data_size:,}-byte data section (truncated?); "
                "save the model again"
            )
        spans.append((begin, end, name))
        out[name] = (dtype, shape)
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise SeqcastError(f"{path}: tensors {a!r} and {b!r} overlap; {damaged}")
    return out


def _entry(name: str, entry: Any, path: Path) -> tuple[torch.dtype, tuple[int, ...], int, int]:
    try:
        dtype = DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        numbers = [*shape, begin, end]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers):
            raise ValueError("negative or non-integer size")
    except (KeyError, TypeError, ValueError) as err:
        raise SeqcastError(
            f"{path}: tensor {name!r} has a malformed header entry ({_first_line(err)}); "
            "save the model again"
        ) from None
    return dtype, shape, begin, end


def check_tensors(header: dict[str, TensorSpec], expected: dict[str, TensorSpec], path) -> None:
    """Refuse a file whose tensors are not exactly `expected` (names, dtypes, shapes)."""
    missing = [k for k in expected if k not in header]
    extra = [k for k in header if k not in expected]
    if missing or extra:
        parts = [
            f"lacks {missing[:5]}" if missing else "",
            f"has extra {extra[:5]}" if extra else "",
        ]
        raise SeqcastError(
            f"{path} does not match config.json: it {' and '.join(p for p in parts if p)}; "
            "the directory mixes files of different models, save the model again"
        )
    for name, (dtype, shape) in expected.items():
        got_dtype, got_shape = header[name]
        if got_dtype != dtype or tuple(got_shape) != tuple(shape):
            raise SeqcastError(
                f"{path}: tensor {name!r} is {CODES[got_dtype]} {list(got_shape)} but "
                f"config.json implies {CODES.get(dtype, dtype)} {list(shape)}; the directory "
                "mixes files of different models, save the model again"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeqcastError(
            f"{path} is not valid JSON ({_first_line(err)}); the model directory is damaged, "
            "fit and save the model again"
        ) from None
    if not isinstance(value, dict):
        raise SeqcastError(
            f"{path} must hold a JSON object; the model directory is damaged, fit and save "
            "the model again"
        )
    return value


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# -- the series a model forecasts from by default ---------------------------------------------
CONTEXT_PREFIX = "context."
SCALING_PREFIX = "scaling."  # the context series' scaler parameters (format 3)


def context_to_tensors(
    frame: pd.DataFrame,
    scaling: tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A long frame as typed tensors plus a small JSON description, for model.safetensors:
    values as float64, time stamps as int64 (nanoseconds since the epoch, in UTC, for dates;
    the time zone kept by name), ids as runs of (id, length) since rows come grouped by series.
    Nothing is rounded or turned into text, unlike a JSON list of dates. `scaling`, the
    series' (loc, scale) arrays of shape (series, columns), or named arrays with one row per
    series (normalize="auto"'s transforms, their shapes in the description), is kept as
    float64 beside it."""
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
        tensors[CONTEXT_PREFIX + c] = torch.from_numpy(frame[c].to_numpy(np.float64, copy=True))
    meta = {
        "ids": [[str(i), int(n)] for i, n in runs.items()],
        "columns": columns,
        "ds_is_time": bool(is_time),
        "tz": tz,
        "unit": ds.dt.unit if is_time else None,  # pandas' resolution, restored on load
        "scaling": scaling is not None,
    }
    if isinstance(scaling, dict):
        meta["scaling"] = {k: list(np.shape(v)) for k, v in scaling.items()}
    elif scaling is not None:
        scaling = dict(zip(("loc", "scale"), scaling, strict=True))
    for name, values in (scaling or {}).items():
        tensors[SCALING_PREFIX + name] = torch.as_tensor(np.asarray(values, np.float64))
    return tensors, meta


def context_spec(meta: dict[str, Any]) -> dict[str, TensorSpec]:
    """The tensors `context_to_tensors` wrote for description `meta`: {name: (dtype, shape)}."""
    try:
        rows = sum(int(n) for _, n in meta["ids"])
        spec = {CONTEXT_PREFIX + "ds": (torch.int64, (rows,))}
        spec |= {CONTEXT_PREFIX + str(c): (torch.float64, (rows,)) for c in meta["columns"]}
        if isinstance(meta.get("scaling"), dict):  # named arrays, shapes given
            spec |= {SCALING_PREFIX + str(k): (torch.float64, tuple(int(d) for d in shape))
                     for k, shape in meta["scaling"].items()}  # fmt: skip
        elif meta.get("scaling"):
            shape = (len(meta["ids"]), len(meta["columns"]))
            spec |= {SCALING_PREFIX + k: (torch.float64, shape) for k in ("loc", "scale")}
    except (KeyError, TypeError, ValueError) as err:
        raise SeqcastError(
            f"config.json describes its stored series badly ({_first_line(err)}); "
            "fit and save the model again"
        ) from None
    return spec


def scaling_from_tensors(tensors: dict[str, torch.Tensor]) -> tuple[np.ndarray, ...] | None:
    """The (loc, scale) arrays `context_to_tensors` kept, or None."""
    if SCALING_PREFIX + "loc" not in tensors:
        return None
    return tuple(tensors[SCALING_PREFIX + k].double().numpy() for k in ("loc", "scale"))


def scaling_arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Every array `context_to_tensors` kept beside the context, by name."""
    n = len(SCALING_PREFIX)
    return {k[n:]: v.double().numpy() for k, v in tensors.items() if k.startswith(SCALING_PREFIX)}


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
        ds_col = pd.Series(stamps).dt.as_unit(meta.get("unit") or "ns")
    else:
        ds_col = pd.Series(ds, dtype="int64")
    frame = pd.DataFrame({"unique_id": ids, "ds": ds_col})
    for c, v in columns.items():
        frame[c] = v
    return frame


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(model tensors, context tensors and their scaling) of a model file."""
    prefixes = (CONTEXT_PREFIX, SCALING_PREFIX)
    context = {k: v for k, v in state.items() if k.startswith(prefixes)}
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
