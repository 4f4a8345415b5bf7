"""Fill missing values inside series with a bidirectional RNN trained on the observed parts.

    result = impute(frame, window=24, units=32, epochs=50, seed=0)
    result.frame           # the input's rows, in the input's order, `y` filled, + `imputed`
    result.report          # n_missing, n_filled, n_edge, n_check, mae_rnn, mae_linear
    print(result)          # what was filled, and how well it did on held-out values

How it works (one model for all series):

1. Hold out a random `mask_fraction` of each series' observed values ("checks"). The model
   never sees them (they stay hidden while it fills the gaps too, so the report measures
   exactly the model that filled them); at the end they score it against linear
   interpolation of the same visible values.
2. Scale each series with a scaler fit on its remaining observed values.
3. Cut windows of `window` steps (stride 1) over every series; a series shorter than the
   window is padded at its end with unobserved steps. Each step has 2 input features: the
   scaled value (0 where unknown) and an observed 0/1 indicator.
4. Train `Bidirectional(GRU) -> TimeDistributed(Dense(1))` with Adam (learning rate 0.02,
   cosine-annealed to 0; gradient norm clipped at 1). Masks are drawn afresh for every
   batch: each observed step is hidden (value 0, indicator 0) with probability
   `mask_fraction`, and the loss is the mean squared error on those hidden steps only, so the
   model learns to reconstruct values it cannot see from their neighbours on both sides.
5. Predict every window with the checks and real gaps hidden; a step's estimate is the mean
   over all windows that cover it, weighted towards windows where it sits mid-window.
   Missing values get that estimate (edges included: values before a series' first or after
   its last observation, counted as `n_edge`); observed values are returned untouched.

The same `seed` gives the same output (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from seqcast.data.frames import load_frame
from seqcast.data.scalers import MinMaxScaler, StandardScaler
from seqcast.errors import SeqcastError, check_choice, check_positive_int
from seqcast.layers import GRU, Bidirectional, Dense, TimeDistributed
from seqcast.sequential import Sequential

__all__ = ["ImputeResult", "impute"]

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler}
LEARNING_RATE = 2e-2  # peak; cosine-annealed to 0 over the run
CLIP_NORM = 1.0
PREDICT_BATCH = 4096  # windows per forward pass when predicting


@dataclass
class ImputeResult:
    """What `impute` returns.

    frame   the input long frame (same rows, same order), `y` filled, plus a boolean column
            `imputed` that is True exactly where `y` was missing in the input
    report  n_series, n_missing, n_filled, n_edge (filled values before a series' first or
            after its last observation), n_check (held-out observed values), mae_rnn and
            mae_linear (mean absolute error on the checks, in data units; NaN if n_check is 0)
    """

    frame: pd.DataFrame
    report: dict[str, Any]

    def __str__(self) -> str:
        r = self.report
        lines = [
            f"imputed {r['n_filled']} of {r['n_missing']} missing values in "
            f"{r['n_series']} series ({r['n_edge']} before the first or after the last "
            "observation of their series)"
        ]
        if r["n_check"]:
            lines.append(
                f"on {r['n_check']} held-out observed values: MAE {r['mae_rnn']:.4g} (RNN) vs "
                f"{r['mae_linear']:.4g} (linear interpolation)"
            )
        else:
            lines.append("no observed values could be held out to check the model")
        return "\n".join(lines)


def impute(
    data: Any,
    window: int = 24,
    units: int = 32,
    epochs: int = 100,
    mask_fraction: float = 0.1,
    seed: int = 0,
    scaler: str = "standard",
    *,
    batch_size: int = 32,
    **load_options: Any,
) -> ImputeResult:
    """Fill the missing `y` values of every series in `data` with a bidirectional GRU.

    `data` is anything `seqcast.data.load_frame` accepts (`load_options` go to it). `window`
    is the length of the training windows (at least 2), `units` the GRU size per direction,
    `epochs` passes over all windows in batches of `batch_size`, `mask_fraction` the share of
    observed steps hidden per batch during training and also the share held out as checks,
    `scaler` "standard" or "minmax" (per series, fit on observed values). See the module
    docstring for the method. Raises SeqcastError for bad arguments, a series with no
    observed value or a series shorter than 3 points.
    """
    _check_args(window, units, epochs, mask_fraction, batch_size, scaler, seed)
    frame = load_frame(data, **load_options)
    groups = _series_positions(frame)
    y = frame["y"].to_numpy(np.float64)
    missing = np.isnan(y)
    checks = _choose_checks(groups, missing, mask_fraction, np.random.default_rng(seed))
    hidden = np.where(checks, np.nan, y)  # what the model and the linear baseline may see

    fitted = SCALERS[scaler]().fit(frame[["unique_id", "ds"]].assign(y=hidden))
    ids = frame["unique_id"].to_numpy()
    scaled = fitted.transform_array(ids, hidden)
    index = _window_index(groups, window)
    model = _build_model(units, seed)
    _train(model, _inputs(scaled, index), epochs, batch_size, mask_fraction, seed)
    estimate = fitted.inverse_transform_array(ids, _predict(model, scaled, index))

    linear = _linear(frame["unique_id"], hidden)
    out = frame.copy()
    out["y"] = np.where(missing, estimate, y)
    out["imputed"] = missing
    report = {
        "n_series": len(groups),
        "n_missing": int(missing.sum()),
        "n_filled": int((missing & np.isfinite(out["y"].to_numpy())).sum()),
        "n_edge": int(_edges(groups, missing).sum()),
        "n_check": int(checks.sum()),
        "mae_rnn": _mae(y[checks], estimate[checks]),
        "mae_linear": _mae(y[checks], linear[checks]),
    }
    return ImputeResult(out, report)


# ----------------------------------------------------------------------------- checks
def _check_args(
    window: Any,
    units: Any,
    epochs: Any,
    mask_fraction: Any,
    batch_size: Any,
    scaler: Any,
    seed: Any,
) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise SeqcastError(
            f"`window` must be an integer >= 2 (a step needs neighbours to learn from), "
            f"got {window!r}"
        )
    check_positive_int("units", units)
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_choice("scaler", scaler, SCALERS)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SeqcastError(f"`seed` must be a non-negative integer, got {seed!r}")
    try:
        fraction = float(mask_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 < fraction < 1.0:
        raise SeqcastError(f"`mask_fraction` must be a number in (0, 1), got {mask_fraction!r}")


def _series_positions(frame: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each series (first-appearance order), each in time order."""
    groups = [np.asarray(p) for p in frame.groupby("unique_id", sort=False).indices.values()]
    y = frame["y"].to_numpy(np.float64)
    for rows in groups:
        sid = frame["unique_id"].iat[rows[0]]
        if len(rows) < 3:
            raise SeqcastError(
                f"series {sid!r} has {len(rows)} point(s); imputation needs at least 3 per "
                "series (drop that series or give it more history)"
            )
        if np.isnan(y[rows]).all():
            raise SeqcastError(
                f"series {sid!r} has no observed value (all {len(rows)} are missing); there is "
                "nothing to impute from: drop that series"
            )
    return groups


