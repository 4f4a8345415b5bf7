"""`plot_leaderboard`: one bar per model, best on top, the baseline as a dashed line."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seqcast.errors import SeqcastError

BETTER_COLOR, WORSE_COLOR, BASELINE_COLOR = "tab:green", "tab:gray", "tab:red"


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
