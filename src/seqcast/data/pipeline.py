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

__all__ = ["SeriesTransform", "fit_transform", "is_seasonal", "seasonal_components", "windows"]

#: points a series needs before a backtest origin to take part in the backtest
MIN_HISTORY = 3
#: the one-sided 90% normal quantile of the seasonality test
_T_CRIT = 1.645


@dataclass(frozen=True)
class SeriesTransform:
    """How one series maps to z and back; everything here comes from that series' history."""

    log: bool
    scale: float  # divides y when not `log`
    season: np.ndarray  # (m,) components of u, indexed by time position mod m
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


def fit_transform(y: np.ndarray, m: int) -> SeriesTransform:
    """The transform of one series (finite values, at least one point)."""
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
    season = seasonal_components(u, m) if is_seasonal(u, m) else np.zeros(max(m, 1))
    return SeriesTransform(log=log, scale=scale, season=season, n=len(y))


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
