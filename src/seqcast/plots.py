"""Figures for forecasts, training curves and leaderboards.

Every function returns a `matplotlib.figure.Figure` built with the object-oriented API (no
pyplot state, no `show()`), so it works under any backend, Agg included, and in threads.
Save with `save_figure(fig, "out.png")` or display it the way your environment prefers.

    fig = plot_forecast(history, fc.predict(intervals=[80, 95]), truth=test)
    fig = plot_learning_curves(fc.history_)
    fig = plot_leaderboard(comparison.leaderboard, metric="mase")
    save_figure(fig, "leaderboard.png")

Small multiples put many models or series side by side, one small panel each, for reports:

    fig = plot_model_forecasts(history, comparison.forecasts, truth=test)
    fig = plot_series_panels(history, forecast, ["s3", "s7"], truth=test)
    fig = plot_loss_curves({"lstm": fc.history_, "gru": other.history_})
    png = figure_png(fig)  # bytes, e.g. to inline in an HTML page
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqcast.errors import SeqcastError

__all__ = [
    "plot_forecast",
    "plot_learning_curves",
    "plot_leaderboard",
    "plot_model_forecasts",
    "plot_series_panels",
    "plot_loss_curves",
    "save_figure",
    "figure_png",
]

MAX_PANELS = 6
DPI = 120
PANEL_SIZE = (4.2, 2.7)  # inches per small-multiple panel: three fit across a laptop screen
HISTORY_COLOR, FORECAST_COLOR, TRUTH_COLOR = "C0", "C1", "black"
BETTER_COLOR, WORSE_COLOR, BASELINE_COLOR = "tab:green", "tab:gray", "tab:red"
_LEVEL = re.compile(r"^y_lo_(\d+(?:\.\d+)?)$")


# ----------------------------------------------------------------------------- forecasts
def plot_forecast(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    unique_id: str | Sequence[str] | None = None,
    levels: Iterable[int | float] | None = None,
    title: str | None = None,
    max_history: int | None = None,
) -> Figure:
    """History, forecast, interval bands and (optionally) the actual future values.

    `history` and `truth` are long frames (unique_id, ds, y); `forecast` is what
    `Forecaster.predict` returns (unique_id, ds, y_hat, and y_lo_L / y_hi_L per level L).
    `unique_id` picks series (default: every series in `forecast`); at most 6 are drawn, one
    panel each, and the title says how many were left out. `levels` picks interval levels
    (default: all found), drawn as shaded bands, wider ones lighter. `max_history` keeps only
    the last points of each history. A dotted vertical line marks the forecast origin (the
    last history stamp).
    """
    _check_frame(history, "history", ("unique_id", "ds", "y"))
    _check_frame(forecast, "forecast", ("unique_id", "ds", "y_hat"))
    if truth is not None:
        _check_frame(truth, "truth", ("unique_id", "ds", "y"))
    if max_history is not None and (
        isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1
    ):
        raise SeqcastError(f"`max_history` must be a positive integer, got {max_history!r}")
    ids = _pick_series(forecast, unique_id)
    chosen = _pick_levels(forecast, levels)
    shown, left_out = ids[:MAX_PANELS], len(ids) - MAX_PANELS

    fig = Figure(figsize=(10, 3.2 * len(shown) + 0.6), layout="constrained")
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, sid in zip(axes, shown, strict=True):
        past = _rows(history, sid)
        if max_history is not None:
            past = past.tail(max_history)
        future = _rows(truth, sid) if truth is not None else None
        _draw_series(ax, past, _rows(forecast, sid), future, chosen)
        ax.set_title(sid if len(shown) > 1 else (title or f"forecast for {sid}"))
    if len(shown) > 1 or left_out > 0:
        heading = title or "forecasts"
        if left_out > 0:
            heading += f" (first {len(shown)} of {len(ids)} series; {left_out} not shown)"
        fig.suptitle(heading)
    return fig


def _draw_series(
    ax: Axes,
    past: pd.DataFrame,
    pred: pd.DataFrame,
    future: pd.DataFrame | None,
    levels: list[str],
    legend: bool = True,
) -> None:
    """One panel: bands (widest first, lightest), history, forecast, truth, origin line.
    Small multiples pass `legend=False` and draw one legend for the whole figure."""
    for k, level in enumerate(sorted(levels, key=float, reverse=True)):
        alpha = 0.15 + 0.25 * (k + 1) / len(levels)
        ax.fill_between(
            pred["ds"],
            pred[f"y_lo_{level}"],
            pred[f"y_hi_{level}"],
            color=FORECAST_COLOR,
            alpha=alpha,
            linewidth=0,
            label=f"{level}% interval",
        )
    if len(past):
        ax.plot(past["ds"], past["y"], color=HISTORY_COLOR, label="history")
    ax.plot(pred["ds"], pred["y_hat"], color=FORECAST_COLOR, label="forecast")
    if future is not None and len(future):
        ax.plot(
            future["ds"],
            future["y"],
            color=TRUTH_COLOR,
            marker="o",
            markersize=3,
            linewidth=0.8,
            label="actual",
        )
    if len(past):
        ax.axvline(past["ds"].iloc[-1], color="gray", linestyle=":", label="forecast origin")
    ax.set_xlabel("ds")
    ax.set_ylabel("y")
    if legend:
        ax.legend(loc="best", fontsize="small")


def _pick_series(forecast: pd.DataFrame, unique_id: str | Sequence[str] | None) -> list[str]:
    known = [str(i) for i in pd.unique(forecast["unique_id"])]
    if unique_id is None:
        return known
    wanted = [unique_id] if isinstance(unique_id, str) else [str(i) for i in unique_id]
    missing = [i for i in wanted if i not in known]
    if missing or not wanted:
        shown = ", ".join(repr(i) for i in known[:5]) + (", ..." if len(known) > 5 else "")
        raise SeqcastError(
            f"series {missing[0] if missing else '(none)'!r} is not in the forecast; "
            f"it has {len(known)} series: {shown}"
        )
    return wanted


def _pick_levels(forecast: pd.DataFrame, levels: Iterable[int | float] | None) -> list[str]:
    """Level labels ("80", "95") whose y_lo_/y_hi_ columns are both in `forecast`."""
    found = [
        m.group(1)
        for c in forecast.columns
        if (m := _LEVEL.match(str(c))) and f"y_hi_{m.group(1)}" in forecast.columns
    ]
    if levels is None:
        return found
    chosen = []
    for level in levels:
        label = f"{level:g}" if isinstance(level, int | float) else str(level)
        if label not in found:
            raise SeqcastError(
                f"interval level {level!r} not in the forecast (no y_lo_{label} / y_hi_{label} "
                f"columns); levels found: {found or 'none'}. Predict with intervals=[{label}]"
            )
        chosen.append(label)
    return chosen


def _rows(frame: pd.DataFrame, sid: str) -> pd.DataFrame:
    return frame[frame["unique_id"].astype(str) == sid]


# ----------------------------------------------------------------------------- training
def plot_learning_curves(history: Any) -> Figure:
    """Per-epoch curves from a `seqcast.training.History` (or a dict of lists).

    Losses ("loss", "val_loss") share the first panel; each other metric gets a panel with its
    `val_` twin. A panel's y axis is logarithmic when its positive values span more than two
    decades.
    """
    curves = _curves(history)
    panels = _panels(curves)
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, panels.items(), strict=True):
        for key in keys:
            values = curves[key]
            style = "--" if key.startswith("val_") else "-"
            ax.plot(np.arange(1, len(values) + 1), values, style, marker=".", label=key)
        values = np.concatenate([curves[k] for k in keys])
        positive = values[np.isfinite(values) & (values > 0)]
        if len(positive) and positive.max() > 100 * positive.min():
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.legend(loc="best", fontsize="small")
    return fig


def _curves(history: Any) -> dict[str, np.ndarray]:
    raw = getattr(history, "history", history)
    if not isinstance(raw, Mapping):
        raise SeqcastError(
            f"plot_learning_curves takes a seqcast History or a dict of per-epoch lists, got "
            f"{type(history).__name__}"
        )
    curves = {}
    for key, values in raw.items():
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise SeqcastError(
                f"history entry {key!r} must be a list of numbers, got {values!r}"
            ) from None
        if len(array):
            curves[str(key)] = array
    if not curves:
        raise SeqcastError(
            "the history is empty: no per-epoch values to plot (was the model trained?)"
        )
    return curves


def _panels(curves: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Panel name -> curve keys: "loss" first, then one per metric with its val_ twin."""
    panels: dict[str, list[str]] = {}
    for key in curves:
        base = key.removeprefix("val_")
        panels.setdefault(base, []).append(key)
    order = sorted(panels, key=lambda name: name != "loss")
    return {name: panels[name] for name in order}


