"""Conv1D, WaveNet and receptive_field: explicit references, Keras lengths and counts, causality."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from seqcast.errors import SeqcastError
from seqcast.layers.conv import Conv1D, WaveNet, receptive_field
from seqcast.layers.core import Dense, Flatten


def _f64(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _randomise(layer: torch.nn.Module, seed: int = 1) -> None:
    """Non-zero biases too, so a test sees them."""
    with torch.no_grad():
        for i, p in enumerate(layer.parameters()):
            p.copy_(_f64(tuple(p.shape), seed=seed + i) * 0.5)


def keras_length(steps: int, k: int, s: int, d: int, padding: str) -> int:
    """Keras/TF output length, written from its documentation."""
    if padding == "valid":
        return math.floor((steps - d * (k - 1) - 1) / s) + 1
    return math.ceil(steps / s)


def reference_conv1d(x, kernel, bias, strides, padding, dilation):
    """Explicit float64 loop over output positions: (B, T, F) numpy -> (B, T', O) numpy."""
    batch, steps, _ = x.shape
    k, _, filters = kernel.shape
    span = dilation * (k - 1) + 1
    if padding == "valid":
        left, out_len = 0, (steps - span) // strides + 1
    elif padding == "causal":
        left, out_len = span - 1, (steps - 1) // strides + 1
    else:  # same: TF pads (out-1)*s + span - T zeros, the extra one on the right
        out_len = -(-steps // strides)
        left = max((out_len - 1) * strides + span - steps, 0) // 2
    out = np.zeros((batch, out_len, filters))
    for j in range(out_len):
        for i in range(k):
            t = j * strides + i * dilation - left  # input step under kernel tap i
            if 0 <= t < steps:
                for b in range(batch):
                    for f in range(kernel.shape[1]):
                        out[b, j] += x[b, t, f] * kernel[i, f]
        out[:, j] += bias
    return out


# -- Conv1D against the explicit loop -----------------------------------------------------------
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize(
    "k,s,d,steps", [(1, 1, 1, 5), (3, 1, 1, 9), (4, 1, 2, 11), (2, 1, 4, 10), (3, 2, 1, 10),
                    (4, 3, 1, 11), (2, 2, 1, 7), (5, 1, 3, 13)],
)  # fmt: skip
def test_conv1d_equals_explicit_loop(padding, k, s, d, steps):
    layer = Conv1D(4, k, strides=s, padding=padding, dilation_rate=d)
    x = _f64((2, steps, 3))
    layer(x)
    _randomise(layer)
    y = layer(x).detach().numpy()
    ref = reference_conv1d(
        x.numpy(), layer.kernel.detach().numpy(), layer.bias.detach().numpy(), s, padding, d
    )
    assert y.shape == ref.shape == (2, keras_length(steps, k, s, d, padding), 4)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv1d_activation_and_no_bias():
    layer = Conv1D(3, 2, padding="causal", activation="tanh", use_bias=False)
    x = _f64((2, 6, 2))
    y = layer(x)
    ref = reference_conv1d(x.numpy(), layer.kernel.detach().numpy(), np.zeros(3), 1, "causal", 1)
    np.testing.assert_allclose(y.detach().numpy(), np.tanh(ref), rtol=1e-12, atol=1e-12)
    assert layer.count_params() == 2 * 2 * 3


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,d", [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2), (2, 5)])
def test_conv1d_same_stride1_equals_torch_same(k, d):
    layer = Conv1D(3, k, padding="same", dilation_rate=d)
    x = _f64((2, 9, 2))
    layer(x)
    _randomise(layer)
    weight = layer.kernel.permute(2, 1, 0)
    ref = torch.nn.functional.conv1d(
        x.transpose(1, 2), weight, layer.bias, padding="same", dilation=d
    ).transpose(1, 2)
    torch.testing.assert_close(layer(x), ref, rtol=1e-12, atol=1e-12)


# -- output lengths -----------------------------------------------------------------------------
@st.composite
def conv_configs(draw):
    k = draw(st.integers(1, 6))
    s = draw(st.integers(1, 4))
    d = 1 if s > 1 else draw(st.integers(1, 5))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    low = d * (k - 1) + 1 if padding == "valid" else 1
    steps = draw(st.integers(low, low + 30))
    return steps, k, s, d, padding


@settings(max_examples=150, deadline=None)
@given(conv_configs())
def test_conv1d_output_length_matches_keras(config):
    steps, k, s, d, padding = config
    layer = Conv1D(2, k, strides=s, padding=padding, dilation_rate=d)
    expected = keras_length(steps, k, s, d, padding)
    assert layer.compute_output_shape((None, steps, 3)) == (None, expected, 2)
    assert layer(torch.zeros(1, steps, 3)).shape == (1, expected, 2)
    assert layer.compute_output_shape((None, None, 3)) == (None, None, 2)


# -- causality ----------------------------------------------------------------------------------
def _perturb_after(x: torch.Tensor, t: int, seed: int = 9) -> torch.Tensor:
    x2 = x.clone()
    x2[:, t + 1 :] = _f64(tuple(x2[:, t + 1 :].shape), seed=seed)
    return x2


def _assert_causal(layer, x, stride: int = 1):
    y = layer(x)
    for t in range(x.shape[1] - 1):
        y2 = layer(_perturb_after(x, t, seed=t))
        seen = t // stride + 1  # output steps whose window ends at or before input step t
        assert torch.equal(y[:, :seen], y2[:, :seen]), f"output before {seen} changed (t={t})"
        if seen < y.shape[1]:
            assert not torch.equal(y[:, seen], y2[:, seen]), "the next output should change"


@pytest.mark.parametrize("k,s,d", [(2, 1, 1), (3, 1, 2), (2, 1, 4), (3, 2, 1), (4, 3, 1)])
def test_conv1d_causal_is_causal(k, s, d):
    layer = Conv1D(3, k, strides=s, padding="causal", dilation_rate=d, activation="tanh")
    x = _f64((2, 12, 2))
    layer(x)
    _randomise(layer)
    _assert_causal(layer, x, stride=s)


def test_conv1d_same_is_not_causal():
    layer = Conv1D(3, 3, padding="same", dilation_rate=2)
    x = _f64((2, 12, 2))
    layer(x)
    for t in range(x.shape[1] - 1):
        y2 = layer(_perturb_after(x, t))
        assert not torch.equal(layer(x)[:, : t + 1], y2[:, : t + 1])


@pytest.mark.parametrize(
    "gated,residual", [(False, False), (True, False), (False, True), (True, True)]
)
def test_wavenet_is_causal(gated, residual):
    layer = WaveNet(4, dilation_rates=(1, 2, 4), activation="tanh", gated=gated, residual=residual)
    x = _f64((2, 16, 3))
    layer(x)
    _randomise(layer)
    _assert_causal(layer, x)


# -- parameter counts ---------------------------------------------------------------------------
def test_conv1d_param_count():
    layer = Conv1D(20, 4)
    layer.build((None, None, 1))
    assert layer.count_params() == 100
    assert tuple(layer.kernel.shape) == (4, 1, 20)  # Keras layout


def test_conv1d_keras_default_init():
    torch.manual_seed(0)
    layer = Conv1D(64, 5)
    layer.build((None, None, 40))
    limit = math.sqrt(6 / (5 * 40 + 5 * 64))  # glorot_uniform, fans scaled by the kernel size
    kernel = layer.kernel.detach()
    assert kernel.abs().max() <= limit
    assert kernel.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    assert torch.equal(layer.bias.detach(), torch.zeros(64))


def test_wavenet_param_counts_match_keras():
    wavenet = WaveNet(20)  # Hands-on ML ch. 15, on 1 feature
    wavenet.build((None, None, 1))
    assert wavenet.count_params() == 5800
    head = Conv1D(10, 1)
    head.build(wavenet.compute_output_shape((None, None, 1)))
    assert wavenet.count_params() + head.count_params() == 6010
    explicit = [Conv1D(20, 2, padding="causal", activation="relu", dilation_rate=r)
                for r in (1, 2, 4, 8) * 2]  # fmt: skip
    shape = (None, None, 1)
    for conv in explicit:
        conv.build(shape)
        shape = conv.compute_output_shape(shape)
    assert sum(c.count_params() for c in explicit) == 5800


def test_wavenet_plain_equals_its_conv_stack():
    wavenet = WaveNet(5, dilation_rates=(1, 2, 4))
    x = _f64((2, 10, 2))
    wavenet(x)
    _randomise(wavenet)
    y = x
    for rate, conv in zip((1, 2, 4), wavenet.convs, strict=True):
        ref = reference_conv1d(
            y.numpy(), conv.kernel.detach().numpy(), conv.bias.detach().numpy(), 1, "causal", rate
        )
        y = torch.from_numpy(np.maximum(ref, 0))
    torch.testing.assert_close(wavenet(x), y, rtol=1e-12, atol=1e-12)


def test_wavenet_gated_residual_structure():
    wavenet = WaveNet(4, kernel_size=2, dilation_rates=(1, 2), gated=True, residual=True)
    x = _f64((2, 7, 3))
    y = wavenet(x)
    assert y.shape == (2, 7, 4)
    # gated convs 2*(2*4*8 + 8) + input 1x1 (3*4 + 4) + 1 residual and 2 skip 1x1 (3*(4*4 + 4))
    assert wavenet.count_params() == 2 * 72 + 16 + 3 * 20
    convs, res, skips = wavenet.convs, wavenet.res_convs, wavenet.skip_convs

    def gate(conv, h):
        f, g = conv(h).chunk(2, dim=-1)
        return torch.tanh(f) * torch.sigmoid(g)

    h = wavenet.input_proj(x)
    z0 = gate(convs[0], h)
    h = h + res[0](z0)
    z1 = gate(convs[1], h)
    torch.testing.assert_close(y, skips[0](z0) + skips[1](z1), rtol=0, atol=0)
    same_width = WaveNet(3, dilation_rates=(1,), residual=True)
    same_width.build((None, None, 3))
    assert same_width.input_proj is None  # identity when features == filters


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["filters", "kernel_size", "strides", "dilation_rate"])
@pytest.mark.parametrize("value", [0, -1])
def test_conv1d_rejects_non_positive(name, value):
    kwargs = {"filters": 2, "kernel_size": 2, name: value}
    with pytest.raises(SeqcastError, match=f"`{name}` must be a positive integer, got {value}"):
        Conv1D(**kwargs)


def test_conv1d_errors():
    listed = "unknown padding 'full'; expected one of 'valid', 'same', 'causal'"
    with pytest.raises(SeqcastError, match=listed):
        Conv1D(2, 2, padding="full")
    both = r"strides > 1 together with dilation_rate > 1 .*\(Keras rejects it too\)"
    with pytest.raises(SeqcastError, match=both):
        Conv1D(2, 2, strides=2, dilation_rate=2)
    short = (
        "input has 3 time steps but Conv1D(kernel_size=4, dilation_rate=1) "
        "with padding='valid' needs at least 4"
    )
    with pytest.raises(SeqcastError, match=short.replace("(", r"\(").replace(")", r"\)")):
        Conv1D(2, 4)(torch.zeros(1, 3, 1))
    with pytest.raises(SeqcastError, match="needs at least 7"):
        Conv1D(2, 4, dilation_rate=2).compute_output_shape((None, 6, 1))
    assert Conv1D(2, 4, padding="causal")(torch.zeros(1, 3, 1)).shape == (1, 3, 2)
    with pytest.raises(SeqcastError, match=r"expected input of shape \(batch, time, features\)"):
        Conv1D(2, 2)(torch.zeros(4, 5))
    layer = Conv1D(2, 2)
    layer(torch.zeros(1, 5, 3))
    with pytest.raises(SeqcastError, match="expected 3 input features .* got 4"):
        layer(torch.zeros(1, 5, 4))
    with pytest.raises(SeqcastError, match="feature count .* must be known"):
        Conv1D(2, 2).build((None, None, None))


def test_wavenet_errors():
    with pytest.raises(SeqcastError, match="`dilation_rates` must be a non-empty list"):
        WaveNet(4, dilation_rates=())
    with pytest.raises(SeqcastError, match="`dilation_rates` must be a non-empty list"):
        WaveNet(4, dilation_rates=(1, 0))
    with pytest.raises(SeqcastError, match="`filters` must be a positive integer"):
        WaveNet(0)
    with pytest.raises(SeqcastError, match="unknown activation 'nope'"):
        WaveNet(4, activation="nope")
    layer = WaveNet(4, dilation_rates=(1, 2))
    layer(torch.zeros(1, 5, 2))
    with pytest.raises(SeqcastError, match="WaveNet: expected 2 input features .* got 3"):
        layer(torch.zeros(1, 5, 3))


# -- receptive fields ---------------------------------------------------------------------------
def test_receptive_field_property():
    assert Conv1D(2, 4).receptive_field == 4
    assert Conv1D(2, 3, dilation_rate=4).receptive_field == 9
    assert WaveNet(20).receptive_field == 31  # 1 + (1 + 2 + 4 + 8) * 2
    assert WaveNet(4, kernel_size=3, dilation_rates=(1, 2)).receptive_field == 7


@pytest.mark.parametrize(
    "layers,expected",
    [
        ([Conv1D(2, 4, strides=2), Conv1D(2, 3)], 8),  # 1 + 3 + 2*2
        ([Conv1D(2, 3), Conv1D(2, 4, strides=2)], 6),  # 1 + 2 + 3
        ([Conv1D(2, 2, strides=2), Conv1D(2, 2, strides=2), Conv1D(2, 2)], 8),  # 1 + 1 + 2 + 4
        ([Conv1D(2, 4, strides=2), Conv1D(2, 4, strides=2), WaveNet(3)], 1 + 3 + 6 + 30 * 4),
        ([WaveNet(20), Conv1D(10, 1)], 31),
        ([Conv1D(2, 3, dilation_rate=2), Dense(3), Conv1D(2, 2, dilation_rate=4)], 9),  # 1 + 4 + 4
        ([], 1),
    ],
)
def test_receptive_field_of_stacks(layers, expected):
    assert receptive_field(layers) == expected


def test_receptive_field_matches_perturbation():
    layers = [Conv1D(3, 3, strides=2, padding="causal"), Conv1D(3, 2, dilation_rate=2)]
    x = _f64((1, 19, 1))  # the last output step of the strided conv sees input step 18

    def run(inp):
        for layer in layers:
            inp = layer(inp)
        return inp

    run(x)
    y, last = run(x), x.shape[1] - 1  # the final output step sees steps [last - rf + 1, last]
    rf = receptive_field(layers)
    assert rf == 1 + 2 + 1 * 2 * 2
    changed = x.clone()
    changed[:, : last - rf + 1] += 1.0
    assert torch.equal(run(changed)[:, -1], y[:, -1])
    changed = x.clone()
    changed[:, last - rf + 1] += 1.0
    assert not torch.equal(run(changed)[:, -1], y[:, -1])


def test_receptive_field_rejects_layers_without_one():
    with pytest.raises(SeqcastError, match="Flatten has no receptive field over time"):
        receptive_field([Conv1D(2, 2), Flatten()])


# -- configs and gradients ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer",
    [
        Conv1D(3, 4, strides=2, padding="same", activation="relu", use_bias=False),
        Conv1D(8, 2, padding="causal", dilation_rate=4),
        WaveNet(20),
        WaveNet(6, kernel_size=3, dilation_rates=[1, 3], activation="tanh", gated=True),
        WaveNet(5, dilation_rates=[2], activation=None, residual=True),
    ],
    ids=["conv_same", "conv_causal", "wavenet", "wavenet_gated", "wavenet_residual"],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    rebuilt = type(layer)(**config)
    assert rebuilt.get_config() == config
    assert json.loads(json.dumps(config)) == config
    assert repr(rebuilt)


def _gradcheck_module(layer, x):
    names = [name for name, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def fn(inp, *flat):
        return functional_call(layer, dict(zip(names, flat, strict=True)), (inp,))

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(True), *params))


def test_gradcheck_conv1d_causal_dilated():
    layer = Conv1D(3, 3, padding="causal", dilation_rate=2, activation="tanh")
    x = _f64((2, 7, 2))
    layer(x)
    _randomise(layer)
    _gradcheck_module(layer, x)


def test_gradcheck_wavenet_gated_residual():
    layer = WaveNet(2, dilation_rates=(1, 2), gated=True, residual=True)
    x = _f64((1, 6, 3))
    layer(x)
    _randomise(layer)
    _gradcheck_module(layer, x)