def _choose_checks(
    groups: list[np.ndarray], missing: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """A random `fraction` of each series' observed rows, keeping at least 2 observed."""
    checks = np.zeros(len(missing), dtype=bool)
    for rows in groups:
        observed = rows[~missing[rows]]
        n = min(int(round(fraction * len(observed))), max(len(observed) - 2, 0))
        checks[rng.choice(observed, size=n, replace=False)] = True
    return checks


def _edges(groups: list[np.ndarray], missing: np.ndarray) -> np.ndarray:
    """Missing rows before the first or after the last observation of their series."""
    edge = np.zeros(len(missing), dtype=bool)
    for rows in groups:
        seen = np.flatnonzero(~missing[rows])
        edge[rows[: seen[0]]] = True
        edge[rows[seen[-1] + 1 :]] = True
    return edge


# ----------------------------------------------------------------------------- windows
def _window_index(groups: list[np.ndarray], window: int) -> np.ndarray:
    """(n_windows, window) row positions of every stride-1 window; -1 pads short series."""
    parts = []
    for rows in groups:
        padded = np.concatenate([rows, np.full(max(window - len(rows), 0), -1)])
        parts.append(np.lib.stride_tricks.sliding_window_view(padded, window))
    return np.concatenate(parts).astype(np.int64)


def _inputs(scaled: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """(n_windows, window, 2): scaled value (0 where unknown) and the observed indicator."""
    values = np.where(index >= 0, scaled[index], np.nan)  # padding reads as unknown
    observed = ~np.isnan(values)
    x = np.stack([np.where(observed, values, 0.0), observed], axis=-1)
    return torch.as_tensor(x, dtype=torch.float32)


# ----------------------------------------------------------------------------- model
def _build_model(units: int, seed: int) -> Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Sequential(
            [Bidirectional(GRU(units, return_sequences=True)), TimeDistributed(Dense(1))],
            input_shape=(None, 2),
        )


def _train(
    model: nn.Module, x: torch.Tensor, epochs: int, batch_size: int, fraction: float, seed: int
) -> None:
    """Adam (cosine-annealed learning rate) on the MSE of randomly hidden observed steps,
    with fresh masks for every batch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = x[order[start : start + batch_size]]  # (B, W, 2)
            observed = batch[..., 1] > 0
            hide = (torch.rand(observed.shape, generator=generator) < fraction) & observed
            if hide.any():
                shown = batch * (~hide).unsqueeze(-1)  # hidden steps: value 0, indicator 0
                error = (model(shown)[..., 0] - batch[..., 0]) ** 2  # (B, W)
                optimizer.zero_grad()
                error[hide].mean().backward()
                nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
                optimizer.step()
                schedule.step()
    model.eval()


def _predict(model: nn.Module, scaled: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per-row estimate (scaled units): the mean over every window covering that row,
    weighted by how far the row sits from the window's ends (1 at either end, W/2 in the
    middle), so estimates with context on both sides count most."""
    with torch.no_grad():
        pred = np.concatenate(
            [
                model(_inputs(scaled, index[start : start + PREDICT_BATCH]))[..., 0]
                .double()
                .numpy()
                for start in range(0, len(index), PREDICT_BATCH)
            ]
        )  # (n_windows, W)
    steps = np.arange(index.shape[1])
    weight = np.broadcast_to(np.minimum(steps + 1, index.shape[1] - steps), index.shape)
    valid = index >= 0
    total = np.bincount(index[valid], weights=(pred * weight)[valid], minlength=len(scaled))
    count = np.bincount(index[valid], weights=weight[valid], minlength=len(scaled))
    return total / np.maximum(count, 1e-12)


# ----------------------------------------------------------------------------- baseline
def _linear(unique_id: pd.Series, values: np.ndarray) -> np.ndarray:
    """Linear interpolation within each series (edges take the nearest observation)."""
    series = pd.Series(values, index=unique_id.index)
    filled = series.groupby(unique_id.to_numpy(), sort=False).transform(
        lambda s: s.interpolate(method="linear", limit_direction="both")
    )
    return filled.to_numpy(np.float64)


def _mae(truth: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.mean(np.abs(truth - estimate))) if len(truth) else float("nan")
