"""The contract every layer and every model keeps, checked from what each one declares.

Layers: every class in the layer registry (`seqcast.layers.registered_layers()`) has a small
example below, and each example is checked for

- shape:       the output's shape is `compute_output_shape` of the input's;
- config:      get_config -> from_config (through serialize/deserialize), same weights, gives
               the same outputs;
- gradcheck:   float64 `torch.autograd.gradcheck` with respect to the input and every weight;
- seed:        two builds under the same seed are equal, in training mode too; a layer that
               declares `deterministic = False` draws afresh on each call but repeats under a
               seed;
- causal:      for the layers that declare `causal`, changing the input at step t changes no
               output before t (and does change one from t on).

Models: every name of `seqcast.models.list_models()` crossed with every strategy. A model that
declares the strategy (`model_strategies`) builds, runs forwards and backwards in that
strategy's output layout, and forecasts; one that does not refuses with a SeqcastError. The
declared pairs are pinned here, so losing (or quietly gaining) a strategy fails a test.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from seqcast import strategies
from seqcast.errors import SeqcastError
from seqcast.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Conv1D,
    Dense,
    Dropout,
    Flatten,
    GRUCell,
    Layer,
    LayerNormalization,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LayerNormSimpleRNNCell,
    LSTMCell,
    Masking,
    MinGRU,
    MinLSTM,
    RepeatVector,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
    WaveNet,
    deserialize,
    registered_layers,
    serialize,
)
from seqcast.models import STRATEGIES, ModelSpec, build_model, list_models, model_strategies
from seqcast.models.baselines import NaiveForecast, SeasonalNaiveForecast
from seqcast.models.families import DilatedLSTM, LastStepTCN, Patches
from seqcast.models.heads import LastStep
from seqcast.sequential import Sequential

D = torch.float64
SEQ = (2, 5, 2)  # (batch, time, features) of the sequence examples
STEP = (2, 2)  # (batch, features) of the cell examples


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The examples are tiny: on one intra-op thread, not threads waiting on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- one example per registered layer ---------------------------------------------------------

EXAMPLES: dict[str, tuple[Callable[[], Layer], tuple[int, ...]]] = {
    "SimpleRNNCell": (lambda: SimpleRNNCell(3, activation="relu"), STEP),
    "LSTMCell": (lambda: LSTMCell(3, peephole=True), STEP),
    "GRUCell": (lambda: GRUCell(3, recurrent_activation="hard_sigmoid"), STEP),
    "LayerNormSimpleRNNCell": (lambda: LayerNormSimpleRNNCell(3), STEP),
    "LayerNormLSTMCell": (lambda: LayerNormLSTMCell(3), STEP),
    "LayerNormGRUCell": (lambda: LayerNormGRUCell(3), STEP),
    "RNN": (lambda: RNN(LayerNormSimpleRNNCell(3), return_sequences=True), SEQ),
    "SimpleRNN": (
        lambda: SimpleRNN(3, dropout=0.3, recurrent_dropout=0.3, return_sequences=True),
        SEQ,
    ),
    "LSTM": (lambda: LSTM(3, return_sequences=True), SEQ),
    "GRU": (lambda: GRU(3, activation="relu", reset_after=False, return_sequences=True), SEQ),
    "MinGRU": (lambda: MinGRU(3, return_sequences=True), SEQ),
    "MinLSTM": (lambda: MinLSTM(3, return_sequences=True), SEQ),
    "Bidirectional": (lambda: Bidirectional(GRU(2, return_sequences=True)), SEQ),
    "TimeDistributed": (lambda: TimeDistributed(Dense(2, activation="tanh")), SEQ),
    "Dense": (lambda: Dense(2, activation="tanh"), SEQ),
    "Flatten": (lambda: Flatten(), SEQ),
    "Dropout": (lambda: Dropout(0.5), SEQ),
    "LayerNormalization": (lambda: LayerNormalization(), SEQ),
    "RepeatVector": (lambda: RepeatVector(3), STEP),
    "Masking": (lambda: Masking(), SEQ),
    "Conv1D": (lambda: Conv1D(2, 2, padding="causal", dilation_rate=2), SEQ),
    "WaveNet": (lambda: WaveNet(2, dilation_rates=(1, 2), gated=True, residual=True), SEQ),
    "Sequential": (lambda: Sequential([LSTM(3, return_sequences=True), Dense(1)]), SEQ),
    "NaiveForecast": (lambda: NaiveForecast(3), SEQ),
    "SeasonalNaiveForecast": (lambda: SeasonalNaiveForecast(3, season=2), SEQ),
    "LastStep": (lambda: LastStep(), SEQ),
    # auto's recurrent and convolutional families (seqcast.models.families)
    "Patches": (lambda: Patches(2), SEQ),
    "DilatedLSTM": (lambda: DilatedLSTM(2, dilation=2), SEQ),
    "LastStepTCN": (lambda: LastStepTCN(2, depth=3, gated=True), SEQ),
}
LAYERS = sorted(EXAMPLES)
CAUSAL = [name for name in LAYERS if EXAMPLES[name][0]().causal]
LAYER_CHECKS = ("shape", "config", "gradcheck", "seed")


def _input(name: str, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(EXAMPLES[name][1], generator=generator, dtype=D)


def _built(name: str, seed: int = 0) -> Layer:
    """The example, built in float64 from the weights `seed` draws."""
    torch.manual_seed(seed)
    layer = EXAMPLES[name][0]()
    layer.build(EXAMPLES[name][1])
    return layer.double()


def _tensors(out) -> list[torch.Tensor]:
    """A layer's outputs as a flat list of tensors ((y, [h, c]) -> [y, h, c])."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _tensors(item)]


