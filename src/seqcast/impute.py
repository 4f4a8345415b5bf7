"""Fill missing values inside series with a bidirectional RNN or linear interpolation, per
series whichever did better on held-out observed values of that series.

    result = impute(frame, window=24, units=32, epochs=50, seed=0)
    result.frame           # the input's rows, in the input's order, `y` filled, + `imputed`
    result.report          # n_missing, n_filled, n_edge, n_check, mae_rnn, mae_linear, ...
    result.series          # per series: method used, its checks, both methods' MAE on them
    print(result)          # what was filled, by which method, and how well each did

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
6. Choose per series (`method="auto"`): the RNN fills a series only if its MAE on that
   series' checks is lower than linear interpolation's on the same checks; otherwise, and for
   a series with fewer than `MIN_CHECKS` checks (too few to tell the two apart), linear
   interpolation fills it. A learned model is not better by default: on a smooth series
   interpolation is hard to beat, and the RNN only earns its place where it shows it.
   `method="rnn"` or `"linear"` forces one method for every series. No RNN is trained for
   "linear", nor under "auto" when no series has enough checks for it to win.
7. Missing values get the chosen method's estimate (edges included: values before a
   series' first or after its last observation, counted as `n_edge`; interpolation carries
   the nearest observation there). Interpolation fills from every observed value, checks
   included; the RNN fills with the checks still hidden, as in its score. Observed values
   are returned untouched.

The same `seed` gives the same output (CPU), whatever the order of the input rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from seqcast import training
from seqcast.data.frames import load_frame_with_rows
from seqcast.data.scalers import MinMaxScaler, StandardScaler
from seqcast.errors import SeqcastError, check_choice, check_positive_int
from seqcast.layers import GRU, Bidirectional, Dense, TimeDistributed
from seqcast.sequential import Sequential

__all__ = ["METHODS", "MIN_CHECKS", "ImputeResult", "describe_series", "impute"]

METHODS = ("auto", "rnn", "linear")
# With fewer held-out values than this, a lower RNN error is as likely luck as skill, so such a
# series keeps the method that needs no evidence: interpolation.
MIN_CHECKS = 5

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
            mae_linear (mean absolute error of each method on all the checks, in data units;
            NaN if n_check is 0 or the method did not run), mae_chosen (the same with each
            series' chosen method), method (as asked), filled_rnn and filled_linear (missing
            values filled by each method), series_rnn and series_linear (series per method)
    series  one row per series, in sorted id order: unique_id, method ("rnn" or "linear"),
            reason, n_missing, n_check, mae_rnn, mae_linear (on that series' checks)
    """

    frame: pd.DataFrame
    report: dict[str, Any]
    series: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __str__(self) -> str:
        r = self.report
        lines = [
            f"imputed {r['n_filled']} of {r['n_missing']} missing values in "
            f"{r['n_series']} series ({r['n_edge']} before the first or after the last "
            f"observation of their series): {r['filled_rnn']} by the RNN, "
            f"{r['filled_linear']} by linear interpolation"
        ]
        if r["n_check"]:
            lines.append(
                f"on {r['n_check']} held-out observed values: MAE {r['mae_rnn']:.4g} (RNN) vs "
                f"{r['mae_linear']:.4g} (linear interpolation), {r['mae_chosen']:.4g} with "
                "each series' chosen method"
            )
        else:
            lines.append("no observed values could be held out to check the model")
        shown = self.series.head(SHOWN_SERIES)
        lines += [f"  {describe_series(row)}" for row in shown.itertuples(index=False)]
        if len(self.series) > len(shown):
            lines.append(f"  ... {len(self.series) - len(shown)} more series in `.series`")
        return "\n".join(lines)


SHOWN_SERIES = 10  # per-series lines in str(result); the rest stay in `.series`


def describe_series(row: Any) -> str:
    """One line on one series of `ImputeResult.series` (a row from itertuples)."""
    name = "RNN" if row.method == "rnn" else "linear interpolation"
    checks = f"{row.n_check} check{'s' * (row.n_check != 1)}"
    if row.n_check:
        checks += f", MAE {row.mae_rnn:.4g} RNN vs {row.mae_linear:.4g} interpolation"
    return f"{row.unique_id}: {row.n_missing} filled by {name} ({row.reason}; {checks})"


