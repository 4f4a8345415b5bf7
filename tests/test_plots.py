"""Figures: what each plot draws, PNG output, and the errors for bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seqcast.errors import SeqcastError  # noqa: E402
from seqcast.plots import (  # noqa: E402
    figure_png,
    plot_forecast,
    plot_leaderboard,
    plot_learning_curves,
    plot_loss_curves,
    plot_model_forecasts,
    plot_series_panels,
    save_figure,
)
from seqcast.training import History  # noqa: E402


def _history(ids=("a",), n=30) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"unique_id": sid, "ds": np.arange(n), "y": np.sin(np.arange(n) / 3) + k})
        for k, sid in enumerate(ids)
    ]
    return pd.concat(parts, ignore_index=True)


def _forecast(ids=("a",), n=30, horizon=6, levels=(80, 95)) -> pd.DataFrame:
    parts = []
    for k, sid in enumerate(ids):
        part = pd.DataFrame(
            {"unique_id": sid, "ds": np.arange(n, n + horizon), "y_hat": np.full(horizon, k)}
        )
        for level in levels:
            half = level / 100
            part[f"y_lo_{level}"], part[f"y_hi_{level}"] = k - half, k + half
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _truth(ids=("a",), n=30, horizon=6) -> pd.DataFrame:
    frame = _forecast(ids, n, horizon, levels=())
    return frame.rename(columns={"y_hat": "y"})


def _bands(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ----------------------------------------------------------------------------- forecast
def test_forecast_one_series_draws_everything():
    fig = plot_forecast(_history(), _forecast(), truth=_truth(), title="demo")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(_bands(ax)) == 2  # one band per interval level
    # history, forecast, truth, origin line
    assert len(ax.lines) == 4
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"history", "forecast", "actual", "80% interval", "95% interval"} <= set(labels)
    assert ax.get_title() == "demo"
    assert ax.get_xlabel() == "ds" and ax.get_ylabel() == "y"
    origin = ax.lines[-1]
    assert list(origin.get_xdata()) == [29, 29]


def test_forecast_wider_band_is_lighter():
    (ax,) = plot_forecast(_history(), _forecast()).axes
    by_label = {c.get_label(): c.get_alpha() for c in _bands(ax)}
    assert by_label["95% interval"] < by_label["80% interval"]


def test_forecast_levels_and_history_options():
    fig = plot_forecast(_history(), _forecast(), levels=[80], max_history=10)
    (ax,) = fig.axes
    assert len(_bands(ax)) == 1
    assert len(ax.lines) == 3  # no truth
    assert len(ax.lines[0].get_xdata()) == 10


def test_forecast_without_intervals():
    (ax,) = plot_forecast(_history(), _forecast(levels=())).axes
    assert _bands(ax) == []


def test_forecast_panels_capped_at_six():
    ids = [f"s{i}" for i in range(8)]
    fig = plot_forecast(_history(ids), _forecast(ids))
    assert len(fig.axes) == 6
    assert "2 not shown" in fig.get_suptitle()
    assert [ax.get_title() for ax in fig.axes] == ids[:6]


def test_forecast_picks_series():
    fig = plot_forecast(_history(["a", "b"]), _forecast(["a", "b"]), unique_id="b")
    assert len(fig.axes) == 1 and "b" in fig.axes[0].get_title()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"history": _history().drop(columns="y")}, ["history", "'y'"]),
        ({"forecast": _forecast().drop(columns="y_hat")}, ["forecast", "'y_hat'"]),
        ({"forecast": _forecast().iloc[:0]}, ["forecast", "empty"]),
        ({"truth": _truth().drop(columns="ds")}, ["truth", "'ds'"]),
        ({"unique_id": "zzz"}, ["'zzz'", "not in the forecast"]),
        ({"levels": [50]}, ["level 50", "80", "95"]),
        ({"max_history": 0}, ["max_history"]),
    ],
)
def test_forecast_bad_input(kwargs, words):
    args = {"history": _history(), "forecast": _forecast(), **kwargs}
    with pytest.raises(SeqcastError) as err:
        plot_forecast(**args)
    for word in words:
        assert word in str(err.value)


# ----------------------------------------------------------------------------- curves
def test_learning_curves_from_history_object():
    history = History(
        {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6], "mae": [0.9, 0.6, 0.5]}
    )
    fig = plot_learning_curves(history)
    assert len(fig.axes) == 2  # losses, then mae
    loss_ax, mae_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(mae_ax.lines) == 1
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert loss_ax.get_xlabel() == "epoch"
    assert loss_ax.get_yscale() == "linear"


def test_learning_curves_log_scale_when_spanning_decades():
    fig = plot_learning_curves({"loss": [100.0, 1.0, 0.01]})
    assert fig.axes[0].get_yscale() == "log"


@pytest.mark.parametrize("bad", [{}, {"loss": []}, History(), [1, 2, 3], {"loss": ["a"]}])
def test_learning_curves_bad_input(bad):
    with pytest.raises(SeqcastError):
        plot_learning_curves(bad)


# ----------------------------------------------------------------------------- leaderboard
def _board() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["naive", "seasonal_naive", "lstm", "gru", "broken"],
            "mase": [1.5, 1.0, 0.7, 1.2, np.nan],
            "coverage_80": [0.5, 0.6, 0.82, 0.9, np.nan],
        }
    )


def test_leaderboard_sorted_with_baseline_and_colours():
    fig = plot_leaderboard(_board())
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = list(ax.get_yticks())
    top_down = [label for _, label in sorted(zip(ticks, labels, strict=True), reverse=True)]
    assert top_down == ["lstm", "seasonal_naive", "gru", "naive", "broken"]
    assert len(ax.patches) == 5
    colours = {label: bar.get_facecolor() for label, bar in zip(top_down, ax.patches, strict=True)}
    assert colours["lstm"] != colours["gru"] == colours["naive"] == colours["seasonal_naive"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [1.0, 1.0]
    texts = [t.get_text().strip() for t in ax.texts]
    assert texts == ["0.7", "1", "1.2", "1.5", "n/a"]


def test_leaderboard_coverage_closest_to_nominal_first():
    (ax,) = plot_leaderboard(_board(), metric="coverage_80").axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "lstm"  # the top bar: 0.82 is closest to 0.80


def test_leaderboard_without_baseline_and_model_index():
    board = _board().set_index("model").drop(index="seasonal_naive")
    (ax,) = plot_leaderboard(board).axes
    assert len(ax.patches) == 4
    assert not [line for line in ax.lines if line.get_linestyle() == "--"]


@pytest.mark.parametrize(
    ("table", "metric", "words"),
    [
        (_board(), "accuracy", ["unknown metric 'accuracy'", "'mase'"]),
        (_board().iloc[:0], "mase", ["empty"]),
        ({"model": ["a"]}, "mase", ["DataFrame"]),
    ],
)
def test_leaderboard_bad_input(table, metric, words):
    with pytest.raises(SeqcastError) as err:
        plot_leaderboard(table, metric=metric)
    for word in words:
        assert word in str(err.value)


# ----------------------------------------------------------------------------- small multiples
def _visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_model_forecasts_one_panel_per_model_on_one_scale():
    ids = ["a", "b"]
    forecasts = {
        "lstm": _forecast(ids),
        "naive": _forecast(ids, levels=()),  # a model without intervals: no band, still drawn
        "gru": _forecast(ids),
        "wavenet": _forecast(ids),
    }
    fig = plot_model_forecasts(
        _history(ids), forecasts, truth=_truth(ids), unique_id="b", titles={"gru": "2. gru"}
    )
    axes = _visible(fig)
    assert len(fig.axes) == 6 and len(axes) == 4  # 3 across; the 2 spare cells are hidden
    assert [ax.get_title(loc="left") for ax in axes] == ["lstm", "naive", "2. gru", "wavenet"]
    assert [len(_bands(ax)) for ax in axes] == [1, 0, 1, 1]
    assert len({ax.get_ylim() for ax in axes}) == 1  # heights compare across panels
    # series "b" (level 1 in the fixtures), not "a": its forecast line sits at 1
    assert set(axes[0].lines[1].get_ydata()) == {1}
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["80% interval", "history"]
    assert all(ax.get_legend() is None for ax in axes)  # one legend for the figure


def test_model_forecasts_default_series_and_history_tail():
    fig = plot_model_forecasts(_history(["a", "b"]), {"m": _forecast(["a", "b"])}, max_history=5)
    (ax,) = _visible(fig)
    assert len(ax.lines[0].get_xdata()) == 5
    assert set(ax.lines[1].get_ydata()) == {0}  # series "a", the first


@pytest.mark.parametrize(
    ("forecasts", "kwargs", "words"),
    [
        ({}, {}, ["non-empty dict"]),
        ({"m": _forecast().drop(columns="y_hat")}, {}, ["forecasts['m']", "'y_hat'"]),
        ({"m": _forecast(["a"]), "n": _forecast(["b"])}, {}, ["'a'", "not in the forecast"]),
        ({"m": _forecast()}, {"ncols": 0}, ["ncols"]),
        ({"m": _forecast()}, {"max_history": 0}, ["max_history"]),
    ],
)
def test_model_forecasts_bad_input(forecasts, kwargs, words):
    with pytest.raises(SeqcastError) as err:
        plot_model_forecasts(_history(["a", "b"]), forecasts, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_series_panels_in_the_order_given_with_own_scales():
    ids = ["a", "b", "c", "d"]
    fig = plot_series_panels(
        _history(ids), _forecast(ids), ["d", "a"], truth=_truth(ids), titles={"d": "worst: d"}
    )
    axes = _visible(fig)
    assert [ax.get_title(loc="left") for ax in axes] == ["worst: d", "a"]
    assert axes[0].get_ylim() != axes[1].get_ylim()  # series differ in level
    assert len(_bands(axes[0])) == 1 and len(axes[0].lines) == 4


def test_series_panels_unknown_series():
    with pytest.raises(SeqcastError, match="'zzz' is not in the forecast"):
        plot_series_panels(_history(), _forecast(), ["zzz"])


def test_loss_curves_one_panel_per_model_loss_and_val_loss_only():
    histories = {
        "lstm": History({"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6], "mae": [1, 1, 1]}),
        "gru": {"loss": [100.0, 1.0, 0.01]},
    }
    fig = plot_loss_curves(histories)
    lstm, gru = _visible(fig)
    assert [ax.get_title(loc="left") for ax in (lstm, gru)] == ["lstm", "gru"]
    assert [line.get_label() for line in lstm.lines] == ["loss", "val_loss"]
    assert lstm.lines[1].get_linestyle() == "--"
    assert list(lstm.lines[0].get_xdata()) == [1, 2, 3]
    assert gru.get_yscale() == "log" and lstm.get_yscale() == "linear"
    assert all(float(t).is_integer() for t in lstm.get_xticks())  # whole epochs


@pytest.mark.parametrize("bad", [{}, {"m": {"mae": [1.0]}}, {"m": {}}, [1, 2]])
def test_loss_curves_bad_input(bad):
    with pytest.raises(SeqcastError):
        plot_loss_curves(bad)


def test_figure_png_returns_bytes():
    data = figure_png(plot_loss_curves({"m": {"loss": [1.0, 0.5]}}), dpi=50)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(SeqcastError, match="Figure"):
        figure_png("not a figure")


# ----------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "make",
    [
        lambda: plot_forecast(_history(), _forecast(), truth=_truth()),
        lambda: plot_learning_curves({"loss": [1.0, 0.5]}),
        lambda: plot_leaderboard(_board()),
    ],
)
def test_save_figure_writes_png(tmp_path, make):
    path = save_figure(make(), tmp_path / "sub" / "figure.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_save_figure_rejects_non_figures(tmp_path):
    with pytest.raises(SeqcastError, match="Figure"):
        save_figure("not a figure", tmp_path / "x.png")
