"""report.html: one self-contained page whose leaderboard is leaderboard.csv cell for cell.

The first tests parse the page with the stdlib HTML parser. The browser tests then open the
file `seqcast compare` wrote in a real headless Chromium, driven over the DevTools protocol
on a pipe (stdlib only: no websocket client, no port), and check what a reader's browser
does with it: every request it makes, every console message, the table it renders, and that
every image decodes. They skip when no chromium binary is installed.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from seqcast.cli import app
from seqcast.compare import compare
from seqcast.errors import SeqcastError
from seqcast.report import CSV_FLOAT_FORMAT, per_series_scores, render_html, write_html

HORIZON, SEASON = 6, 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BROWSER_SECONDS = 60  # the whole browser session, start to close; it takes ~2 s here


def _three_series() -> pd.DataFrame:
    """Three monthly series of different levels, trends and noise, 5 years each."""
    rng = np.random.default_rng(0)
    t = np.arange(60)
    parts = [
        pd.DataFrame(
            {
                "unique_id": sid,
                "ds": pd.date_range("2019-01-01", periods=len(t), freq="MS"),
                "y": level + slope * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, noise, 60),
            }
        )
        for sid, level, slope, noise in (("a", 20, 0.1, 0.3), ("b", 50, 0.3, 2.0), ("c", 10, 0, 1))
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def comparison():
    return compare(_three_series(), HORIZON, SEASON, models="linear", epochs=3)


@pytest.fixture(scope="module")
def written(comparison, tmp_path_factory):
    """report.html and leaderboard.csv, the CSV written as `seqcast compare` writes it."""
    folder = tmp_path_factory.mktemp("report")
    board_csv = folder / "leaderboard.csv"
    comparison.leaderboard.to_csv(board_csv, index=False, float_format=CSV_FLOAT_FORMAT)
    page = write_html(comparison, folder / "report.html", title="Three series")
    return page, board_csv


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory):
    """What `seqcast compare` writes for the three series: the real artifact."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "three.csv"
    _three_series().to_csv(data, index=False)
    args = ["compare", str(data), "--horizon", str(HORIZON), "--season", str(SEASON)]
    args += ["--models", "linear", "--epochs", "3", "--out", str(folder / "out"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return folder / "out"


# ----------------------------------------------------------------------------- parsing
class Page(HTMLParser):
    """Every tag with its attributes, the <style> text, the leaderboard table's cells, and
    the text of the element with id="verdict"."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.style, self.verdict = "", ""
        self.table: list[list[str]] = []
        self._in: list[str] = []  # open elements we collect text from: style, table, verdict
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag == "style" or attrs.get("id") in ("leaderboard", "verdict"):
            self._in.append(attrs.get("id") or tag)
        if "leaderboard" in self._in and tag == "tr":
            self.table.append([])
        if "leaderboard" in self._in and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if self._cell is not None and tag in ("td", "th"):
            self.table[-1].append("".join(self._cell))
            self._cell = None
        if self._in and tag == {"leaderboard": "table", "verdict": "p"}.get(self._in[-1], "style"):
            self._in.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._in and self._in[-1] == "style":
            self.style += data
        elif "verdict" in self._in:
            self.verdict += data

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    def images(self) -> list[bytes]:
        prefix = "data:image/png;base64,"
        sources = [a.get("src", "") for tag, a in self.tags if tag == "img"]
        assert all(s.startswith(prefix) for s in sources), [s[:40] for s in sources]
        return [base64.b64decode(s[len(prefix) :]) for s in sources]


def _csv_cells(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


URL_ATTRIBUTES = {"src", "href", "srcset", "poster", "action", "data", "background", "xlink:href"}


def _external_references(page: Page) -> list[str]:
    """Anything in the page that would make a browser fetch something: tags that load
    resources, URL attributes that are not inline data: or in-page #anchors, CSS url()."""
    found = [f"<{t}>" for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in URL_ATTRIBUTES and not value.startswith(("data:", "#")):
                found.append(f"<{tag} {name}={value[:60]!r}>")
    found += [css for css in ("url(", "@import") if css in page.style]
    return found


# ----------------------------------------------------------------------------- the page
def test_page_fetches_nothing(written):
    text = written[0].read_text(encoding="utf-8")
    assert _external_references(Page(text)) == []
    assert "http://" not in text and "https://" not in text


def test_leaderboard_table_is_the_csv_cell_for_cell(written):
    page_path, board_csv = written
    table = Page(page_path.read_text(encoding="utf-8")).table
    expected = _csv_cells(board_csv)
    assert table == expected
    assert {row[0] for row in table[1:]} == {"linear", "seasonal_naive", "naive"}


def test_figures_are_inline_pngs(written):
    page = Page(written[0].read_text(encoding="utf-8"))
    images = page.images()
    # leaderboard chart, forecasts by model, worst/best series, training curves
    assert len(images) == 4
    assert all(png.startswith(PNG_MAGIC) and len(png) > 5_000 for png in images)
    assert {"verdict", "data", "leaderboard", "forecasts", "extremes", "training"} <= page.ids()


def test_verdict_names_the_winner_and_the_baseline(comparison, written):
    verdict = " ".join(Page(written[0].read_text(encoding="utf-8")).verdict.split())
    board = comparison.leaderboard.set_index("model")["mase"]
    if comparison.best == "seasonal_naive":
        assert verdict.startswith("No model beat the seasonal_naive baseline")
    else:
        gain = 1 - board[comparison.best] / board["seasonal_naive"]
        assert verdict.startswith(f"{comparison.best} wins with MASE {board.iloc[0]:.3f}")
        assert f"{gain:.0%} lower error than the seasonal_naive baseline" in verdict


def test_summary_counts_series_and_held_out_points(written):
    text = " ".join(written[0].read_text(encoding="utf-8").split())
    assert "<dt>series</dt><dd>3</dd>" in text
    assert f"<dd>{HORIZON} points held out per series</dd>" in text
    assert f"<dd>{3 * HORIZON} in all" in text and f"<dt>season</dt><dd>{SEASON}</dd>" in text


def test_per_series_scores_average_to_the_leaderboard_mase(comparison):
    scores = per_series_scores(comparison, comparison.best)
    assert sorted(scores["unique_id"]) == ["a", "b", "c"]
    assert scores["mase"].is_monotonic_decreasing  # worst first
    board_mase = comparison.leaderboard["mase"].iloc[0]
    assert scores["mase"].mean() == pytest.approx(board_mase, rel=1e-9)


def test_missing_value_is_an_empty_cell_like_the_csv(comparison, tmp_path):
    board = comparison.leaderboard.copy()
    board.loc[board["model"] == "naive", "coverage_80"] = np.nan
    changed = dataclasses.replace(comparison, leaderboard=board)
    board.to_csv(tmp_path / "board.csv", index=False, float_format=CSV_FLOAT_FORMAT)
    page = Page(render_html(changed))
    assert page.table == _csv_cells(tmp_path / "board.csv")
    naive = next(row for row in page.table if row[0] == "naive")
    assert naive[page.table[0].index("coverage_80")] == ""
    assert 'td.na::after { content: "n/a"' in page.style  # what the reader sees instead


def test_auto_says_what_it_chose_and_draws_no_curve(comparison):
    chose = "auto: 4 networks + ets; chose ets"
    auto = SimpleNamespace(auto_=SimpleNamespace(describe=lambda: chose), history_=None, season=12)
    changed = dataclasses.replace(comparison, forecasters={**comparison.forecasters, "auto": auto})
    text = render_html(changed)
    assert "<dt>auto</dt><dd>4 networks + ets; chose ets</dd>" in text
    assert "No curve for seasonal_naive, naive" in text or "No curve for naive" in text


def test_one_series_has_no_worst_and_best_section(comparison):
    keep = {"unique_id": "a"}

    def one(frame):
        return frame[frame["unique_id"] == keep["unique_id"]].reset_index(drop=True)

    single = dataclasses.replace(
        comparison,
        train=one(comparison.train),
        test=one(comparison.test),
        forecasts={m: one(f) for m, f in comparison.forecasts.items()},
    )
    page = Page(render_html(single, title="One"))
    assert "extremes" not in page.ids() and "forecasts" in page.ids()
    assert len(page.images()) == 3


def test_render_rejects_what_is_not_a_comparison():
    with pytest.raises(SeqcastError, match="leaderboard"):
        render_html(SimpleNamespace(forecasts={}))


def test_compare_command_writes_the_report(cli_out):
    page = Page((cli_out / "report.html").read_text(encoding="utf-8"))
    assert page.table == _csv_cells(cli_out / "leaderboard.csv")
    assert _external_references(page) == []


# ----------------------------------------------------------------------------- the browser
def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


needs_chromium = pytest.mark.skipif(
    _chromium() is None,
    reason="no `chromium` or `chromium-browser` on PATH (Debian: apt-get install chromium); "
    "the headless-browser checks of report.html need one",
)

# put the two pipe ends on fds 3 and 4, where --remote-debugging-pipe expects them, then exec
_ON_FDS_3_AND_4 = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class Browser:
    """Headless Chromium spoken to over the DevTools protocol on a pipe: JSON messages, each
    ended by a NUL byte. No network at all: every host name resolves to nothing, so even a
    request that slipped through could not leave the machine; the test sees it regardless,
    in the Network events. Every wait is bounded by one deadline for the whole session."""

    def __init__(self, binary: str, profile: Path, seconds: float = BROWSER_SECONDS) -> None:
        self.deadline = time.monotonic() + seconds
        to_browser, from_browser = os.pipe(), os.pipe()
        # the browser's ends, moved to fds >= 10 so that placing them on 3 and 4 cannot clash
        theirs = [
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser[0], from_browser[1])
        ]
        os.close(to_browser[0])
        os.close(from_browser[1])
        flags = [
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, *map(str, theirs), binary, *flags],
            pass_fds=theirs,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in theirs:
            os.close(fd)
        self.write_fd, self.read_fd = to_browser[1], from_browser[0]
        self.buffer, self.last_id, self.events = b"", 0, []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while (reply := self._next()).get("id") != self.last_id:
            pass
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    def wait_for(self, event: str) -> dict:
        seen = next((e for e in self.events if e["method"] == event), None)
        while seen is None:
            if (message := self._next()).get("method") == event:
                seen = message
        return seen

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return result["result"]["value"]

    def _next(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer within {BROWSER_SECONDS} s")
            if select.select([self.read_fd], [], [], left)[0]:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write_fd)
        os.close(self.read_fd)


def _visit(page: Path, profile: Path, width: int = 1280) -> SimpleNamespace:
    """Open `page` in headless Chromium: the requests it made, its console and log errors,
    the rendered DOM, each image's decoded width, and a full-page PNG screenshot."""
    browser = Browser(_chromium(), profile)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session)
        metrics = {"width": width, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", session, height=900, **metrics)
        browser.call("Page.navigate", session, url=page.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        dom = browser.evaluate(session, "document.documentElement.outerHTML")
        widths = browser.evaluate(session, "Array.from(document.images, i => i.naturalWidth)")
        height = browser.evaluate(session, "document.documentElement.scrollHeight")
        browser.call("Emulation.setDeviceMetricsOverride", session, height=height, **metrics)
        shot = base64.b64decode(browser.call("Page.captureScreenshot", session)["data"])
    finally:
        browser.close()
    events = browser.events
    return SimpleNamespace(
        requests=[
            e["params"]["request"]["url"]
            for e in events
            if e["method"] == "Network.requestWillBeSent"
        ],
        errors=[
            json.dumps(e["params"])[:300]
            for e in events
            if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
            or e["method"] == "Network.loadingFailed"
        ],
        dom=dom,
        image_widths=widths,
        screenshot=shot,
    )


@needs_chromium
def test_report_in_headless_chromium(cli_out, tmp_path, tmp_path_factory, capsys):
    page = cli_out / "report.html"
    seen = _visit(page, tmp_path / "profile")
    # the page itself, then only its inline images: nothing else was even asked for
    assert seen.requests[0] == page.resolve().as_uri()
    assert [u for u in seen.requests[1:] if not u.startswith("data:image/png;base64,")] == []
    assert seen.errors == []
    # the rendered table is leaderboard.csv, cell for cell, and every figure decoded
    assert Page(seen.dom).table == _csv_cells(cli_out / "leaderboard.csv")
    assert len(seen.image_widths) == 4 and all(w > 300 for w in seen.image_widths)
    assert seen.screenshot.startswith(PNG_MAGIC)
    (tmp_path / "report.png").write_bytes(seen.screenshot)
    kept = tmp_path_factory.getbasetemp() / "report-screenshot.png"
    kept.write_bytes(seen.screenshot)
    with capsys.disabled():
        print(f"\nreport.html screenshot: {kept}")


@needs_chromium
def test_browser_check_sees_external_requests_and_errors(tmp_path):
    """The check above is not vacuous: the same visit reports a page that fetches and fails."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/a.css">'
        '</head><body><img src="http://example.com/a.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    seen = _visit(bad, tmp_path / "profile")
    assert "https://cdn.example.com/a.css" in seen.requests
    assert "http://example.com/a.png" in seen.requests
    assert any("boom" in e for e in seen.errors)
    assert any("ERR_NAME_NOT_RESOLVED" in e for e in seen.errors)


@needs_chromium
def test_demo_report_in_headless_chromium(tmp_path, tmp_path_factory, capsys):
    """What `seqcast demo` writes (every model on the airline data, one epoch each) passes
    the same browser check: no requests but its own inline images, no console errors, the
    leaderboard's cells equal leaderboard.csv's, every figure decoded."""
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    seen = _visit(page, tmp_path / "profile")
    assert seen.requests[0] == page.resolve().as_uri()
    assert [u for u in seen.requests[1:] if not u.startswith("data:image/png;base64,")] == []
    assert seen.errors == []
    cells = _csv_cells(out / "leaderboard.csv")
    assert Page(seen.dom).table == cells and len(cells) == 1 + 11  # header + the 11 models
    assert seen.image_widths and all(w > 300 for w in seen.image_widths)
    kept = tmp_path_factory.getbasetemp() / "demo-report-screenshot.png"
    kept.write_bytes(seen.screenshot)
    with capsys.disabled():
        print(f"\ndemo report.html screenshot: {kept}")
