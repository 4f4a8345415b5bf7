"""Prediction intervals: Monte-Carlo dropout and split-conformal.

- MC dropout (Gal & Ghahramani 2016): keep the model's Dropout layers active at prediction
  time, draw `mc_samples` forecasts, and read the interval off their quantiles. A model with no
  dropout gives the same forecast every draw, so its intervals have zero width.
- Conformal: absolute forecast errors on held-out windows (per horizon step) calibrate a
  symmetric interval y_hat ± q, q the ceil((n+1)·level)/n empirical quantile (Vovk et al.;
  the finite-sample split-conformal rule).
- Coverage check: MC-dropout intervals reflect the model's uncertainty only, not the noise in
  the data, so they usually cover less than they promise. `mc_dropout_coverage` measures, on
  held-out windows, the coverage of every level 1..99; passed to `mc_dropout_quantiles`, it
  turns a shortfall into an `UndercoverageWarning` naming the nominal and measured coverage.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqcast.errors import SeqcastError, caller_stacklevel
from seqcast.layers import RNN, Dropout

METHODS = ("conformal", "mc_dropout")
LEVELS = np.arange(1, 100)  # the interval levels `parse_levels` accepts, in percent
UNDERCOVERAGE_TOLERANCE = 3.0  # percentage points below nominal before intervals are flagged

log = logging.getLogger(__name__)


class UndercoverageWarning(UserWarning):
    """Intervals whose coverage, measured on held-out windows, falls short of their level."""


def parse_levels(intervals: int | float | str | Sequence[int | float] | None) -> list[int]:
    """80 / "80,95" / [80, 95] -> [80, 95]; each level a percentage in (0, 100)."""
    if intervals is None:
        return []
    if isinstance(intervals, str):
        parts = [p.strip() for p in intervals.split(",") if p.strip()]
    elif isinstance(intervals, (int, float)):
        parts = [intervals]
    else:
        parts = list(intervals)
    levels = []
    for p in parts:
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise SeqcastError(f"interval level {p!r} is not a number; give e.g. 80,95") from None
        if not 0 < value < 100 or value != int(value):
            raise SeqcastError(
                f"interval level {p!r} must be a whole percentage between 1 and 99, e.g. 80"
            )
        levels.append(int(value))
    return sorted(set(levels))


@contextlib.contextmanager
def dropout_active(model: nn.Module) -> Iterator[None]:
    """Model in eval mode except its dropout: the MC-dropout sampling mode."""
    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, Dropout)) or _rnn_with_dropout(module):
            module.train()
    try:
        yield
    finally:
        model.train(was_training)


def _rnn_with_dropout(module: nn.Module) -> bool:
    cell = getattr(module, "cell", None)
    rates = (getattr(cell, "dropout", 0.0), getattr(cell, "recurrent_dropout", 0.0))
    return isinstance(module, RNN) and max(rates) > 0


def mc_dropout_quantiles(
    sample: Callable[[], Tensor],
    model: nn.Module,
    n_samples: int,
    levels: list[int],
    coverage: np.ndarray | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{level: (lo, hi)} from `n_samples` calls of `sample()` with dropout active. With
    `coverage` (from `mc_dropout_coverage` on held-out windows), each level asked is checked
    against it and a shortfall warned about (`check_coverage`)."""
    draws = _draws(sample, model, n_samples)
    out = {}
    for level in levels:
        alpha = (100 - level) / 200
        out[level] = (np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0))
    if coverage is not None:
        check_coverage(coverage, levels, "MC-dropout")
    return out


def mc_dropout_coverage(
    sample: Callable[[], Tensor], model: nn.Module, n_samples: int, target: np.ndarray
) -> np.ndarray:
    """Measured coverage (percent) of MC-dropout intervals at every level 1..99 (row L-1 is
    level L) on held-out windows whose true values are `target`, `sample()` drawing forecasts
    of the same shape for them with dropout active. Fixed size (99,), however many windows
    measured it, so a saved model can keep it."""
    draws = _draws(sample, model, n_samples)
    return coverage_by_level(covering_levels(draws, np.asarray(target, np.float64)))


def _draws(sample: Callable[[], Tensor], model: nn.Module, n_samples: int) -> np.ndarray:
    if n_samples < 2:
        raise SeqcastError(f"`mc_samples` must be at least 2, got {n_samples}")
    with dropout_active(model), torch.no_grad():
        return torch.stack([sample() for _ in range(n_samples)]).cpu().double().numpy()


