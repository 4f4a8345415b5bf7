"""Models by name: `build_model("lstm", spec)`; `list_models()` for the valid names."""

from __future__ import annotations

from collections.abc import Callable

from seqcast.errors import SeqcastError
from seqcast.models import baselines, conv, encoder_decoder, recurrent
from seqcast.models.spec import ModelSpec
from seqcast.sequential import Sequential

_BUILDERS: dict[str, Callable[[ModelSpec], Sequential]] = {
    "naive": baselines.naive,
    "seasonal_naive": baselines.seasonal_naive,
    "linear": baselines.linear,
    "simple_rnn": recurrent.simple_rnn,
    "deep_rnn": recurrent.deep_rnn,
    "ln_rnn": recurrent.ln_rnn,
    "lstm": recurrent.lstm,
    "peephole_lstm": recurrent.peephole_lstm,
    "gru": recurrent.gru,
    "bilstm": recurrent.bilstm,
    "min_gru": recurrent.min_gru,
    "min_lstm": recurrent.min_lstm,
    "conv_gru": conv.conv_gru,
    "wavenet": conv.wavenet,
    "encoder_decoder": encoder_decoder.encoder_decoder,
}

#: models that have nothing to learn
BASELINES = ("naive", "seasonal_naive")


def list_models() -> list[str]:
    return list(_BUILDERS)


def build_model(name: str, spec: ModelSpec) -> Sequential:
    if name not in _BUILDERS:
        raise SeqcastError(f"unknown model {name!r}; expected one of {', '.join(_BUILDERS)}")
    return _BUILDERS[name](spec)
