"""Which path a recurrence runs (each cell declares its kernel once, `RNN` alone chooses), the
shape of the class hierarchy, and the layer registry that loading a model relies on."""

import warnings

import pytest
import torch
from torch import nn

import seqcast.models  # noqa: F401 (registers the models' layers too)
from seqcast.errors import SeqcastError
from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Dense,
    Dropout,
    GRUCell,
    Layer,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LayerNormSimpleRNNCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
    _compiled,
    _fused,
    deserialize,
    registered_layers,
    serialize,
)
from seqcast.layers.cells import RecurrentCell
from seqcast.sequential import Sequential

D = torch.float64

# -- one declaration per cell ------------------------------------------------------------------

DECLARED = [
    (lambda: SimpleRNNCell(3), "simple_rnn_tanh"),
    (lambda: SimpleRNNCell(3, activation="relu"), "simple_rnn_relu"),
    (lambda: SimpleRNNCell(3, activation=None), "simple_rnn_linear"),
    (lambda: SimpleRNNCell(3, activation="gelu"), None),
    (lambda: LSTMCell(3), "lstm"),
    (lambda: LSTMCell(3, peephole=True), "peephole_lstm"),
    (lambda: LSTMCell(3, activation="relu"), None),
    (lambda: LSTMCell(3, recurrent_activation="hard_sigmoid"), None),
    (lambda: GRUCell(3), "gru"),
    (lambda: GRUCell(3, reset_after=False), "gru_reset_before"),
    (lambda: GRUCell(3, activation="relu"), None),
    (lambda: GRUCell(3, recurrent_activation="hard_sigmoid"), None),
    (lambda: LayerNormSimpleRNNCell(3), "ln_simple_rnn_tanh"),
    (lambda: LayerNormSimpleRNNCell(3, activation="selu"), None),
    (lambda: LayerNormLSTMCell(3), None),
    (lambda: LayerNormGRUCell(3), None),
]


@pytest.mark.parametrize("make, kernel", DECLARED, ids=[str(k) for _, k in DECLARED])
def test_each_cell_declares_the_kernel_that_computes_it(make, kernel):
    assert make().kernel() == kernel


def test_torch_runs_only_kernels_it_computes_exactly():
    assert _fused.KERNELS == {"lstm", "gru", "simple_rnn_tanh", "simple_rnn_relu"}


def _path(layer, x, implementation="auto"):
    layer.implementation = implementation
    layer(x)  # builds, and checks that the chosen path runs
    return layer._path(x, None)


def test_auto_takes_the_compiled_kernel_on_cpu_else_torch_else_the_loop(monkeypatch):
    x = torch.randn(2, 4, 3)
    compiled = "compiled" if _compiled.available() else "torch"
    assert _path(LSTM(3), x) == compiled
    assert _path(LSTM(3, peephole=True), x) == ("compiled" if _compiled.available() else "loop")
    assert _path(LSTM(3, activation="relu"), x) == "loop"
    assert _path(GRU(3, recurrent_activation="hard_sigmoid"), x) == "loop"
    assert _path(RNN(LayerNormLSTMCell(3)), x) == "loop"
    monkeypatch.setattr(_compiled, "available", lambda device=None: False)
    assert _path(LSTM(3), x) == "torch"
    assert _path(SimpleRNN(3, activation="sigmoid"), x) == "loop"
    with pytest.warns(_compiled.CompiledFallbackWarning):  # "compiled" where there is a kernel
        assert _path(LSTM(3), x, "compiled") == "loop"


def test_compiled_asked_for_but_unusable_warns_once_naming_why(monkeypatch):
    x = torch.randn(2, 4, 3)
    layer = LSTM(3, implementation="compiled")
    layer(x)
    with pytest.warns(_compiled.CompiledFallbackWarning, match="a mask is given") as caught:
        layer(x, mask=torch.ones(2, 4, dtype=torch.bool))
    assert caught[0].filename == __file__  # points at the caller's line, not inside seqcast
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same reason again: said once per layer
        layer(x, mask=torch.ones(2, 4, dtype=torch.bool))
        LSTM(3)(x, mask=torch.ones(2, 4, dtype=torch.bool))  # "auto" chooses quietly
    monkeypatch.setattr(_compiled, "available", lambda device=None: False)
    with pytest.warns(_compiled.CompiledFallbackWarning, match="extension is unavailable"):
        LSTM(3, implementation="compiled")(x)
    with pytest.warns(_compiled.CompiledFallbackWarning, match="no compiled kernel"):
        RNN(LayerNormLSTMCell(3), implementation="compiled")(x)


def test_compiled_kernels_refuse_non_cpu_devices_and_other_dtypes():
    meta = torch.empty(2, 4, 3, device="meta")
    assert "on meta" in _compiled.refusal(meta, True, True)
    assert "float16" in _compiled.refusal(torch.zeros(2, 4, 3, dtype=torch.float16), True, True)


def test_a_mask_or_a_recurrent_dropout_mask_leaves_the_fused_path():
    layer = LSTM(3)
    x = torch.randn(2, 4, 3)
    layer(x)
    mask = torch.ones(2, 4, dtype=torch.bool)
    assert layer._path(x, None, mask) == "loop"
    assert layer._path(x, torch.ones(2, 3), None) in ("compiled", "loop")
    layer.implementation = "torch"
    with pytest.raises(SeqcastError, match="implementation='torch' needs"):
        layer(x, mask=mask)