def impute(
    data: Any,
    window: int = 24,
    units: int = 32,
    epochs: int = 100,
    mask_fraction: float = 0.1,
    seed: int = 0,
    scaler: str = "standard",
    *,
    method: str = "auto",
    batch_size: int = 32,
    **load_options: Any,
) -> ImputeResult:
    """Fill the missing `y` values of every series in `data`, per series with a bidirectional
    GRU or linear interpolation, whichever did better on that series' held-out values.

    `data` is anything `seqcast.data.load_frame` accepts (`load_options` go to it). `window`
    is the length of the training windows (at least 2), `units` the GRU size per direction,
    `epochs` passes over all windows in batches of `batch_size`, `mask_fraction` the share of
    observed steps hidden per batch during training and also the share held out as checks,
    `scaler` "standard" or "minmax" (per series, fit on observed values), `method` "auto"
    (the better per series), "rnn" or "linear" (that method for every series). See the
    module docstring for the method. Raises SeqcastError for bad arguments, a series with no
    observed value or a series shorter than 3 points.
    """
    _check_args(window, units, epochs, mask_fraction, batch_size, scaler, seed)
    check_choice("method", method, METHODS)
    frame, source_rows = load_frame_with_rows(data, **load_options)
    groups = _series_positions(frame)
    y = frame["y"].to_numpy(np.float64)
    missing = np.isnan(y)
    checks = _choose_checks(groups, missing, mask_fraction, np.random.default_rng(seed))
    hidden = np.where(checks, np.nan, y)  # what the model and the scored baseline may see
    linear = _linear(frame["unique_id"], hidden)
    rnn = np.full(len(y), np.nan)
    if method == "rnn" or (method == "auto" and _any_comparable(groups, checks)):
        options = (window, units, epochs, batch_size, mask_fraction, seed, scaler)
        rnn = _rnn_estimate(frame, hidden, groups, *options)

    series = _choose_methods(frame, groups, missing, checks, y, rnn, linear, method)
    by_rnn = _per_row(groups, series["method"].to_numpy() == "rnn", len(y))
    estimate = np.where(by_rnn, rnn, _linear(frame["unique_id"], y))
    out = frame.copy()
    out["y"] = np.where(missing, estimate, y)
    out["imputed"] = missing
    report = _report(groups, missing, checks, y, rnn, linear, by_rnn, out, series, method)
    back = np.argsort(source_rows)  # the rows as the caller gave them
    return ImputeResult(out.iloc[back].reset_index(drop=True), report, series)


def _any_comparable(groups: list[np.ndarray], checks: np.ndarray) -> bool:
    """Whether any series has enough checks for the RNN to win it (else it is not trained)."""
    return any(checks[rows].sum() >= MIN_CHECKS for rows in groups)


def _rnn_estimate(
    frame: pd.DataFrame,
    hidden: np.ndarray,
    groups: list[np.ndarray],
    window: int,
    units: int,
    epochs: int,
    batch_size: int,
    mask_fraction: float,
    seed: int,
    scaler: str,
) -> np.ndarray:
    """The RNN's estimate of every row (data units), trained and run on `hidden` values."""
    fitted = SCALERS[scaler]().fit(frame[["unique_id", "ds"]].assign(y=hidden))
    ids = frame["unique_id"].to_numpy()
    scaled = fitted.transform_array(ids, hidden)
    index = _window_index(groups, window)
    model = _build_model(units, seed)
    # One intra-op thread while the GRU runs: its ops are far too small to split, and a
    # second thread only adds a hand-off per op (the airline series: 3.1 s on 2 threads, 1.9 s
    # on one; far worse when the other core is busy). The caller's setting comes back after.
    with training.intra_op_threads(1):
        _train(model, _inputs(scaled, index), epochs, batch_size, mask_fraction, seed)
        estimate = _predict(model, scaled, index)
    return fitted.inverse_transform_array(ids, estimate)


# ----------------------------------------------------------------------------- choice
def _choose_methods(
    frame: pd.DataFrame,
    groups: list[np.ndarray],
    missing: np.ndarray,
    checks: np.ndarray,
    y: np.ndarray,
    rnn: np.ndarray,
    linear: np.ndarray,
    method: str,
) -> pd.DataFrame:
    """One row per series: the method that fills it, why, and both methods' check MAE."""
    rows = []
    for positions in groups:
        held = positions[checks[positions]]
        mae_rnn, mae_linear = _mae(y[held], rnn[held]), _mae(y[held], linear[held])
        chosen, reason = _decide(method, len(held), mae_rnn, mae_linear)
        sid = frame["unique_id"].iat[positions[0]]
        n_missing = int(missing[positions].sum())
        rows.append((sid, chosen, reason, n_missing, len(held), mae_rnn, mae_linear))
    columns = ["unique_id", "method", "reason", "n_missing", "n_check", "mae_rnn", "mae_linear"]
    return pd.DataFrame(rows, columns=columns)


