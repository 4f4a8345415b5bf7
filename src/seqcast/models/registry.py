"""Models by name: `build_model("lstm", spec)`; `list_models()` for the valid names, and
`model_strategies(name)` for the strategies each one supports.

Every model declares its strategies here, once: `build_model` refuses the others with a
SeqcastError, and the contract tests build every model for every strategy it declares.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from seqcast.errors import SeqcastError
from seqcast.models import baselines, conv, encoder_decoder, recurrent
from seqcast.models.spec import STRATEGIES, ModelSpec, require_strategy
from seqcast.sequential import Sequential

Builder = Callable[[ModelSpec], Sequential]

#: models whose forecast is a vector per window: no per-step outputs for seq2seq targets
VECTOR = ("direct", "recursive")

_MODELS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    # the baselines forecast the whole horizon at once (Forecaster always runs them direct)
    "naive": (baselines.naive, ("direct",)),
    "seasonal_naive": (baselines.seasonal_naive, ("direct",)),
    "linear": (baselines.linear, VECTOR),  # Flatten mixes the steps
    "simple_rnn": (recurrent.simple_rnn, STRATEGIES),
    "deep_rnn": (recurrent.deep_rnn, STRATEGIES),
    "ln_rnn": (recurrent.ln_rnn, STRATEGIES),
    "lstm": (recurrent.lstm, STRATEGIES),
    "peephole_lstm": (recurrent.peephole_lstm, STRATEGIES),
    "gru": (recurrent.gru, STRATEGIES),
    # the backward half reads the future of every step, so per-step (seq2seq) targets leak
    "bilstm": (recurrent.bilstm, VECTOR),
    # seq2seq training maps output steps to targets only through the layers it knows
    # (strategies.output_positions), and MinGRU/MinLSTM are not among them yet
    "min_gru": (recurrent.min_gru, VECTOR),
    "min_lstm": (recurrent.min_lstm, VECTOR),
    "conv_gru": (conv.conv_gru, STRATEGIES),
    "wavenet": (conv.wavenet, STRATEGIES),
    # the decoder emits the whole horizon from one encoded vector
    "encoder_decoder": (encoder_decoder.encoder_decoder, ("direct",)),
}

#: models that have nothing to learn
BASELINES = ("naive", "seasonal_naive")


def list_models() -> list[str]:
    return list(_MODELS)


def _entry(name: str) -> tuple[Builder, tuple[str, ...]]:
    if name not in _MODELS:
        raise SeqcastError(f"unknown model {name!r}; expected one of {', '.join(_MODELS)}")
    return _MODELS[name]


def model_strategies(name: str) -> tuple[str, ...]:
    """The strategies ("direct", "recursive", "seq2seq") model `name` supports."""
    return _entry(name)[1]


def build_model(name: str, spec: ModelSpec) -> Sequential:
    builder, strategies = _entry(name)
    require_strategy(name, spec, strategies)
    return builder(spec)


def runs_recurrences(name: str) -> bool:
    """Whether model `name` holds recurrent layers or scans (what the compiled kernels run):
    built on PyTorch's "meta" device from a small spec, so nothing is allocated."""
    from seqcast.layers import RNN, MinGRU, MinLSTM

    builder, strategies = _entry(name)
    with torch.device("meta"):
        model = builder(ModelSpec(window=8, horizon=2, strategy=strategies[0], season=2))
    return any(isinstance(m, (RNN, MinGRU, MinLSTM)) for m in model.modules())