def covering_levels(draws: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each value of `target`, the smallest level (percent) whose central interval read
    off `draws` (shape (S, *target.shape)) as `mc_dropout_quantiles` reads it holds the value;
    inf where no level does (outside the draws' range). The level-L interval covers a value
    exactly when its entry is <= L, so coverage at any level is one comparison away.

    np.quantile interpolates linearly between order statistics: q(p) sits at position
    p * (S - 1) of the sorted draws. A value is covered at level L = 100 (1 - 2 alpha) when
    q(alpha) <= y <= q(1 - alpha), that is alpha <= p_hi and alpha <= 1 - p_lo, with
    [p_lo, p_hi] the positions where q(p) = y (one point unless draws tie with y)."""
    s = draws.shape[0]
    ordered = np.sort(draws, axis=0)
    below = (ordered < target).sum(axis=0)  # draws strictly below each value
    at_most = (ordered <= target).sum(axis=0)
    lower = np.take_along_axis(ordered, np.clip(at_most - 1, 0, s - 1)[None], axis=0)[0]
    upper = np.take_along_axis(ordered, np.clip(at_most, 0, s - 1)[None], axis=0)[0]
    gap = upper - lower
    frac = np.divide(target - lower, gap, out=np.zeros_like(gap), where=gap > 0)
    p_hi = (at_most - 1 + frac) / (s - 1)
    p_lo = np.where(at_most > below, below / (s - 1), p_hi)
    level = 100 * np.maximum(0.0, 1 - 2 * np.minimum(p_hi, 1 - p_lo))
    return np.where((at_most >= 1) & (below < s), level, np.inf)


def coverage_by_level(covering: np.ndarray) -> np.ndarray:
    """Coverage (percent) at each level 1..99 of the values whose `covering_levels` are
    given: the share of them <= L. NaN everywhere when there is none."""
    ranked = np.sort(np.asarray(covering, dtype=np.float64).reshape(-1))
    if ranked.size == 0:
        return np.full(len(LEVELS), np.nan)
    return 100 * np.searchsorted(ranked, LEVELS, side="right") / ranked.size


def check_coverage(
    coverage: np.ndarray,
    levels: Sequence[int],
    method: str,
    tolerance: float = UNDERCOVERAGE_TOLERANCE,
) -> dict[int, float]:
    """{level: measured coverage in percent} read off `coverage` (`coverage_by_level`
    output); an `UndercoverageWarning` names every level covered more than `tolerance` points
    below its promise. Levels never measured (NaN: no held-out window) are left out."""
    coverage = np.asarray(coverage, dtype=np.float64)
    measured = {int(lvl): float(coverage[int(lvl) - 1]) for lvl in levels}
    measured = {lvl: m for lvl, m in measured.items() if not math.isnan(m)}
    short = [
        f"{lvl}% intervals cover {m:.1f}%" for lvl, m in measured.items() if m < lvl - tolerance
    ]
    if short:
        warnings.warn(
            f"{method} intervals under-cover on held-out windows: {', '.join(short)}. They "
            "reflect model uncertainty only, not the noise in the data; use "
            "interval_method='conformal' for intervals calibrated to their level",
            UndercoverageWarning,
            stacklevel=caller_stacklevel(),
        )
    return measured


def conformal_radius(
    residuals: np.ndarray, level: int | Sequence[int], warn: bool = True
) -> np.ndarray:
    """Per-horizon-step radius q from absolute residuals of shape (n, H): the k-th smallest
    residual of each step, k = ceil((n + 1) * level / 100), which covers a new error with
    probability at least level% when errors are exchangeable (split conformal prediction).
    Shape (H,) for one level, (len(level), H) for a sequence of them (one sort for all).

    When k > n, no residual is large enough for that guarantee: the radius is infinite (the
    interval says "cannot be calibrated" by being unbounded) and, with `warn`, a warning names
    how many calibration windows the level needs. Clamping to the largest residual instead
    would under-cover silently."""
    n = residuals.shape[0]
    check_calibration_windows(n)
    levels = np.atleast_1d(np.asarray(level, dtype=np.int64))
    k = np.ceil((n + 1) * levels / 100).astype(np.int64)
    out = np.full((len(levels), residuals.shape[1]), np.inf)
    out[k <= n] = np.sort(np.abs(residuals), axis=0)[k[k <= n] - 1]
    for lvl in levels[k > n] if warn else ():
        warn_unbounded(int(lvl), n)
    return out[0] if np.ndim(level) == 0 else out


def conformal_bounds(
    errors: np.ndarray, level: int, warn: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per-horizon-step offsets (lo, hi) from signed errors (truth - forecast) of shape (n, H):
    each tail its own split-conformal quantile at (1 + level / 100) / 2, so that skewed errors
    (a forecast that tends to fall short of a growing series) get an interval shifted their
    way instead of a wider symmetric one. Where n windows are too few for the tails (95% needs
    39) but enough for the symmetric interval, the symmetric radius of |errors| is used."""
    n = errors.shape[0]
    check_calibration_windows(n)
    tail = 50 + level / 2  # each tail's one-sided level, in percent
    k = math.ceil((n + 1) * tail / 100)
    if k > n:
        radius = conformal_radius(errors, level, warn)
        return -radius, radius
    ordered = np.sort(errors, axis=0)
    return ordered[n - k], ordered[k - 1]


def warn_unbounded(level: int, n: int) -> None:
    """The one warning for a conformal level that `n` calibration windows cannot calibrate
    (its interval is unbounded): how many windows it needs and the highest level `n` can."""
    highest = max(int(L) for L in LEVELS if windows_needed(int(L)) <= n)
    log.warning(
        "%d%% conformal intervals need at least %d calibration windows, got %d: the interval "
        "is unbounded; ask for a level of at most %d%%, or give more (or longer) series",
        level, windows_needed(level), n, highest,
    )  # fmt: skip


def windows_needed(level: int) -> int:
    """The fewest calibration windows n for which `conformal_radius` at `level` is finite: the
    smallest n with ceil((n + 1) * level / 100) <= n."""
    return math.ceil(level / (100 - level))


def check_calibration_windows(n: int) -> None:
    """Refuse conformal intervals calibrated on no window at all."""
    if n == 0:
        raise SeqcastError(
            "no held-out residuals to calibrate conformal intervals; train with "
            "validation_size > 0 and enough history, or use interval_method='mc_dropout'"
        )
