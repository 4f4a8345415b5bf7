"""A comparison as one HTML page a person can open, mail or archive.

    result = seqcast.compare.compare(data, horizon=12, season=12)
    write_html(result, "report.html", title="Airline passengers")

The page is a single self-contained file: figures are inline base64 PNGs, styles sit in one
<style> block, and there are no scripts, fonts or links to fetch, so it reads the same offline,
from an attachment or years later. It shows the data, the winner against the seasonal-naive
baseline, the leaderboard (the figures of leaderboard.csv, cell for cell), each model's
forecast of one series, the best model's worst and best series, and the training curves.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import metrics, plots
from seqcast.errors import SeqcastError

__all__ = ["write_html", "render_html", "leaderboard_cells", "per_series_scores"]

# leaderboard.csv and the page's table both print floats with this rule, so the page shows
# exactly the file's figures (6 significant digits; a missing value is an empty cell)
CSV_FLOAT_FORMAT = "%.6g"
BASELINES = ("seasonal_naive", "naive")  # the first one present is what the winner must beat
EXTREMES = 3  # worst and best series shown when there are many
IMAGE_DPI = 100  # enough for a screen; keeps the page a few hundred kB


def write_html(comparison: Any, path: str | Path, title: str | None = None) -> Path:
    """Write the report of `comparison` (what `seqcast.compare.compare` returns) to `path`."""
    path = Path(path)
    page = render_html(comparison, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def render_html(comparison: Any, title: str | None = None) -> str:
    """The report as one HTML string (see the module docstring for what it holds)."""
    _check(comparison)
    title = title or "Forecast comparison"
    sections = [
        f"<h1>{_e(title)}</h1>",
        _verdict(comparison.leaderboard),
        _summary(comparison),
        _leaderboard(comparison.leaderboard),
        _forecasts(comparison),
        _extremes(comparison),
        _training(comparison),
        _failures(comparison),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def leaderboard_cells(board: pd.DataFrame) -> list[list[str]]:
    """Header and rows of the leaderboard exactly as leaderboard.csv spells them: the page's
    table is built from these, so it cannot drift from the file."""
    text = board.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)
    return list(csv.reader(io.StringIO(text)))


def per_series_scores(comparison: Any, model: str) -> pd.DataFrame:
    """MASE and sMAPE of `model` on each series, worst first (by MASE; by sMAPE where MASE is
    undefined, e.g. a training series that repeats itself exactly)."""
    season = _season(comparison)
    pred = comparison.forecasts[model]
    joined = pred.merge(comparison.test[["unique_id", "ds", "y"]], on=["unique_id", "ds"])
    train = comparison.train
    rows = []
    for sid, part in joined.groupby("unique_id", sort=False):
        y, y_hat = part["y"].to_numpy(), part["y_hat"].to_numpy()
        history = train.loc[train["unique_id"] == sid, "y"].to_numpy()
        try:
            mase = metrics.mase(y, y_hat, history, season)
        except SeqcastError:
            mase = np.nan
        rows.append({"unique_id": str(sid), "mase": mase, "smape": metrics.smape(y, y_hat)})
    scores = pd.DataFrame(rows, columns=["unique_id", "mase", "smape"])
    key = "mase" if scores["mase"].notna().any() else "smape"
    return scores.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


# ----------------------------------------------------------------------------- sections
def _summary(c: Any) -> str:
    n_series = c.test["unique_id"].nunique()
    horizon = _horizon(c)
    start, end = c.train["ds"].min(), c.test["ds"].max()
    items = [
        ("series", f"{n_series}"),
        ("horizon", f"{horizon} points held out per series"),
        ("held-out points", f"{len(c.test)} in all, scored against each forecast"),
        ("season", f"{_season(c)}"),
        ("training points", f"{len(c.train)}"),
        ("time span", f"{_stamp(start)} to {_stamp(end)}"),
        ("models", f"{len(c.leaderboard)}: " + ", ".join(map(str, c.leaderboard["model"]))),
    ]
    auto = _auto_choice(c)
    if auto:
        items.append(("auto", auto))  # auto picks its own members: say which it settled on
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<section id="data"><h2>Data</h2><dl class="summary">{rows}</dl></section>'


def _verdict(board: pd.DataFrame) -> str:
    """One sentence in large type: who won, and by how much against the baseline."""
    by = board.set_index("model")["mase"]
    best = str(board["model"].iloc[0])
    baseline = next((b for b in BASELINES if b in by.index), None)
    if baseline is None or not np.isfinite(by.get(baseline, np.nan)):
        text = f"Best model: <b>{_e(best)}</b>, MASE {_num(by[best])}."
        return f'<p id="verdict" class="verdict">{text}</p>'
    if best == baseline:
        text = (
            f"No model beat the <b>{_e(baseline)}</b> baseline "
            f"(MASE {_num(by[baseline])}); it tops the leaderboard."
        )
        return f'<p id="verdict" class="verdict worse">{text}</p>'
    gain = 1 - by[best] / by[baseline]
    text = (
        f"<b>{_e(best)}</b> wins with MASE <b>{_num(by[best])}</b>: "
        f"<b>{gain:.0%} lower error</b> than the {_e(baseline)} baseline "
        f"(MASE {_num(by[baseline])})."
    )
    return f'<p id="verdict" class="verdict">{text}</p>'


def _leaderboard(board: pd.DataFrame) -> str:
    header, *rows = leaderboard_cells(board)
    baseline = next((b for b in BASELINES if b in set(board["model"])), None)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for rank, row in enumerate(rows):
        classes = ["best"] * (rank == 0) + ["baseline"] * (row[0] == baseline)
        cells = "".join(
            # an empty CSV cell stays empty in the DOM; CSS writes "n/a" after it for the eye
            f'<td class="{"na" if cell == "" else ("num" if i else "name")}">{_e(cell)}</td>'
            for i, cell in enumerate(row)
        )
        body.append(f'<tr class="{" ".join(classes)}">{cells}</tr>')
    table = (
        f'<table id="leaderboard"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    chart = _image(plots.plot_leaderboard(board), "MASE per model, best on top")
    note = (
        "Sorted by MASE (lower is better; below 1 beats the in-sample seasonal-naive error). "
        "The figures are those of leaderboard.csv: 6 significant digits (printf "
        f"<code>{CSV_FLOAT_FORMAT}</code>), n/a where a value is missing. Green row: the "
        "winner; grey: the baseline."
    )
    return (
        f'<section id="leaderboard-section"><h2>Leaderboard</h2><p class="note">{note}</p>'
        f'<div class="board">{table}<figure>{chart}</figure></div></section>'
    )


def _forecasts(c: Any) -> str:
    """Every model's forecast of one series, in leaderboard order, on one y scale."""
    sid = str(c.test["unique_id"].iloc[0])
    order = [str(m) for m in c.leaderboard["model"] if m in c.forecasts]
    mase = c.leaderboard.set_index("model")["mase"]
    titles = {
        m: f"{k + 1}. {m}   MASE {_num(mase[m])}{_against_baseline(mase, m)}"
        for k, m in enumerate(order)
    }
    fig = plots.plot_model_forecasts(
        c.train,
        {m: c.forecasts[m] for m in order},
        truth=c.test,
        unique_id=sid,
        titles=titles,
        max_history=_tail(c),
    )
    n_series = c.test["unique_id"].nunique()
    which = f"series {sid!r}" + (f" (the first of {n_series})" if n_series > 1 else "")
    return (
        '<section id="forecasts"><h2>Forecasts by model</h2>'
        f'<p class="note">Each model\'s forecast of {_e(which)} with its 80% interval, '
        "against the held-out truth (black dots), in leaderboard order. All panels share "
        f"one y scale. MASE is over all series.</p><figure>"
        f"{_image(fig, 'forecast of each model with 80% band and the truth')}</figure></section>"
    )