# ----------------------------------------------------------------------------- leaderboard
def plot_leaderboard(
    table: pd.DataFrame, metric: str = "mase", baseline: str = "seasonal_naive"
) -> Figure:
    """Horizontal bars of `metric` per model, best on top.

    `table` has a `model` column (or model names as its index) and one column per metric, as
    `seqcast.compare` builds it. Lower is better, except for `coverage_L`, where closest to
    L% is best. The baseline's value is a dashed vertical line; models beating it are green.
    Models whose metric is missing (NaN) are listed at the bottom without a bar.
    """
    board = _board(table, metric)
    key = _badness(board[metric], metric)
    board = board.assign(_key=key).sort_values("_key", na_position="last", kind="stable")
    base = board.loc[board["model"] == baseline, "_key"]
    base_key = float(base.iloc[0]) if len(base) else np.nan

    fig = Figure(figsize=(8, 0.45 * len(board) + 1.4), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(board))[::-1]  # best at the top
    values = board[metric].to_numpy(np.float64)
    colors = [
        BETTER_COLOR if np.isfinite(base_key) and k < base_key else WORSE_COLOR
        for k in board["_key"].to_numpy(np.float64)
    ]
    bars = ax.barh(positions, np.nan_to_num(values), color=colors)
    for bar, value in zip(bars, values, strict=True):
        text = f" {value:.3g}" if np.isfinite(value) else " n/a"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center")
    if len(base):
        line = float(board.loc[board["model"] == baseline, metric].iloc[0])
        if np.isfinite(line):
            ax.axvline(line, color=BASELINE_COLOR, linestyle="--", label=f"{baseline} {line:.3g}")
            ax.legend(loc="lower right", fontsize="small")
    ax.set_yticks(positions, board["model"].astype(str))
    ax.set_xlabel(metric)
    ax.set_title(f"leaderboard by {metric} ({_direction(metric)})")
    ax.margins(x=0.15)
    return fig


