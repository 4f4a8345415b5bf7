"""Per-epoch training curves from a `seqcast.training.History` (or a dict of lists)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqcast.errors import SeqcastError


def plot_learning_curves(history: Any) -> Figure:
    """Per-epoch curves from a `seqcast.training.History` (or a dict of lists).

    Losses ("loss", "val_loss") share the first panel; each other metric gets a panel with its
    `val_` twin. A panel's y axis is logarithmic when its positive values span more than two
    decades.
    """
    curves = history_curves(history)
    panels = _panels(curves)
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, panels.items(), strict=True):
        for key in keys:
            values = curves[key]
            style = "--" if key.startswith("val_") else "-"
            ax.plot(np.arange(1, len(values) + 1), values, style, marker=".", label=key)
        log_scale_if_wide(ax, [curves[k] for k in keys])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.legend(loc="best", fontsize="small")
    return fig


def history_curves(history: Any) -> dict[str, np.ndarray]:
    """Name -> per-epoch values of a History or a dict of lists; empty entries are dropped."""
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


def log_scale_if_wide(ax: Axes, curves: list[np.ndarray]) -> None:
    """A logarithmic y axis when the positive values span more than two decades."""
    values = np.concatenate(curves)
    positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) and positive.max() > 100 * positive.min():
        ax.set_yscale("log")


def _panels(curves: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Panel name -> curve keys: "loss" first, then one per metric with its val_ twin."""
    panels: dict[str, list[str]] = {}
    for key in curves:
        base = key.removeprefix("val_")
        panels.setdefault(base, []).append(key)
    order = sorted(panels, key=lambda name: name != "loss")
    return {name: panels[name] for name in order}