def _assert_equal(a, b) -> None:
    for x, y in zip(_tensors(a), _tensors(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def layer_ids(names):
    return [f"layer-{name}" for name in names]


def test_every_registered_layer_has_an_example():
    assert set(EXAMPLES) == set(registered_layers())


@pytest.mark.parametrize("name", LAYERS, ids=layer_ids(LAYERS))
def test_output_shape_is_compute_output_shape(name):
    layer = _built(name)
    out = _tensors(layer(_input(name)))[0]
    assert tuple(out.shape) == tuple(layer.compute_output_shape(EXAMPLES[name][1]))


@pytest.mark.parametrize("name", LAYERS, ids=layer_ids(LAYERS))
def test_config_round_trip_gives_equal_outputs(name):
    layer = _built(name).eval()
    clone = deserialize(serialize(layer)).double().eval()
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone.load_state_dict(layer.state_dict())
    x = _input(name)
    _assert_equal(clone(x), layer(x))


@pytest.mark.parametrize("name", LAYERS, ids=layer_ids(LAYERS))
def test_gradcheck_float64(name):
    layer = _built(name).eval()
    names = [n for n, _ in layer.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def run(x, *params):
        out = torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x,))
        return tuple(_tensors(out))

    x = _input(name).requires_grad_()
    assert torch.autograd.gradcheck(run, (x, *weights))


@pytest.mark.parametrize("name", LAYERS, ids=layer_ids(LAYERS))
def test_same_seed_same_layer(name):
    a, b = _built(name, seed=1), _built(name, seed=1)
    _assert_equal(list(a.state_dict().values()), list(b.state_dict().values()))
    x = _input(name)
    a.train(), b.train()
    if a.deterministic:
        _assert_equal(a(x), b(x))
        _assert_equal(a(x), a(x))
    else:
        torch.manual_seed(3)
        first = a(x)
        torch.manual_seed(3)
        _assert_equal(b(x), first)
        assert not torch.equal(_tensors(a(x))[0], _tensors(a(x))[0])  # draws on each call


@pytest.mark.parametrize("name", CAUSAL, ids=layer_ids(CAUSAL))
def test_declared_causal_layers_do_not_look_ahead(name):
    layer = _built(name).eval()
    x = _input(name)
    t = x.shape[1] // 2
    changed = x.clone()
    changed[:, t] += 1.0 + _input(name, seed=1)[:, t]
    before, after = _tensors(layer(x))[0], _tensors(layer(changed))[0]
    assert torch.equal(before[:, :t], after[:, :t])
    assert not torch.equal(before[:, t:], after[:, t:])


# -- models x strategies ----------------------------------------------------------------------

#: the (model, strategy) pairs models refuse, pinned: a change here is a change of contract
REFUSED = {
    ("naive", "recursive"),
    ("naive", "seq2seq"),
    ("seasonal_naive", "recursive"),
    ("seasonal_naive", "seq2seq"),
    ("linear", "seq2seq"),
    ("bilstm", "seq2seq"),
    ("min_gru", "seq2seq"),
    ("min_lstm", "seq2seq"),
    ("encoder_decoder", "recursive"),
    ("encoder_decoder", "seq2seq"),
}
MODELS = list_models()
PAIRS = [(name, strategy) for name in MODELS for strategy in STRATEGIES]
WINDOW, HORIZON = 12, 3


def test_declared_strategies_are_the_pinned_ones():
    refused = {(n, s) for n, s in PAIRS if s not in model_strategies(n)}
    assert refused == REFUSED


@pytest.mark.parametrize("name, strategy", PAIRS, ids=[f"model-{n}-{s}" for n, s in PAIRS])
def test_model_builds_and_runs_for_each_declared_strategy_and_refuses_the_rest(name, strategy):
    spec = ModelSpec(window=WINDOW, horizon=HORIZON, strategy=strategy, units=4, season=4)
    if strategy not in model_strategies(name):
        with pytest.raises(SeqcastError, match=f"model '{name}' does not support strategy"):
            build_model(name, spec)
        return
    torch.manual_seed(0)
    model = build_model(name, spec)
    x = torch.randn(2, WINDOW, 1)
    out = model(x)
    if strategy == "seq2seq":
        steps = len(strategies.output_positions(model, WINDOW))
        assert out.shape == (2, steps, HORIZON)
    else:
        assert out.shape == (2, spec.outputs)
    assert tuple(model.compute_output_shape((2, WINDOW, 1))) == tuple(out.shape)
    params = list(model.parameters())
    if params:
        out.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    with torch.no_grad():
        forecast = strategies.forecast(model, x, HORIZON, strategy, HORIZON)
    assert forecast.shape == (2, HORIZON) and torch.isfinite(forecast).all()


def test_contract_counts(capsys):
    supported = len(PAIRS) - len(REFUSED)
    with capsys.disabled():
        print(
            f"\ncontract: {len(LAYERS)} layers x {len(LAYER_CHECKS)} checks "
            f"(+ causality on {len(CAUSAL)}); {len(MODELS)} models x {len(STRATEGIES)} "
            f"strategies = {len(PAIRS)} pairs ({supported} built, {len(REFUSED)} refused)"
        )
    assert len(LAYERS) == len(registered_layers()) == 29
    assert len(CAUSAL) == 14
    assert (len(MODELS), len(PAIRS), supported) == (15, 45, 35)