def test_torch_implementation_refuses_activations_it_cannot_compute():
    for layer in (LSTM(3, activation="relu"), GRU(3, recurrent_activation="hard_sigmoid")):
        layer.implementation = "torch"
        with pytest.raises(SeqcastError, match="default activations"):
            layer(torch.randn(2, 3, 1))


def test_a_subclass_runs_the_loop_unless_it_declares_a_kernel():
    class DoubledLSTMCell(LSTMCell):  # changes the math: the LSTM kernel would be wrong
        def step(self, z, states, rmask=None):
            y, states = super().step(z, states, rmask)
            return 2 * y, states

    class DeclaredLSTMCell(LSTMCell):  # keeps the math, and says so
        kernel = LSTMCell.kernel

    assert DoubledLSTMCell(3).kernel() is None
    assert DeclaredLSTMCell(3).kernel() == "lstm"
    x = torch.randn(2, 5, 2, dtype=D)
    plain = RNN(LSTMCell(3), return_sequences=True).double()
    doubled = RNN(DoubledLSTMCell(3), return_sequences=True).double()
    plain(x), doubled(x)
    doubled.load_state_dict(plain.state_dict())
    assert doubled._path(x, None) == "loop"
    # the doubled output feeds the next step, so only the first step is exactly twice plain's
    torch.testing.assert_close(doubled(x)[:, 0], 2 * plain(x)[:, 0], rtol=0, atol=1e-12)


def test_stacked_lstms_stack_only_cells_that_declare_the_lstm_kernel():
    from seqcast.layers.recurrent import lstm_stack_length

    x = torch.randn(2, 4, 1)
    layers = [LSTM(3, return_sequences=True), LSTM(3), RNN(LayerNormLSTMCell(3))]
    for layer in layers:
        layer.build((None, None, 1 if layer is layers[0] else 3))
    expected = 2 if _compiled.available() else 0
    assert lstm_stack_length(layers, 0, x) == expected
    relu = [LSTM(3, return_sequences=True, activation="relu"), LSTM(3)]
    relu[0].build((None, None, 1))
    relu[1].build((None, None, 3))
    assert lstm_stack_length(relu, 0, x) == 0


def test_containers_are_deterministic_only_when_every_layer_inside_is():
    assert Sequential([LSTM(2), Dense(1)]).deterministic
    assert not Sequential([LSTM(2), Dropout(0.1), Dense(1)]).deterministic
    assert not Bidirectional(GRU(2, recurrent_dropout=0.2)).deterministic
    assert not TimeDistributed(Dropout(0.3)).deterministic
    assert not RNN(SimpleRNNCell(2, dropout=0.1)).deterministic


# -- a flat hierarchy --------------------------------------------------------------------------


def _chain(cls):
    """The classes from cls up to Layer, following the (single) base class."""
    chain = [cls]
    while chain[-1] is not Layer:
        (base,) = chain[-1].__bases__  # one base: no mixins
        chain.append(base)
    return chain


@pytest.mark.parametrize("name", sorted(registered_layers()))
def test_every_layer_is_at_most_two_levels_below_layer_without_mixins(name):
    chain = _chain(registered_layers()[name])
    assert len(chain) - 1 <= 2, " -> ".join(c.__name__ for c in chain)
    assert Layer.__bases__ == (nn.Module,)


def test_norm_cells_compose_layer_norm_instead_of_inheriting_a_cell():
    for cls in (LayerNormSimpleRNNCell, LayerNormLSTMCell, LayerNormGRUCell):
        assert cls.__bases__ == (RecurrentCell,)
    cell = LayerNormLSTMCell(3)
    cell.build((None, 2))
    names = {n for n, _ in cell.named_parameters()}
    assert {"input_norm_gain", "recurrent_norm_shift", "state_norm_gain"} <= names


# -- the registry ------------------------------------------------------------------------------


def test_a_class_named_like_a_builtin_is_refused_naming_both():
    with pytest.raises(SeqcastError) as info:

        class LSTM(Layer):  # noqa: F811 - the point of the test
            pass

    message = str(info.value)
    assert "test_dispatch" in message and "seqcast.layers.recurrent.LSTM" in message
    assert registered_layers()["LSTM"].__module__ == "seqcast.layers.recurrent"


def test_loading_resolves_builtins_first_then_user_layers():
    from seqcast.layers import base

    class Scale(Layer):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return self.factor * x

        def get_config(self):
            return {"factor": self.factor}

    assert "Scale" not in registered_layers()  # a user layer is no built-in
    clone = deserialize(serialize(Scale(3.0)))
    assert type(clone) is Scale and clone.factor == 3.0
    # a user class that reached the registry under a built-in's name still loses to it
    base._CUSTOM["Dense"] = Scale
    try:
        assert type(deserialize(serialize(Dense(2)))) is Dense
    finally:
        del base._CUSTOM["Dense"]


def test_abstract_bases_are_not_registered():
    assert "RecurrentCell" not in registered_layers()
    assert "_MinRNN" not in registered_layers()
    with pytest.raises(SeqcastError, match="unknown layer class 'RecurrentCell'"):
        deserialize({"class_name": "RecurrentCell", "config": {"units": 2}})