def _per_row(groups: list[np.ndarray], flags: np.ndarray, n_rows: int) -> np.ndarray:
    """A per-series flag spread over that series' rows."""
    out = np.zeros(n_rows, dtype=bool)
    for rows, flag in zip(groups, flags, strict=True):
        out[rows] = flag
    return out


def _decide(method: str, n_check: int, mae_rnn: float, mae_linear: float) -> tuple[str, str]:
    """(method, reason) for one series. Ties and NaN go to interpolation: the RNN has to
    show it is better, not merely as good."""
    if method != "auto":
        return method, "asked for"
    if n_check < MIN_CHECKS:
        return "linear", f"too few checks to compare (fewer than {MIN_CHECKS})"
    if mae_rnn < mae_linear:
        return "rnn", "RNN better on its checks"
    return "linear", "interpolation as good or better on its checks"


def _report(
    groups: list[np.ndarray],
    missing: np.ndarray,
    checks: np.ndarray,
    y: np.ndarray,
    rnn: np.ndarray,
    linear: np.ndarray,
    by_rnn: np.ndarray,
    out: pd.DataFrame,
    series: pd.DataFrame,
    method: str,
) -> dict[str, Any]:
    chosen = np.where(by_rnn, rnn, linear)  # on the checks: each series' method, checks hidden
    n_rnn = int((series["method"] == "rnn").sum())
    return {
        "n_series": len(groups),
        "n_missing": int(missing.sum()),
        "n_filled": int((missing & np.isfinite(out["y"].to_numpy())).sum()),
        "n_edge": int(_edges(groups, missing).sum()),
        "n_check": int(checks.sum()),
        "mae_rnn": _mae(y[checks], rnn[checks]),
        "mae_linear": _mae(y[checks], linear[checks]),
        "mae_chosen": _mae(y[checks], chosen[checks]),
        "method": method,
        "filled_rnn": int((missing & by_rnn).sum()),
        "filled_linear": int((missing & ~by_rnn).sum()),
        "series_rnn": n_rnn,
        "series_linear": len(groups) - n_rnn,
    }


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
    """Adam (cosine-annealed learning rate, clipped gradient norm) on the MSE of randomly
    hidden observed steps, with fresh masks for every batch: seqcast's one training loop, the
    windows as both inputs and targets, `_Hiding` masking each batch on its way to the model
    and `_hidden_mse` scoring the hidden steps only."""
    settings = training.TrainSettings(
        epochs=epochs, batch_size=batch_size, optimizer="adam", lr=LEARNING_RATE,
        loss=_hidden_mse, schedule="cosine", clip_norm=CLIP_NORM, seed=seed, progress=False,
        trainer="lean",
    )  # fmt: skip
    training.fit_arrays(_Hiding(model, fraction, seed), x, x, settings)


class _Hiding(nn.Module):
    """The model as it trains: hides each observed step of a (B, W, 2) batch with probability
    `fraction` (value 0, indicator 0) before the model sees it, and returns the prediction
    beside the mask, (B, W, 2), since the loss needs to know which steps were hidden."""

    def __init__(self, model: nn.Module, fraction: float, seed: int) -> None:
        super().__init__()
        self.model, self.fraction = model, fraction
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        observed = batch[..., 1] > 0
        # drawn on the CPU (the generator's device), so a batch on a GPU hides the same steps
        draw = torch.rand(observed.shape, generator=self.generator).to(batch.device)
        hide = (draw < self.fraction) & observed
        shown = batch * (~hide).unsqueeze(-1)
        return torch.stack([self.model(shown)[..., 0], hide.to(batch.dtype)], dim=-1)


def _hidden_mse(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the hidden steps only (0 when no step was hidden)."""
    hidden = out[..., 1]
    error = (out[..., 0] - batch[..., 0]) ** 2 * hidden
    return error.sum() / hidden.sum().clamp(min=1)


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
