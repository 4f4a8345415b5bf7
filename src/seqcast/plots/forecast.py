"""`plot_forecast`: history, forecast, interval bands and actual values, a panel per series;
and the checks, series and level selection and panel drawing that the small multiples in
`seqcast.plots.panels` share with it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from seqcast.errors import SeqcastError

MAX_PANELS = 6
HISTORY_COLOR, FORECAST_COLOR, TRUTH_COLOR = "C0", "C1", "black"
_LEVEL = re.compile(r"^y_lo_(\d+(?:\.\d+)?)$")


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
    check_frame(history, "history", ("unique_id", "ds", "y"))
    check_frame(forecast, "forecast", ("unique_id", "ds", "y_hat"))
    if truth is not None:
        check_frame(truth, "truth", ("unique_id", "ds", "y"))
    check_max_history(max_history)
    ids = pick_series(forecast, unique_id)
    chosen = pick_levels(forecast, levels)
    shown, left_out = ids[:MAX_PANELS], len(ids) - MAX_PANELS

    fig = Figure(figsize=(10, 3.2 * len(shown) + 0.6), layout="constrained")
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, sid in zip(axes, shown, strict=True):
        past = rows(history, sid)
        if max_history is not None:
            past = past.tail(max_history)
        future = rows(truth, sid) if truth is not None else None
        draw_series(ax, past, rows(forecast, sid), future, chosen)
        ax.set_title(sid if len(shown) > 1 else (title or f"forecast for {sid}"))
    if len(shown) > 1 or left_out > 0:
        heading = title or "forecasts"
        if left_out > 0:
            heading += f" (first {len(shown)} of {len(ids)} series; {left_out} not shown)"
        fig.suptitle(heading)
    return fig


def draw_series(
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


def pick_series(forecast: pd.DataFrame, unique_id: str | Sequence[str] | None) -> list[str]:
    """The ids asked for (default: every series of `forecast`); an unknown one is an error."""
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


def pick_levels(forecast: pd.DataFrame, levels: Iterable[int | float] | None) -> list[str]:
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


def rows(frame: pd.DataFrame, sid: str) -> pd.DataFrame:
    return frame[frame["unique_id"].astype(str) == sid]


def check_max_history(max_history: Any) -> None:
    if max_history is not None and (
        isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1
    ):
        raise SeqcastError(f"`max_history` must be a positive integer, got {max_history!r}")


def check_frame(frame: Any, name: str, columns: tuple[str, ...]) -> None:
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
