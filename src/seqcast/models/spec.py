"""`ModelSpec`: what every model builder is told, and the output layout per strategy.

Models map (batch, window, features) inputs to:
- "direct":    (batch, horizon)          the whole horizon as one vector
- "recursive": (batch, 1)                the next step, fed back for longer horizons
- "seq2seq":   (batch, steps, horizon)   the next `horizon` values at every output step
Feature 0 of the input is the target; the rest are covariates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from seqcast.errors import SeqcastError, check_choice, check_positive_int, check_rate

STRATEGIES = ("direct", "recursive", "seq2seq")


@dataclass(frozen=True)
class ModelSpec:
    window: int
    horizon: int
    features: int = 1
    strategy: str = "direct"
    units: int = 20
    dropout: float = 0.0
    season: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("window", self.window)
        check_positive_int("horizon", self.horizon)
        check_positive_int("features", self.features)
        check_positive_int("units", self.units)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_rate("dropout", self.dropout)
        if self.season is not None:
            check_positive_int("season", self.season)

    @property
    def outputs(self) -> int:
        """Values predicted per output step: 1 for recursive, else the horizon."""
        return 1 if self.strategy == "recursive" else self.horizon

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_strategy(name: str, spec: ModelSpec, allowed: tuple[str, ...]) -> None:
    if spec.strategy not in allowed:
        raise SeqcastError(
            f"model {name!r} does not support strategy {spec.strategy!r}; "
            f"use one of {', '.join(allowed)}"
        )
