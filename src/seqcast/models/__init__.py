"""Forecasting architectures built from `seqcast.layers`, by name."""

from seqcast.models.registry import BASELINES, build_model, list_models, model_strategies
from seqcast.models.spec import STRATEGIES, ModelSpec

__all__ = [
    "BASELINES",
    "STRATEGIES",
    "ModelSpec",
    "build_model",
    "list_models",
    "model_strategies",
]
