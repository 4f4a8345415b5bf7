"""Dense, Flatten, Dropout, LayerNormalization, RepeatVector: references, errors, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqcast.errors import SeqcastError
from seqcast.layers.core import Dense, Dropout, Flatten, LayerNormalization, RepeatVector


def _f64(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- Dense --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 5), (3, 7, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("activation", [None, "tanh", "relu"])
def test_dense_equals_explicit_float64(shape, activation):
    layer = Dense(6, activation=activation)
    x = _f64(shape)
    y = layer(x)
    with torch.no_grad():
        layer.bias.copy_(_f64((6,), seed=1))
        y = layer(x)
    w, b = layer.kernel.detach().numpy(), layer.bias.detach().numpy()
    flat = x.numpy().reshape(-1, shape[-1])
    ref = np.array([[sum(row[i] * w[i, j] for i in range(shape[-1])) + b[j] for j in range(6)]
                    for row in flat]).reshape(*shape[:-1], 6)  # fmt: skip
    ref = {None: ref, "tanh": np.tanh(ref), "relu": np.maximum(ref, 0)}[activation]
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_dense_param_count_and_shapes():
    layer = Dense(10)
    layer.build((None, 20))
    assert layer.count_params() == 210
    assert layer.compute_output_shape((None, 20)) == (None, 10)
    assert layer.compute_output_shape((None, None, 20)) == (None, None, 10)
    assert Dense(3, use_bias=False)(torch.zeros(2, 4)).shape == (2, 3)
    no_bias = Dense(3, use_bias=False)
    no_bias.build((None, 4))
    assert no_bias.count_params() == 12


def test_dense_keras_default_init():
    torch.manual_seed(0)
    layer = Dense(300)
    layer.build((None, 100))
    limit = math.sqrt(6 / (100 + 300))
    kernel = layer.kernel.detach()
    assert kernel.shape == (100, 300)
    assert kernel.abs().max() <= limit
    assert kernel.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.02)  # U(-l, l)
    assert torch.equal(layer.bias.detach(), torch.zeros(300))


def test_dense_errors():
    with pytest.raises(SeqcastError, match="`units` must be a positive integer, got 0"):
        Dense(0)
    with pytest.raises(SeqcastError, match="unknown activation 'nope'"):
        Dense(3, activation="nope")
    layer = Dense(3)
    layer(torch.zeros(2, 4))
    with pytest.raises(SeqcastError, match="expected 4 input features .* got 5"):
        layer(torch.zeros(2, 5))
    with pytest.raises(SeqcastError, match="feature count .* must be known"):
        Dense(3).build((None, None))
    with pytest.raises(SeqcastError, match="batch axis and a feature axis"):
        Dense(3).build((4,))


def test_dense_unnamed_activation_cannot_be_configured():
    layer = Dense(3, activation=lambda x: x * 2)
    assert torch.equal(layer(torch.ones(1, 2)), 2 * (torch.ones(1, 2) @ layer.kernel.detach()))
    with pytest.raises(SeqcastError, match="has no name, so it cannot be stored in a config"):
        layer.get_config()
    assert Dense(3, activation=torch.tanh).get_config()["activation"] == "tanh"


# -- Flatten ------------------------------------------------------------------------------------
def test_flatten_shapes():
    layer = Flatten()
    assert layer.compute_output_shape((None, 20, 3)) == (None, 60)
    assert layer.compute_output_shape((None, 2, 3, 4)) == (None, 24)
    x = torch.arange(24.0).reshape(2, 4, 3)
    assert torch.equal(layer(x), x.reshape(2, 12))


def test_flatten_needs_fixed_time_steps():
    with pytest.raises(SeqcastError, match="Flatten needs a fixed number of time steps"):
        Flatten().compute_output_shape((None, None, 3))
    with pytest.raises(SeqcastError, match=r"give input_shape=\(window, features\)"):
        Flatten().compute_output_shape((None, None, 3))
    layer = Flatten()
    layer.build((None, 20, 3))
    with pytest.raises(SeqcastError, match="built for input shape \\(None, 20, 3\\)"):
        layer(torch.zeros(2, 30, 3))


# -- Dropout ------------------------------------------------------------------------------------
def test_dropout_identity_in_eval():
    layer = Dropout(0.5).eval()
    x = _f64((8, 10, 3))
    assert layer(x) is x


def test_dropout_scales_kept_entries_in_training():
    torch.manual_seed(0)
    rate = 0.3
    layer = Dropout(rate).train()
    x = torch.rand(200, 50, 4) + 1.0  # no zeros in the input
    y = layer(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - rate))
    assert 1 - kept.double().mean().item() == pytest.approx(rate, abs=0.01)
    assert torch.equal(Dropout(0.0).train()(x), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "a"])
def test_dropout_rate_checked(rate):
    with pytest.raises(SeqcastError, match="`rate` must be"):
        Dropout(rate)


# -- LayerNormalization -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "center,scale", [(True, True), (False, True), (True, False), (False, False)]
)
def test_layer_norm_equals_torch(center, scale):
    layer = LayerNormalization(center=center, scale=scale)
    x = _f64((3, 5, 6)) * 3 + 1
    layer(x)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(_f64(p.shape, seed=2))
    weight = layer.gamma if scale else None
    bias = layer.beta if center else None
    ref = torch.nn.functional.layer_norm(x, (6,), weight, bias, eps=1e-3)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-14)
    assert layer.count_params() == 6 * (center + scale)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    manual = (x - mean) / torch.sqrt(var + 1e-3)
    manual = manual * (weight if scale else 1) + (bias if center else 0)
    torch.testing.assert_close(layer(x), manual, rtol=1e-12, atol=1e-12)


def test_layer_norm_params_and_errors():
    layer = LayerNormalization()
    layer.build((None, None, 7))
    assert layer.count_params() == 14
    assert layer.epsilon == 1e-3
    with pytest.raises(SeqcastError, match="expected 7 input features .* got 3"):
        layer(torch.zeros(1, 2, 3))
    with pytest.raises(SeqcastError, match="`epsilon` must be a positive number"):
        LayerNormalization(epsilon=0)


# -- RepeatVector -------------------------------------------------------------------------------
def test_repeat_vector():
    layer = RepeatVector(4)
    x = _f64((2, 3))
    y = layer(x)
    assert y.shape == (2, 4, 3)
    for t in range(4):
        assert torch.equal(y[:, t], x)
    assert layer.compute_output_shape((None, 3)) == (None, 4, 3)
    with pytest.raises(SeqcastError, match="expected input of shape \\(batch, features\\)"):
        layer(torch.zeros(2, 5, 3))
    with pytest.raises(SeqcastError, match="`n` must be a positive integer, got 0"):
        RepeatVector(0)


# -- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer",
    [
        Dense(5, activation="relu", use_bias=False),
        Dense(1),
        Flatten(),
        Dropout(0.25),
        LayerNormalization(epsilon=1e-5, center=False),
        RepeatVector(7),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    rebuilt = type(layer)(**config)
    assert rebuilt.get_config() == config
    assert json_roundtrip(config) == config
    assert repr(rebuilt)  # extra_repr runs before build


def json_roundtrip(config):
    import json

    return json.loads(json.dumps(config))


def test_dense_on_a_step_major_view_equals_dense_on_the_copy():
    # A compiled LSTM hands on (B, T, F) views of (T, F, B) memory; Dense computes those in
    # that layout (no transposing copy). Values and gradients must equal the plain path's.
    dense = Dense(3, activation="tanh")
    dense.build((None, 4))
    dense.double()
    base = torch.randn(6, 4, 5, dtype=torch.float64)  # (T, F, B)
    results = []
    for make in (lambda b: b.permute(2, 0, 1), lambda b: b.permute(2, 0, 1).contiguous()):
        b = base.clone().requires_grad_()
        x = make(b)
        y = dense(x)
        (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        results.append([y, b.grad, *(p.grad.clone() for p in dense.parameters())])
        dense.zero_grad()
    assert not results[0][0].is_contiguous()  # the step-major path was taken
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
