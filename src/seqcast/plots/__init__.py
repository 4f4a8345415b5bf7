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

Modules: `forecast` (one panel per series, and the drawing every forecast panel shares),
`curves` (training curves), `leaderboard`, `panels` (small multiples), `output` (PNG).
"""

from __future__ import annotations

# the constants the figures are drawn with stay importable from here ("X as X": re-exported)
from seqcast.plots.curves import plot_learning_curves
from seqcast.plots.forecast import FORECAST_COLOR as FORECAST_COLOR
from seqcast.plots.forecast import HISTORY_COLOR as HISTORY_COLOR
from seqcast.plots.forecast import MAX_PANELS as MAX_PANELS
from seqcast.plots.forecast import TRUTH_COLOR as TRUTH_COLOR
from seqcast.plots.forecast import plot_forecast
from seqcast.plots.leaderboard import BASELINE_COLOR as BASELINE_COLOR
from seqcast.plots.leaderboard import BETTER_COLOR as BETTER_COLOR
from seqcast.plots.leaderboard import WORSE_COLOR as WORSE_COLOR
from seqcast.plots.leaderboard import plot_leaderboard
from seqcast.plots.output import DPI as DPI
from seqcast.plots.output import figure_png, save_figure
from seqcast.plots.panels import PANEL_SIZE as PANEL_SIZE
from seqcast.plots.panels import plot_loss_curves, plot_model_forecasts, plot_series_panels

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
