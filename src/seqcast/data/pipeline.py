"""Per-series normalisation for one global model over many series.

Each series is put on a common footing from its own history alone, so one network learns from
thousands of series of different sizes and forecasts series it never saw. For a series
y_1..y_n with season length m:

    u_t = log(y_t)                         when every y_t > 0 (multiplicative series)
    u_t = y_t / s,  s = mean |y_t - y_t-1|  otherwise (additive; s = 1 for a flat series)
    c_k  seasonal components (k = t mod m, mean 0) from a classical decomposition of u,
         kept only when u passes a 90% autocorrelation test at lag m (the test of the
         Theta method's M3/M4 code); c = 0 otherwise
    z_t = u_t - c_(t mod m)

With several seasons (hourly data: 24 and 168), each is tested and estimated in turn on
what the shorter ones leave, twice over (MSTL's order and iteration), and c is their sum,
a pattern of period L = lcm(seasons).

A window over z is shifted by its last observed value (its level), so the network sees and
predicts changes relative to now: on the log scale these are ratios, whatever the series'
size. Forecasts go back through u = z + c, y = exp(u) (or u * s).

Windows may start before a series does: such inputs are padded with the first value and a
mask channel says which points are real, so a 14-point yearly series still gets a forecast
from a 12- or 18-point window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SeriesTransform",
    "as_seasons",
    "fit_transform",
    "is_seasonal",
    "seasonal_components",
    "seasons_for_freq",
    "windows",
]

#: points a series needs before a backtest origin to take part in the backtest
MIN_HISTORY = 3
#: the one-sided 90% normal quantile of the seasonality test
_T_CRIT = 1.645
#: rounds of estimating each season on what the others leave (MSTL's default)
_SEASON_ROUNDS = 2


@dataclass(frozen=True)
class SeriesTransform:
    """How one series maps to z and back; everything here comes from that series' history."""

    log: bool
    scale: float  # divides y when not `log`
    season: np.ndarray  # (L,) components of u, indexed by time position mod L
    n: int  # length of the history the transform was fit on (forecasts continue from n)

    @property
    def seasonal(self) -> bool:
        return bool(np.any(self.season != 0))

    def to_u(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.log else y / self.scale

    def from_u(self, u: np.ndarray) -> np.ndarray:
        return np.exp(np.minimum(u, 700.0)) if self.log else u * self.scale

    def components(self, positions: np.ndarray) -> np.ndarray:
        return self.season[np.asarray(positions) % len(self.season)]

    def forward(self, y: np.ndarray) -> np.ndarray:
        """z for the history y (positions 0..len(y)-1)."""
        return self.to_u(y) - self.components(np.arange(len(y)))

    def future_components(self, horizon: int) -> np.ndarray:
        return self.components(np.arange(self.n, self.n + horizon))


def is_seasonal(u: np.ndarray, m: int) -> bool:
    """Autocorrelation at lag m beyond 1.645 of its standard error (Bartlett's formula over
    lags 1..m-1); needs at least three full seasons, as the Theta method's test does."""
    n = len(u)
    if m <= 1 or n < 3 * m:
        return False
    centred = u - u.mean()
    denom = float(centred @ centred)
    if denom == 0:
        return False
    acf = np.array([centred[k:] @ centred[: n - k] for k in range(1, m + 1)]) / denom
    limit = _T_CRIT * np.sqrt((1 + 2 * np.sum(acf[: m - 1] ** 2)) / n)
    return bool(abs(acf[m - 1]) > limit)


def seasonal_components(u: np.ndarray, m: int) -> np.ndarray:
    """Classical additive decomposition: u minus its centred moving average of order m (2 x m
    for even m), averaged by position mod m and centred to mean 0."""
    n = len(u)
    if n < 2 * m:  # fewer than two seasons: no season to estimate
        return np.zeros(m)
    if m % 2:
        kernel = np.full(m, 1.0 / m)
    else:
        kernel = np.r_[0.5, np.ones(m - 1), 0.5] / m
    trend = np.convolve(u, kernel, mode="valid")
    offset = (len(kernel) - 1) // 2
    detrended = u[offset : offset + len(trend)] - trend
    positions = np.arange(offset, offset + len(trend)) % m
    sums = np.bincount(positions, weights=detrended, minlength=m)
    counts = np.bincount(positions, minlength=m)
    comps = np.divide(sums, counts, out=np.zeros(m), where=counts > 0)
    return comps - comps.mean()


def as_seasons(season) -> tuple[int, ...]:
    """Season lengths as a sorted tuple without 1s: 12 -> (12,), [168, 24] -> (24, 168),
    None or 1 -> ()."""
    if season is None:
        return ()
    values = [season] if np.isscalar(season) else list(season)
    return tuple(sorted({int(m) for m in values if int(m) > 1}))


#: the usual seasons of each pandas frequency (by its base unit), longest last
_USUAL_SEASONS = {
    "min": lambda n: (60 // n * 24, 60 // n * 24 * 7) if 60 % n == 0 else (),
    "h": lambda n: (24 // n, 24 // n * 7) if 24 % n == 0 else (),
    "D": lambda n: (7,) if n == 1 else (),
    "B": lambda n: (5,) if n == 1 else (),
    "W": lambda n: (52,) if n == 1 else (),
    "M": lambda n: (12,) if n == 1 else (),
    "Q": lambda n: (4,) if n == 1 else (),
}


_OFFSET_UNITS = {
    "Minute": "min", "Hour": "h", "Day": "D", "BusinessDay": "B", "Week": "W",
    "MonthBegin": "M", "MonthEnd": "M", "QuarterBegin": "Q", "QuarterEnd": "Q",
}  # fmt: skip


def seasons_for_freq(freq) -> tuple[int, ...]:
    """The usual seasons of a pandas frequency: half-hourly (48, 336), hourly (24, 168),
    daily (7,), business-daily (5,), weekly (52,), monthly (12,), quarterly (4,); () for
    yearly data, integer time steps and anything else."""
    if not isinstance(freq, str):
        return ()
    try:
        import pandas as pd

        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        return ()
    name = type(offset).__name__
    n = int(getattr(offset, "n", 1))
    base = _OFFSET_UNITS.get(name)
    return tuple(m for m in _USUAL_SEASONS[base](n) if m > 1) if base else ()


def fit_transform(y: np.ndarray, m) -> SeriesTransform:
    """The transform of one series (finite values, at least one point); `m` is a season
    length or several (`as_seasons`)."""
    y = np.asarray(y, dtype=np.float64)
    log = bool(np.all(y > 0))
    if log:
        scale = 1.0
    else:
        steps = np.abs(np.diff(y))
        scale = float(steps.mean()) if len(steps) and steps.mean() > 0 else 1.0
        if scale == 1.0 and len(y) and np.abs(y).max() > 0:
            scale = float(np.abs(y).max())
    u = np.log(y) if log else y / scale
    return SeriesTransform(log=log, scale=scale, season=_components(u, as_seasons(m)), n=len(y))


def _components(u: np.ndarray, seasons: tuple[int, ...]) -> np.ndarray:
    """The summed seasonal components of u over one period L = lcm(seasons): each season
    tested and estimated on u less the others' current estimates, shortest first, twice over
    (one pass for a single season)."""
    period = int(np.lcm.reduce(seasons)) if seasons else 1
    comps = {m: np.zeros(m) for m in seasons}
    t = np.arange(len(u))
    rounds = _SEASON_ROUNDS if len(seasons) > 1 else 1
    for _ in range(rounds):
        for m in seasons:
            others = sum((c[t % len(c)] for k, c in comps.items() if k != m), np.zeros(len(u)))
            rest = u - others
            comps[m] = seasonal_components(rest, m) if is_seasonal(rest, m) else np.zeros(m)
    positions = np.arange(period)
    return sum((c[positions % len(c)] for c in comps.values()), np.zeros(period))


def windows(
    z: np.ndarray, lookback: int, horizon: int, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one normalised series ending at each index in `ends` (the last input).

    Returns inputs (k, lookback, 2) = (z - level, mask), targets (k, horizon) = z - level
    (0 where the series has ended), the target mask (k, horizon) and the levels (k,).
    Inputs before the series' start repeat its first value with mask 0."""
    n = len(z)
    pad = np.r_[np.full(lookback - 1, z[0]), z, np.zeros(horizon)]
    real = np.r_[np.zeros(lookback - 1), np.ones(n), np.zeros(horizon)]
    ends = np.asarray(ends, dtype=np.int64)
    cols = ends[:, None] + np.arange(lookback)[None, :]  # padded index of each input
    level = z[ends]
    x = np.stack([pad[cols] - level[:, None], real[cols]], axis=-1)
    tcols = ends[:, None] + lookback + np.arange(horizon)[None, :]
    tmask = real[tcols]
    target = np.where(tmask > 0, pad[tcols] - level[:, None], 0.0)
    return x, target, tmask, level
