"""A fitted `Forecaster` to and from its model directory (`seqcast.io` reads and writes the
files). What is saved does not grow with the number of training series, except the optional
context (each training series' last window and its scaling) that lets `predict()` run
without data:

    config.json        settings, architecture, weights' dtype, a 99 x horizon conformal table,
                       MC-dropout's held-out coverage at levels 1..99 (or null), the training
                       history (per epoch), the context's description (its ids)
    scaler.json        the scaler's kind and settings
    model.safetensors  the weights ("model."), the context ("context.", and "scaling.": its
                       scaler parameters, or normalize="auto"'s per-series transforms)

Loading checks the weights file's header against what config.json implies (names, dtypes,
shapes, built on PyTorch's "meta" device so nothing is allocated) before reading any tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqcast import __version__, auto, io, scoring
from seqcast.data.normalized import NormalizedPipeline, SeriesTransforms
from seqcast.data.preprocess import SeriesScaling, WindowPipeline, scaling_from_state
from seqcast.errors import SeqcastError
from seqcast.sequential import Sequential

if TYPE_CHECKING:
    from seqcast.forecast import Forecaster

MODEL_PREFIX = "model."
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def save(fc: Forecaster, path: Path, context: bool = True) -> Path:
    """Write `fc` into directory `path`; without `context`, nothing per training series is
    kept and `predict()` of the loaded model needs data. A model whose forecast on its own
    context is not finite (weights that training broke) is refused."""
    _check_finite_forecast(fc)
    params = fc.get_params() | {"model": fc.model_name}
    tensors, meta = {}, None
    if context and fc.context_ is not None:  # None: fit from Parquet parts keeps no context
        scaling = getattr(fc, "context_scaling_", None)
        if isinstance(scaling, SeriesTransforms):  # normalize="auto": named arrays
            pair = scaling.arrays()
        else:
            pair = None if scaling is None else (scaling.loc, scaling.scale)
        tensors, meta = io.context_to_tensors(fc.context_, pair)
    config = {
        "seqcast_version": __version__,
        "params": params,
        "freq": fc.freq_,
        "calibration": fc.calibration_,
        "context": meta,
        "fit_seconds": fc.fit_seconds_,
    }
    if fc.auto_ is not None:
        auto_config, auto_tensors = fc.auto_.state()
        return io.write_model_dir(path, config | {"auto": auto_config}, auto_tensors | tensors, {})
    n, table = fc.conformal_
    config |= {
        "architecture": fc.model_.get_config(),
        "dtype": str(fc._dtype()).removeprefix("torch."),
        "strategy": fc.strategy_,
        "conformal": {"n": n, "radius": [[_finite_or_none(v) for v in row] for row in table]},
        "mc_coverage": getattr(fc, "mc_coverage_", None),
        "history": None if fc.history_ is None else fc.history_.history,
    }
    tensors |= {MODEL_PREFIX + k: v for k, v in fc.model_.state_dict().items()}
    return io.write_model_dir(path, config, tensors, fc.pipeline_.to_dict())


def load(cls: type[Forecaster], path: str | Path) -> Forecaster:
    """Rebuild a saved Forecaster on the CPU (GPU-trained models included)."""
    config, state, scaler = io.read_model_dir(path, expected_tensors)
    with _refused_as(f"{path} holds a damaged or incompatible seqcast model"):
        return _restore(cls, config, state, scaler)


def expected_tensors(config: dict[str, Any]) -> dict[str, io.TensorSpec] | None:
    """{name: (dtype, shape)} that config.json implies for model.safetensors (format 3), or
    None where it does not say (older formats, model='auto')."""
    if config.get("format_version", 1) < 3 or config.get("params", {}).get("model") == "auto":
        return None
    with _refused_as("config.json describes a model seqcast cannot build"):
        dtype = DTYPES[config["dtype"]]
        with torch.device("meta"):
            model = _build(config["architecture"], dtype)
        spec = {MODEL_PREFIX + k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
        meta = config["context"]
    return spec if meta is None else spec | io.context_spec(meta)


@contextlib.contextmanager
def _refused_as(problem: str) -> Iterator[None]:
    """Turn what a damaged config or state raises while a model is rebuilt into one
    SeqcastError naming `problem`, the first line of the cause, and the fix."""
    try:
        yield
    except SeqcastError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise SeqcastError(
            f"{problem} ({type(err).__name__}: {io._first_line(err)}); fit and save it again"
        ) from None


def _build(architecture: Any, dtype: torch.dtype) -> Sequential:
    if not isinstance(architecture, dict):
        raise SeqcastError("config.json's architecture is not a JSON object; save the model again")
    return Sequential.from_config(architecture).to(dtype)


def _restore(cls: type[Forecaster], config: dict, state: dict, scaler: dict) -> Forecaster:
    """A Forecaster from a model directory's parts; version 1 directories kept their context
    as JSON and their weights without a prefix; versions 1 and 2 kept per-series scaler
    parameters (used for the context only) and the raw conformal residuals."""
    params = {"normalize": None} | dict(config["params"])  # older directories lack it
    version = config.get("format_version", 1)
    weights, context = io.split_state(state)
    if version >= 2:
        weights = {k.removeprefix(MODEL_PREFIX): v for k, v in weights.items()}
    fc = cls(**params)
    fc.freq_, fc.calibration_ = config["freq"], config["calibration"]
    fc.fit_seconds_ = config.get("fit_seconds", float("nan"))
    fc.history_, fc.auto_ = None, None
    meta = config["context"]
    if meta is None:
        fc.context_ = None
    elif version >= 2:
        fc.context_ = io.context_from_tensors(context, meta)
    else:
        fc.context_ = io.context_from_json(meta)
    if params["model"] == "auto":
        fc.auto_ = auto.AutoModel.from_state(config["auto"], weights)
        fc.model_, fc.strategy_ = None, "direct"
        return fc
    dtype = DTYPES[config["dtype"]] if version >= 3 else torch.float32
    model = _build(config["architecture"], dtype)
    if params["model"] == "custom":
        fc.model = model
    model.load_state_dict(weights)
    fc.model_, fc.strategy_ = model.eval(), config["strategy"]
    fc.conformal_ = _conformal(config, version, fc.horizon)
    fc.mc_coverage_ = _mc_coverage(config.get("mc_coverage"))  # absent in older directories
    if fc.normalize == "auto":
        fc.pipeline_ = NormalizedPipeline.restored(fc.window, fc.season, fc.validation_size)
    else:
        fc.pipeline_ = WindowPipeline.from_dict(
            fc.window, fc.scaler, fc.local_level, fc._covariates, scaler
        )
    fc.context_scaling_ = _context_scaling(fc, context, meta, scaler, version)
    return fc


def _conformal(config: dict, version: int, horizon: int) -> tuple[int, np.ndarray]:
    if version < 3:
        errors = np.asarray(config["residuals"], dtype=np.float64).reshape(-1, horizon)
        return len(errors), scoring.conformal_table(errors)
    table = config["conformal"]["radius"]
    radius = np.array([[np.inf if v is None else v for v in row] for row in table], np.float64)
    if radius.shape != (len(scoring.LEVELS), horizon):
        raise SeqcastError(
            f"config.json's conformal table has shape {radius.shape}, not "
            f"({len(scoring.LEVELS)}, {horizon}); fit and save the model again"
        )
    return int(config["conformal"]["n"]), radius


def _mc_coverage(coverage: Any) -> list[float] | None:
    if coverage is None:
        return None
    values = [float(v) for v in coverage]
    if len(values) != len(scoring.LEVELS):
        raise SeqcastError(
            f"config.json's mc_coverage has {len(values)} values, not {len(scoring.LEVELS)} "
            "(one a level, 1..99); fit and save the model again"
        )
    return values


def _check_finite_forecast(fc: Forecaster) -> None:
    """Refuse to save a model whose forecast of its own training series' ends is NaN or
    infinite: loaded, it could forecast nothing else either."""
    if fc.auto_ is not None or fc.context_ is None:  # auto: statistical refits, no weights;
        return  # no context: fitted from Parquet parts, no series to forecast from
    if not np.isfinite(fc.predict()["y_hat"].to_numpy()).all():
        raise SeqcastError(
            "the model forecasts NaN or infinity from its own training series, so it is not "
            "saved; fit it again (a lower learning rate, clip_norm, or scaled data)"
        )


def _context_scaling(fc, context, meta, scaler, version) -> SeriesScaling | SeriesTransforms | None:
    """The context series' training-time scaling: stored beside them (format 3), or read
    from the per-series scaler.json of older directories; normalize="auto"'s transforms."""
    if meta is not None and fc.normalize == "auto":
        ids = [str(i) for i, _ in meta["ids"]]
        return SeriesTransforms.from_arrays(ids, io.scaling_arrays(context))
    if meta is None or fc.scaler is None:
        return None
    if version < 3:
        return scaling_from_state(scaler)
    pair = io.scaling_from_tensors(context)
    if pair is None:
        return None
    ids = [str(i) for i, _ in meta["ids"]]
    return SeriesScaling(ids, ["y", *fc._covariates], pair[0], pair[1])


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
