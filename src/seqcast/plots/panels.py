"""Small multiples for reports: many models or many series side by side, one small panel
each, with one legend for the whole figure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqcast.errors import SeqcastError
from seqcast.plots.curves import history_curves, log_scale_if_wide
from seqcast.plots.forecast import (
    check_frame,
    check_max_history,
    draw_series,
    pick_levels,
    pick_series,
    rows,
)

PANEL_SIZE = (4.2, 2.7)  # inches per small-multiple panel: three fit across a laptop screen


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
        check_frame(frame, f"forecasts[{name!r}]", ("unique_id", "ds", "y_hat"))
    first = next(iter(forecasts.values()))
    sid = pick_series(first, unique_id)[0]
    past, future = _series_parts(history, truth, sid, max_history)
    fig, axes = _grid(len(forecasts), ncols)
    for ax, (name, frame) in zip(axes, forecasts.items(), strict=True):
        pick_series(frame, sid)  # every model must have forecast this series
        pred = rows(frame, sid)
        draw_series(ax, past, pred, future, _band_level(frame, level), legend=False)
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
    check_frame(history, "history", ("unique_id", "ds", "y"))
    check_frame(forecast, "forecast", ("unique_id", "ds", "y_hat"))
    ids = pick_series(forecast, [str(i) for i in ids])
    chosen = _band_level(forecast, level)
    fig, axes = _grid(len(ids), ncols)
    for ax, sid in zip(axes, ids, strict=True):
        past, future = _series_parts(history, truth, sid, max_history)
        draw_series(ax, past, rows(forecast, sid), future, chosen, legend=False)
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
        curves = history_curves(history)
        kept = {k: curves[k] for k in ("loss", "val_loss") if k in curves}
        if not kept:
            raise SeqcastError(f"the history of {name!r} has no 'loss' to plot")
        losses[name] = kept
    fig, axes = _grid(len(losses), ncols, size=(PANEL_SIZE[0], PANEL_SIZE[1] * 0.85))
    for ax, (name, curves) in zip(axes, losses.items(), strict=True):
        for key, values in curves.items():
            style = "--" if key == "val_loss" else "-"
            ax.plot(np.arange(1, len(values) + 1), values, style, label=key)
        log_scale_if_wide(ax, list(curves.values()))
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
    n_rows = math.ceil(n / cols)
    # a little extra height for the figure legend above the panels
    fig = Figure(figsize=(size[0] * cols, size[1] * n_rows + 0.4), layout="constrained")
    axes = list(fig.subplots(n_rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _series_parts(
    history: pd.DataFrame, truth: pd.DataFrame | None, sid: str, max_history: int | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    check_frame(history, "history", ("unique_id", "ds", "y"))
    if truth is not None:
        check_frame(truth, "truth", ("unique_id", "ds", "y"))
    check_max_history(max_history)
    past = rows(history, sid)
    if max_history is not None:
        past = past.tail(max_history)
    return past, (rows(truth, sid) if truth is not None else None)


def _band_level(forecast: pd.DataFrame, level: int | float | None) -> list[str]:
    """[label] when `forecast` has that interval level, else [] (a baseline may have none)."""
    if level is None:
        return []
    label = f"{level:g}"
    return [label] if label in pick_levels(forecast, None) else []


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
