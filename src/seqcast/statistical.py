"""The statistical members of `model="auto"`: statsforecast's AutoETS, AutoTheta, AutoARIMA
and AutoCES, each fit on every series alone, in worker processes that a time limit can stop
and that end with their parent.

Seasons the field's way. A single season of at most `SHORT_SEASON` steps goes to the member
itself (`AutoETS(season_length=12)`). Longer seasons (weekly data's 52, hourly data's 168) and
several seasons (24 and 168) are taken out first by MSTL, and the member forecasts what they
leave with no season of its own: what R's `stlf` does past ETS's seasonal limit, and what
keeps AutoARIMA's seasonal search (whose cost grows with the season) from ever starting on a
long season. A series shorter than two of a season's periods is fit without that season.

Cost. Members see at most `history_cap` of each series' most recent points (a few longest
seasons, and never fewer than `MIN_HISTORY_CAP`): ETS and Theta fits grow with the length,
and a 10,000-point hourly series says no more about the next day than its last months do.
`probe` times a member on the longest series (the worker's CPU time, which a busy machine
changes far less than wall time) so that the recipe can leave out what would not fit its
time budget, decided from measured cost rather than a count of points.

Processes. `Workers` forks its processes once per fit and hands them chunks of series. Each
worker asks the kernel to kill it when its parent dies (Linux `PR_SET_PDEATHSIG`), so that no
statsforecast fit outlives a `seqcast` process ended by SIGTERM, SIGINT or SIGKILL, and a
member still running at its deadline is stopped by killing the workers.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait

import numpy as np

from seqcast.errors import SeqcastError

STATISTICAL = ("ets", "theta", "arima", "ces")
#: the longest single season given to a member itself (ETS's seasonal limit, as in R)
SHORT_SEASON = 24
#: the fewest recent points a member sees of a long series
MIN_HISTORY_CAP = 500
#: and at least this many of its longest season (MSTL needs two)
HISTORY_SEASONS = 3
#: series per task handed to a worker (at least; more when there are many series)
_MIN_CHUNK = 8


class TimeLimitReached(SeqcastError, RuntimeError):
    """A member was still running at its deadline; its workers were stopped."""


def history_cap(seasons: Sequence[int]) -> int:
    """The most recent points a member sees: HISTORY_SEASONS longest seasons, and at least
    MIN_HISTORY_CAP."""
    return max(MIN_HISTORY_CAP, HISTORY_SEASONS * max(seasons, default=1))


def decomposes(seasons: Sequence[int]) -> bool:
    """Whether these seasons are taken out by MSTL before the member runs."""
    return len(seasons) > 1 or any(m > SHORT_SEASON for m in seasons)


def make_model(name: str, seasons: Sequence[int], length: int):
    """The statsforecast model for member `name` on a series of `length` points."""
    from statsforecast.models import MSTL, AutoARIMA, AutoCES, AutoETS, AutoTheta

    makers = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA, "ces": AutoCES}
    if not decomposes(seasons):
        return makers[name](season_length=max(seasons, default=1))
    usable = [m for m in seasons if length >= 2 * m]
    trend = AutoETS(model="ZZN") if name == "ets" else makers[name](season_length=1)
    if not usable:
        return trend
    return MSTL(season_length=usable if len(usable) > 1 else usable[0], trend_forecaster=trend)


def forecast_chunk(
    name: str, seasons: tuple[int, ...], horizon: int, series: list[np.ndarray]
) -> np.ndarray:
    """(len(series), horizon) forecasts of one member, each series fit alone on its last
    `history_cap` points; a fit that fails gives the naive forecast (statsforecast's own
    fallback)."""
    cap = history_cap(seasons)
    out = np.empty((len(series), horizon))
    with warnings.catch_warnings():
        # ETS on very short series divides by zero degrees of freedom in its variance, which
        # point forecasts do not use
        warnings.simplefilter("ignore")
        for i, y in enumerate(series):
            y = np.asarray(y, dtype=np.float64)[-cap:]
            try:
                mean = make_model(name, seasons, len(y)).forecast(y=y, h=horizon)["mean"]
                if not np.all(np.isfinite(mean)):
                    raise FloatingPointError("non-finite forecast")
                out[i] = mean
            except Exception:
                out[i] = y[-1]
    return out


# -- worker processes ---------------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies (Linux); exit at once if it already
    has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def _serve(conn: Connection, parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        fn, args = task
        try:
            conn.send(("ok", fn(*args)))
        except Exception as err:  # reported to the parent, which raises it
            conn.send(("error", f"{type(err).__name__}: {err}"))


def resolve_jobs(n_jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1) if n_jobs is None or n_jobs < 1 else int(n_jobs)


class Workers:
    """Up to `n` forked worker processes, started when first needed and ended on `close`
    (or when the `with` block ends, whatever ends it)."""

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self._procs: list[tuple[multiprocessing.Process, Connection]] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, count: int) -> None:
        import statsforecast.models  # noqa: F401  (imported before the fork, never inside it)

        context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        while len(self._procs) < count:
            ours, theirs = context.Pipe()
            proc = context.Process(target=_serve, args=(theirs, os.getpid()), daemon=True)
            proc.start()
            theirs.close()
            self._procs.append((proc, ours))

    def map(
        self,
        fn: Callable,
        tasks: list[tuple],
        deadline: float | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list:
        """fn(*task) for every task, in order; `on_done(k)` after each finished task. Raises
        TimeLimitReached (after stopping every worker) when `deadline` (time.monotonic())
        passes first."""
        if not tasks:
            return []
        self._start(min(self.n, len(tasks)))
        results: list = [None] * len(tasks)
        queue = list(range(len(tasks)))
        busy: dict[Connection, int] = {}
        idle = [conn for _, conn in self._procs]
        done = 0
        while done < len(tasks):
            while queue and idle:
                conn = idle.pop()
                k = queue.pop(0)
                conn.send((fn, tasks[k]))
                busy[conn] = k
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(busy), timeout)
            if not ready:
                self.kill()
                raise TimeLimitReached("the time limit passed while the member was running")
            for conn in ready:
                k = busy.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    self.kill()
                    raise SeqcastError("a statistical worker process died unexpectedly") from None
                if status != "ok":
                    self.kill()
                    raise SeqcastError(f"a statistical member failed: {value}")
                results[k] = value
                idle.append(conn)
                done += 1
                if on_done is not None:
                    on_done(done)
        return results

    def kill(self) -> None:
        for proc, conn in self._procs:
            proc.kill()
            conn.close()
        for proc, _ in self._procs:
            proc.join(1.0)
        self._procs = []

    def close(self) -> None:
        for _proc, conn in self._procs:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc, conn in self._procs:
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
            conn.close()
        self._procs = []


def chunks(series: Sequence[np.ndarray], workers: int) -> list[list[np.ndarray]]:
    """Series split into about four tasks per worker (each of at least _MIN_CHUNK series), so
    that progress moves and workers finish together."""
    size = max(_MIN_CHUNK, math.ceil(len(series) / (4 * workers)))
    return [list(series[i : i + size]) for i in range(0, len(series), size)]


def forecasts(
    workers: Workers,
    name: str,
    series: Sequence[np.ndarray],
    seasons: tuple[int, ...],
    horizon: int,
    deadline: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(series, horizon) forecasts of member `name`; `on_progress(done, total)` in series."""
    parts = chunks(series, workers.n)
    sizes = np.cumsum([len(p) for p in parts])
    total = int(sizes[-1]) if len(sizes) else 0

    def done(k: int) -> None:
        if on_progress is not None:
            on_progress(int(sizes[k - 1]) if k <= len(parts) else total, total)

    tasks = [(name, tuple(seasons), int(horizon), part) for part in parts]
    out = workers.map(forecast_chunk, tasks, deadline, done)
    return np.concatenate(out) if out else np.zeros((0, horizon))