def _extremes(c: Any) -> str:
    """The best model's worst and best series: where it fails matters as much as its mean."""
    n_series = c.test["unique_id"].nunique()
    if n_series < 2:
        return ""
    best = c.best
    scores = per_series_scores(c, best)
    if n_series <= 2 * EXTREMES:
        shown, label = scores, f"all {n_series} series, worst first"
    else:
        shown = pd.concat([scores.head(EXTREMES), scores.tail(EXTREMES)])
        label = f"the {EXTREMES} worst (top row) and {EXTREMES} best of {n_series} series"
    titles = {
        row.unique_id: f"{row.unique_id}   MASE {_num(row.mase)}   sMAPE {_num(row.smape)}"
        for row in shown.itertuples()
    }
    fig = plots.plot_series_panels(
        c.train,
        c.forecasts[best],
        list(shown["unique_id"]),
        truth=c.test,
        titles=titles,
        max_history=_tail(c),
    )
    return (
        f'<section id="extremes"><h2>Worst and best series of {_e(best)}</h2>'
        f'<p class="note">{_e(best)} on {_e(label)}, ranked by its per-series MASE.</p>'
        f"<figure>{_image(fig, f'worst and best series of {best}')}</figure></section>"
    )


def _training(c: Any) -> str:
    order = [str(m) for m in c.leaderboard["model"] if m in c.forecasters]
    histories = {m: h for m in order if (h := _history(c.forecasters[m])) is not None}
    notes = []
    untrained = [m for m in order if m not in histories and m != "auto"]
    if untrained:
        notes.append(f"No curve for {', '.join(untrained)}: nothing learned by gradient descent.")
    if "auto" in order and "auto" not in histories:
        where = " (what it chose is under Data)" if _auto_choice(c) else ""
        notes.append(f"No curve for auto: it trains inside its own backtest{where}.")
    parts = ['<section id="training"><h2>Training curves</h2>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    if histories:
        fig = plots.plot_loss_curves(histories)
        parts.append(
            '<p class="note">Loss (solid) and validation loss (dashed) per epoch, on the '
            "scaled series each model trains on.</p>"
            f"<figure>{_image(fig, 'training and validation loss per epoch')}</figure>"
        )
    parts.append("</section>")
    return "".join(parts)


def _failures(c: Any) -> str:
    errors = getattr(c, "errors", None) or {}
    if not errors:
        return ""
    items = "".join(f"<li><b>{_e(m)}</b>: {_e(msg)}</li>" for m, msg in errors.items())
    return f'<section id="errors"><h2>Models that failed</h2><ul>{items}</ul></section>'


# ----------------------------------------------------------------------------- helpers
def _check(comparison: Any) -> None:
    needed = ("leaderboard", "forecasts", "forecasters", "train", "test")
    absent = [name for name in needed if not hasattr(comparison, name)]
    if absent:
        raise SeqcastError(
            f"write_html takes what seqcast.compare.compare returns; {type(comparison).__name__} "
            f"has no {', '.join(absent)}"
        )
    if len(comparison.leaderboard) == 0:
        raise SeqcastError("the leaderboard is empty: there is nothing to report")


def _history(fc: Any) -> Any:
    """The fitted model's History when it has a non-empty loss curve, else None."""
    history = getattr(fc, "history_", None)
    curves = getattr(history, "history", None) or {}
    return history if len(curves.get("loss", [])) else None


def _auto_choice(c: Any) -> str | None:
    """What auto fitted and chose, as `AutoModel.describe` words it (less its "auto: ")."""
    fc = c.forecasters.get("auto")
    describe = getattr(getattr(fc, "auto_", None), "describe", None)
    return str(describe()).removeprefix("auto: ") if callable(describe) else None


def _season(c: Any) -> int:
    seasons = [getattr(fc, "season", None) for fc in c.forecasters.values()]
    return int(next((s for s in seasons if s), 1))


def _horizon(c: Any) -> int:
    return int(c.test.groupby("unique_id", sort=False).size().max())


def _tail(c: Any) -> int:
    """History shown before the forecast: enough to see a few seasons, not the whole past."""
    return max(4 * _horizon(c), 3 * _season(c), 24)


def _against_baseline(mase: pd.Series, model: str) -> str:
    """ ", -23% vs seasonal_naive": the change in MASE a panel title needs to be read alone."""
    baseline = next((b for b in BASELINES if b in mase.index), None)
    if baseline is None or model == baseline:
        return ""
    change = mase[model] / mase[baseline] - 1
    return f", {change:+.0%} vs {baseline}" if np.isfinite(change) else ""


def _image(fig: Any, alt: str) -> str:
    data = base64.b64encode(plots.figure_png(fig, dpi=IMAGE_DPI)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _num(value: Any) -> str:
    value = float(value)
    return f"{value:.3f}" if np.isfinite(value) else "n/a"


def _stamp(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else str(value)
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
body { margin: 0; background: #f6f7f9; color: #1d232b;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #d5d9df; padding-bottom: 4px; }
section { margin-bottom: 8px; }
.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
.summary dt { color: #5b6470; }
.summary dd { margin: 0; }
.verdict { font-size: 22px; margin: 20px 0 4px; padding: 14px 18px; border-radius: 6px;
  background: #e6f4ea; border-left: 6px solid #2e8b57; }
.verdict.worse { background: #fdf3e1; border-left-color: #d9822b; }
.note { color: #4a525c; font-size: 14px; margin: 4px 0 10px; }
.board { display: flex; flex-direction: column; gap: 16px; align-items: flex-start; }
.board figure { max-width: 800px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e6ea; }
th { background: #eef0f3; text-align: right; font-weight: 600; }
th:first-child, td.name { text-align: left; }
td.num, td.na { text-align: right; font-variant-numeric: tabular-nums;
  font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.na::after { content: "n/a"; color: #9aa1a9; }
tr.best td { background: #e6f4ea; font-weight: 600; }
tr.baseline td { background: #eceef1; }
figure { margin: 0; }
img { max-width: 100%; height: auto; background: #fff; border: 1px solid #e3e6ea; }
code { font-size: 13px; }
"""