def _board(table: Any, metric: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise SeqcastError(
            f"plot_leaderboard takes a DataFrame with a `model` column, got {type(table).__name__}"
        )
    board = table if "model" in table.columns else table.rename_axis("model").reset_index()
    if len(board) == 0:
        raise SeqcastError("the leaderboard is empty: it has no models to plot")
    if metric not in board.columns:
        known = [c for c in board.columns if c != "model"]
        raise SeqcastError(
            f"unknown metric {metric!r}: the leaderboard has no such column; "
            f"columns: {', '.join(map(repr, known))}"
        )
    if not pd.api.types.is_numeric_dtype(board[metric]):
        raise SeqcastError(f"leaderboard column {metric!r} is not numeric")
    return board[["model", metric]].reset_index(drop=True)


def _badness(values: pd.Series, metric: str) -> pd.Series:
    """Sort key, lower is better: the value, or for coverage_L its distance from L%."""
    match = re.fullmatch(r"coverage_(\d+(?:\.\d+)?)", metric)
    if match:
        return (values.astype(np.float64) - float(match.group(1)) / 100).abs()
    return values.astype(np.float64)


def _direction(metric: str) -> str:
    return "closest to nominal is best" if metric.startswith("coverage_") else "lower is better"


# ----------------------------------------------------------------------------- small multiples
def plot_model_forecasts(
    history: pd.DataFrame,
    forecasts: Mapping[str, pd.DataFrame],
    truth: pd.DataFrame | None = None,
    unique_id: str | None = None,
    titles: Mapping[str, str] | None = None,
    level: int | float | None = 80,
    max_history: int | None = None,
    ncols: int = 3,
) -> Figure:
    """One small panel per model, all for the same series and on the same y scale, so the
    models' forecasts can be compared by eye.

    `forecasts` maps model name to what `Forecaster.predict` returns; panels follow its order.
    `unique_id` defaults to the first series of the first forecast. `titles` replaces a
    panel's title (default: the model name). `level` is the interval band drawn (None: none;
    a forecast without that level just has no band). `max_history` keeps the history's tail.
    """
    if not isinstance(forecasts, Mapping) or not forecasts:
        raise SeqcastError(
            "plot_model_forecasts takes a non-empty dict of model name -> forecast frame, got "
            f"{forecasts!r:.80}"
        )
    for name, frame in forecasts.items():
        _check_frame(frame, f"forecasts[{name!r}]", ("unique_id", "ds", "y_hat"))
    first = next(iter(forecasts.values()))
    sid = _pick_series(first, unique_id)[0]
    past, future = _series_parts(history, truth, sid, max_history)
    fig, axes = _grid(len(forecasts), ncols)
    for ax, (name, frame) in zip(axes, forecasts.items(), strict=True):
        _pick_series(frame, sid)  # every model must have forecast this series
        pred = _rows(frame, sid)
        _draw_series(ax, past, pred, future, _band_level(frame, level), legend=False)
        _tidy_panel(ax, (titles or {}).get(name, name))
    _same_y(axes)
    _figure_legend(fig, axes[0])
    return fig


def plot_series_panels(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    ids: Sequence[str],
    truth: pd.DataFrame | None = None,
    titles: Mapping[str, str] | None = None,
    level: int | float | None = 80,
    max_history: int | None = None,
    ncols: int = 3,
) -> Figure:
    """One small panel per series of one model's forecast, in the order of `ids` (e.g. its
    worst and best series). Each panel keeps its own y scale: series differ in level."""
    _check_frame(history, "history", ("unique_id", "ds", "y"))
    _check_frame(forecast, "forecast", ("unique_id", "ds", "y_hat"))
    ids = _pick_series(forecast, [str(i) for i in ids])
    chosen = _band_level(forecast, level)
    fig, axes = _grid(len(ids), ncols)
    for ax, sid in zip(axes, ids, strict=True):
        past, future = _series_parts(history, truth, sid, max_history)
        _draw_series(ax, past, _rows(forecast, sid), future, chosen, legend=False)
        _tidy_panel(ax, (titles or {}).get(sid, sid))
    _figure_legend(fig, axes[0])
    return fig


def plot_loss_curves(histories: Mapping[str, Any], ncols: int = 3) -> Figure:
    """Training loss and validation loss per epoch, one small panel per model.

    `histories` maps model name to a `seqcast.training.History` (or a dict of lists); only
    its "loss" and "val_loss" are drawn. Each panel has its own y scale (logarithmic when the
    values span more than two decades), since models train on different losses and scales.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise SeqcastError(
            "plot_loss_curves takes a non-empty dict of model name -> History, got "
            f"{histories!r:.80}"
        )
    losses = {}
    for name, history in histories.items():
        curves = _curves(history)
        kept = {k: curves[k] for k in ("loss", "val_loss") if k in curves}
        if not kept:
            raise SeqcastError(f"the history of {name!r} has no 'loss' to plot")
        losses[name] = kept
    fig, axes = _grid(len(losses), ncols, size=(PANEL_SIZE[0], PANEL_SIZE[1] * 0.85))
    for ax, (name, curves) in zip(axes, losses.items(), strict=True):
        for key, values in curves.items():
            style = "--" if key == "val_loss" else "-"
            ax.plot(np.arange(1, len(values) + 1), values, style, label=key)
        positive = np.concatenate(list(curves.values()))
        positive = positive[np.isfinite(positive) & (positive > 0)]
        if len(positive) and positive.max() > 100 * positive.min():
            ax.set_yscale("log")
        ax.set_xlabel("epoch", fontsize=8)
        _tidy_panel(ax, name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))  # whole epochs only
    _figure_legend(fig, axes[0])
    return fig


def _grid(n: int, ncols: int, size: tuple[float, float] = PANEL_SIZE) -> tuple[Figure, list]:
    """A figure of `n` panels, `ncols` across; the unused cells of the last row are hidden."""
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise SeqcastError(f"`ncols` must be a positive integer, got {ncols!r}")
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    # a little extra height for the figure legend above the panels
    fig = Figure(figsize=(size[0] * cols, size[1] * rows + 0.4), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _series_parts(
    history: pd.DataFrame, truth: pd.DataFrame | None, sid: str, max_history: int | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    _check_frame(history, "history", ("unique_id", "ds", "y"))
    if truth is not None:
        _check_frame(truth, "truth", ("unique_id", "ds", "y"))
    if max_history is not None and (
        isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1
    ):
        raise SeqcastError(f"`max_history` must be a positive integer, got {max_history!r}")
    past = _rows(history, sid)
    if max_history is not None:
        past = past.tail(max_history)
    return past, (_rows(truth, sid) if truth is not None else None)


def _band_level(forecast: pd.DataFrame, level: int | float | None) -> list[str]:
    """[label] when `forecast` has that interval level, else [] (a baseline may have none)."""
    if level is None:
        return []
    label = f"{level:g}"
    return [label] if label in _pick_levels(forecast, None) else []


def _tidy_panel(ax: Axes, title: str) -> None:
    """Small type, few ticks and compact dates: a small panel has room for little else."""
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    ax.set_xlabel(ax.get_xlabel() if ax.get_xlabel() == "epoch" else "")
    ax.set_ylabel("")
    lines = [line for line in ax.lines if len(line.get_xdata()) > 2]
    if lines and np.issubdtype(np.asarray(lines[0].get_xdata()).dtype, np.datetime64):
        locator = AutoDateLocator(minticks=3, maxticks=8)  # fewer warn: months step by 6 at most
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))


def _same_y(axes: list) -> None:
    """Give every panel the union of their y ranges, so heights compare across panels."""
    lows, highs = zip(*(ax.get_ylim() for ax in axes), strict=True)
    for ax in axes:
        ax.set_ylim(min(lows), max(highs))


def _figure_legend(fig: Figure, ax: Axes) -> None:
    """One legend above all panels, from the first panel's artists (all panels draw alike)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="outside upper center", ncols=len(handles), fontsize="small"
        )


# ----------------------------------------------------------------------------- output
def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at 120 dpi (parent folders are created) and close it."""
    if not isinstance(fig, Figure):
        raise SeqcastError(f"save_figure takes a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    _close(fig)
    return path


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The PNG bytes of `fig` (for inlining in a page rather than writing a file); the figure
    is closed."""
    if not isinstance(fig, Figure):
        raise SeqcastError(f"figure_png takes a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    _close(fig)
    return buffer.getvalue()


def _close(fig: Figure) -> None:
    """Release a pyplot-managed figure; a plain Figure (as made here) is just cleared."""
    if fig.canvas.manager is not None:
        import matplotlib.pyplot as plt  # only when the caller already uses pyplot

        plt.close(fig)
    else:
        fig.clear()


def _check_frame(frame: Any, name: str, columns: tuple[str, ...]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise SeqcastError(
            f"`{name}` must be a long DataFrame with columns {list(columns)}, got "
            f"{type(frame).__name__}"
        )
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise SeqcastError(
            f"`{name}` is missing column(s) {absent}; expected {list(columns)}, got "
            f"{list(map(str, frame.columns))}"
        )
    if len(frame) == 0:
        raise SeqcastError(f"`{name}` is empty; expected at least one row")
