"""compare(): which models start the compiled kernels' first-use build early."""

import numpy as np
import pytest

from seqcast import compare as compare_module
from seqcast import layers
from seqcast.compare import compare
from seqcast.layers import _compiled
from seqcast.models.registry import list_models, runs_recurrences

RECURRENT = {"simple_rnn", "deep_rnn", "ln_rnn", "lstm", "peephole_lstm", "gru", "bilstm",
             "min_gru", "min_lstm", "conv_gru", "encoder_decoder"}  # fmt: skip


def test_models_holding_recurrent_layers_or_scans_are_known_without_building_them():
    assert {n for n in list_models() if runs_recurrences(n)} == RECURRENT


@pytest.mark.parametrize(("models", "starts"), [("linear", False), ("linear,gru", True)])
def test_compare_starts_the_kernel_build_only_for_recurrent_models(monkeypatch, models, starts):
    started = []
    monkeypatch.setattr(compare_module, "build_kernels_in_background", lambda: started.append(True))
    assert layers.build_kernels_in_background is _compiled.build_in_background
    series = 100 + 10 * np.sin(np.arange(60) / 3)
    board = compare(series, horizon=4, models=models, epochs=1).leaderboard
    assert set(board["model"]) == {"naive", *models.split(",")}
    assert bool(started) is starts
