"""auto's statistical members: which statsforecast model each season gets, the history cap,
the worker processes (a deadline stops them, they end with their parent) and the probe."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from seqcast import statistical
from seqcast.data import pipeline


def _slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_short_single_seasons_go_to_the_member_and_long_ones_through_mstl():
    assert type(statistical.make_model("ets", (12,), 100)).__name__ == "AutoETS"
    assert type(statistical.make_model("arima", (), 100)).__name__ == "AutoARIMA"
    long = statistical.make_model("arima", (52,), 500)
    assert type(long).__name__ == "MSTL" and list(long.season_length) == [52]
    both = statistical.make_model("theta", (24, 168), 1000)
    assert type(both).__name__ == "MSTL" and list(both.season_length) == [24, 168]
    # a series shorter than two periods of 168 keeps only the season it can estimate
    assert list(statistical.make_model("ets", (24, 168), 200).season_length) == [24]
    assert type(statistical.make_model("ets", (52,), 60)).__name__ == "AutoETS"


def test_history_cap_keeps_three_longest_seasons_and_at_least_500_points():
    assert statistical.history_cap(()) == 500
    assert statistical.history_cap((12,)) == 500
    assert statistical.history_cap((24, 336)) == 1008


def test_forecast_chunk_matches_statsforecast_on_a_short_season():
    from statsforecast.models import AutoETS

    rng = np.random.default_rng(0)
    y = 50 + 10 * np.sin(2 * np.pi * np.arange(60) / 12) + rng.normal(0, 1, 60)
    ours = statistical.forecast_chunk("ets", (12,), 6, [y])[0]
    theirs = AutoETS(season_length=12).forecast(y=y, h=6)["mean"]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=0)


def test_a_failing_fit_falls_back_to_the_last_value():
    out = statistical.forecast_chunk("ets", (), 3, [np.array([5.0])])
    np.testing.assert_array_equal(out, [[5.0, 5.0, 5.0]])


def test_workers_return_results_in_order_and_report_progress():
    seen = []
    with statistical.Workers(2) as workers:
        out = workers.map(_slow, [(0.02,), (0.0,), (0.01,)], on_done=seen.append)
    assert out == [0.02, 0.0, 0.01] and seen == [1, 2, 3]


def test_a_deadline_stops_the_running_workers():
    with statistical.Workers(2) as workers:
        start = time.monotonic()
        workers.map(_slow, [(0.0,)])
        pids = [p.pid for p, _ in workers._procs]
        with pytest.raises(statistical.TimeLimitReached):
            workers.map(_slow, [(30.0,), (30.0,)], deadline=time.monotonic() + 0.5)
        assert time.monotonic() - start < 5
        assert not any(_alive(pid) for pid in pids)


def test_probe_is_infinite_when_it_runs_past_its_limit():
    rng = np.random.default_rng(1)
    series = [rng.normal(100, 1, 300)]
    with statistical.Workers(1) as workers:
        assert statistical.probe(workers, "ets", series, (), 4, limit=0.0) == np.inf
        assert 0 < statistical.probe(workers, "ets", series, (), 4, limit=30.0) < 30


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from seqcast import statistical
        from test_statistical import _slow
        workers = statistical.Workers(2)
        workers._start(2)
        print(*[p.pid for p, _ in workers._procs], flush=True)
        workers.map(_slow, [(60.0,), (60.0,)])
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_two_seasons_are_recovered_from_their_sum():
    t = np.arange(24 * 7 * 8)
    daily = np.tile([0.0, 1.0, 3.0, 1.0, 0.0, -2.0] * 4, len(t) // 24)
    weekly = np.repeat([2.0, 2.0, 2.0, 2.0, 2.0, -5.0, -5.0], 24)[t % 168]
    rng = np.random.default_rng(0)
    u = 10 + daily + weekly + rng.normal(0, 0.05, len(t))
    fitted = pipeline.fit_transform(np.exp(u / 10), (24, 168))
    truth = (daily + weekly)[:168] / 10
    truth = truth - truth.mean()
    assert fitted.season.shape == (168,)
    np.testing.assert_allclose(fitted.season, truth, atol=0.02)
    # one season alone is the classical decomposition, as before
    single = pipeline.fit_transform(np.exp(u / 10), 24)
    assert single.season.shape == (24,)


@pytest.mark.parametrize(
    ("freq", "seasons"),
    [("30min", (48, 336)), ("h", (24, 168)), ("D", (7,)), ("W-SUN", (52,)), ("MS", (12,)),
     ("QS-OCT", (4,)), ("YS", ()), (1, ())],
)  # fmt: skip
def test_usual_seasons_of_each_frequency(freq, seasons):
    assert pipeline.seasons_for_freq(freq) == seasons