def _cpu_timed_chunk(name, seasons, horizon, series) -> float:
    """CPU seconds `forecast_chunk` takes in this process."""
    start = time.process_time()
    forecast_chunk(name, seasons, horizon, series)
    return time.process_time() - start


def probe(
    workers: Workers,
    name: str,
    series: Sequence[np.ndarray],
    seasons: tuple[int, ...],
    horizon: int,
    limit: float,
    count: int = 3,
) -> float:
    """Seconds one fit of member `name` takes on the `count` longest series (as the members
    see them): the worker's CPU time, so that a busy machine does not change what the recipe
    decides; infinity when the probe passes `limit` seconds of wall time."""
    longest = sorted(series, key=len)[-count:]
    task = (name, tuple(seasons), int(horizon), longest)
    try:
        [seconds] = workers.map(_cpu_timed_chunk, [task], time.monotonic() + limit)
    except TimeLimitReached:
        return math.inf
    return seconds / max(len(longest), 1)


def available(requested: Sequence[str]) -> tuple[list[str], str | None]:
    """The requested members that can run here, and why the others cannot."""
    unknown = [m for m in requested if m not in STATISTICAL]
    if unknown:
        raise SeqcastError(
            f"unknown statistical member {unknown[0]!r}; expected some of {', '.join(STATISTICAL)}"
        )
    try:
        import statsforecast  # noqa: F401
    except ImportError as err:
        return [], f"statsforecast is not importable ({err}); install seqcast's dependencies"
    return list(requested), None
