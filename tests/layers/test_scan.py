"""MinGRU / MinLSTM: the log-space scan against the sequential recurrence and a reference loop
written from the paper's equations (float64, outputs and gradients), the compiled CPU scan
against the sequential recurrence and the torch scan (chunks, threads, float32, fallback),
step-by-step inference, Keras semantics, parameter counts, errors and the registered models."""

import contextlib

import numpy as np
import pytest
import torch

from seqcast.errors import SeqcastError
from seqcast.layers import Bidirectional, MinGRU, MinLSTM, _compiled, deserialize, serialize
from seqcast.layers.scan import g, log_g, log_space_scan
from seqcast.models import ModelSpec, build_model
from seqcast.sequential import Sequential

D = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)
LAYERS = [MinGRU, MinLSTM]


def _layer(cls, features=4, units=5, **kwargs):
    """A built float64 layer with parameters large enough to use the whole range of the gates."""
    layer = cls(units, **kwargs)
    layer.build((None, None, features))
    layer.to(D)
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0)
        layer.bias.normal_(0.0, 1.0)
    return layer


def _reference(cls, x, weight, bias, h0):
    """The equations of Feng et al. (2024), one step at a time (nothing from seqcast.layers)."""
    units = weight.shape[0] // (2 if cls is MinGRU else 3)

    def act(v):  # g: x + 0.5 for x >= 0, sigmoid(x) below
        return torch.where(v >= 0, v + 0.5, 1.0 / (1.0 + torch.exp(-v)))

    h = torch.zeros(x.shape[0], units, dtype=x.dtype) if h0 is None else h0
    out = []
    for t in range(x.shape[1]):
        k = x[:, t] @ weight.T + bias
        if cls is MinGRU:
            z = 1.0 / (1.0 + torch.exp(-k[:, :units]))
            h = (1 - z) * h + z * act(k[:, units:])
        else:
            f = 1.0 / (1.0 + torch.exp(-k[:, :units]))
            i = 1.0 / (1.0 + torch.exp(-k[:, units : 2 * units]))
            h = f / (f + i) * h + i / (f + i) * act(k[:, 2 * units :])
        out.append(h)
    return torch.stack(out, dim=1)


def _outputs_and_grads(layer, x, h0, upstream, implementation):
    layer.implementation = implementation
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    h0 = None if h0 is None else h0.detach().clone().requires_grad_()
    y = layer(x, h0)
    (y * upstream).sum().backward()
    grads = [x.grad, layer.weight.grad, layer.bias.grad] + ([] if h0 is None else [h0.grad])
    return y.detach(), grads


# -- the scan against the recurrence --------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("steps", [1, 7, 300])
@pytest.mark.parametrize("with_state", [False, True])
def test_scan_equals_sequential_and_reference(cls, steps, with_state):
    torch.manual_seed(steps)
    layer = _layer(cls, return_sequences=True)
    x = torch.randn(3, steps, 4, dtype=D)
    h0 = torch.rand(3, 5, dtype=D) + 0.1 if with_state else None
    upstream = torch.randn(3, steps, 5, dtype=D)
    y_scan, g_scan = _outputs_and_grads(layer, x, h0, upstream, "scan")
    y_seq, g_seq = _outputs_and_grads(layer, x, h0, upstream, "sequential")
    torch.testing.assert_close(y_scan, y_seq, **TOL)
    for a, b in zip(g_scan, g_seq, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    ref = _reference(cls, x, layer.weight.detach(), layer.bias.detach(), h0)
    torch.testing.assert_close(y_scan, ref, **TOL)


@pytest.mark.parametrize("cls", LAYERS)
def test_gradcheck(cls):
    layer = _layer(cls, features=3, units=4, return_sequences=True)
    x = torch.randn(2, 6, 3, dtype=D, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=D, requires_grad=True)  # any real h0: it is added outside the log
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0), (x, h0))
    log_a = -torch.rand(2, 5, 3, dtype=D, requires_grad=True) * 3
    log_b = torch.randn(2, 5, 3, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(log_space_scan, (log_a, log_b))


def test_g_and_log_g():
    v = torch.linspace(-30, 30, 601, dtype=D)
    expected = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
    torch.testing.assert_close(g(v), expected, rtol=0, atol=0)
    exact_log = torch.where(v >= 0, torch.log(v.clamp(min=0) + 0.5), v - torch.log1p(v.exp()))
    torch.testing.assert_close(log_g(v), exact_log, rtol=1e-14, atol=1e-14)
    assert log_g(torch.tensor(-200.0, dtype=D)).item() == -200.0  # log(sigmoid) would be -inf
    assert g(torch.tensor(0.0)).item() == 0.5  # continuous at 0


@pytest.mark.parametrize("cls", LAYERS)
def test_saturated_gates_stay_finite(cls):
    for bias in (30.0, -30.0):  # a* reaches about -60,000 or log b about -30 per step
        layer = _layer(cls, features=2, units=3, return_sequences=True)
        with torch.no_grad():
            layer.bias.fill_(bias)
        x = torch.randn(2, 2000, 2, dtype=D, requires_grad=True)
        y = layer(x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
        layer.implementation = "sequential"
        torch.testing.assert_close(y, layer(x), **TOL)


def test_float32_scan_keeps_precision_on_long_sequences():
    layer = _layer(MinGRU, features=1, units=4, return_sequences=True)
    x = torch.randn(2, 4096, 1, dtype=D)
    ref = layer(x)
    y32 = layer.float()(x.float())
    assert y32.dtype == torch.float32
    assert ((y32.double() - ref).abs() / ref.abs()).max() < 1e-5  # ~3e-4 with a float32 scan


# -- the compiled scan (CPU) ----------------------------------------------------------------
needs_compiled = pytest.mark.skipif(
    not _compiled.available(), reason="compiled kernels unavailable (no C++ compiler or ninja)"
)
KINDS = {MinGRU: "min_gru", MinLSTM: "min_lstm"}


def _used_kernel(layer, x, h0=None):
    """Whether the layer's forward went through the compiled scan (its autograd node)."""
    with torch.enable_grad():
        y = layer(x.detach().requires_grad_(), h0)
    out = y[0] if isinstance(y, tuple) else y
    node = out.grad_fn
    while node is not None and type(node).__name__ in ("SelectBackward0", "FlipBackward0"):
        node = node.next_functions[0][0]
    return node is not None and type(node).__name__ == "_MinRNNScanBackward"


def _torch_scan(monkeypatch):
    monkeypatch.setattr(_compiled, "available", lambda device=None: False)


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@needs_compiled
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("start", [None, "positive", "zero", "negative", "mixed"])
def test_compiled_scan_equals_sequential_and_torch_scan(cls, start, monkeypatch):
    torch.manual_seed(len(str(start)))
    layer = _layer(cls, return_sequences=True)
    x = torch.randn(3, 257, 4, dtype=D)
    h0 = {
        None: None, "positive": torch.rand(3, 5, dtype=D) + 0.1, "zero": torch.zeros(3, 5, dtype=D),
        "negative": -torch.rand(3, 5, dtype=D) - 0.1, "mixed": 2 * torch.randn(3, 5, dtype=D),
    }[start]  # fmt: skip
    upstream = torch.randn(3, 257, 5, dtype=D)
    assert _used_kernel(layer, x, h0)
    y_kernel, g_kernel = _outputs_and_grads(layer, x, h0, upstream, "scan")
    y_seq, _ = _outputs_and_grads(layer, x, h0, upstream, "sequential")
    torch.testing.assert_close(y_kernel, y_seq, **TOL)
    with monkeypatch.context() as patch:
        _torch_scan(patch)
        assert not _used_kernel(layer, x, h0)
        y_torch, g_torch = _outputs_and_grads(layer, x, h0, upstream, "scan")
    torch.testing.assert_close(y_kernel, y_torch, **TOL)
    for a, b in zip(g_kernel, g_torch, strict=True):  # x, weight, bias (, h0)
        torch.testing.assert_close(a, b, **TOL)


@needs_compiled
@pytest.mark.parametrize("cls", LAYERS)
def test_compiled_scan_go_backwards_and_return_state(cls):
    layer = _layer(cls, go_backwards=True, return_state=True)
    x, h0 = torch.randn(2, 50, 4, dtype=D), torch.randn(2, 5, dtype=D)
    assert _used_kernel(layer, x, h0)
    y, h = layer(x, h0)
    layer.implementation = "sequential"
    y_seq, h_seq = layer(x, h0)
    torch.testing.assert_close(y, y_seq, **TOL)
    torch.testing.assert_close(h, h_seq, **TOL)


@needs_compiled
@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
@pytest.mark.parametrize("features", [3, 40])  # 40: a wide input, projected by ATen
def test_compiled_scan_gradcheck(kind, features):
    gates = 2 if kind == "min_gru" else 3
    torch.manual_seed(features)
    x = torch.randn(2, 7, features, dtype=D, requires_grad=True)
    w = (torch.randn(gates * 3, features, dtype=D) / features**0.5).requires_grad_()
    b = torch.randn(gates * 3, dtype=D, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=D, requires_grad=True)
    with _one_thread():  # chunks run in turn: hundreds of tiny calls, no thread hand-offs
        for chunks in (1, 3):

            def op(x, w, b, h0, chunks=chunks):
                return _compiled.min_rnn_scan(x, w, b, h0, kind, chunks)

            assert torch.autograd.gradcheck(op, (x, w, b, h0))
            assert torch.autograd.gradcheck(lambda x, w, b, op=op: op(x, w, b, None), (x, w, b))


@needs_compiled
@pytest.mark.parametrize("cls", LAYERS)
def test_compiled_scan_time_chunks_match_one_pass(cls):
    # The parallel scan: chunks run from h = 0 and are fixed up with the state before them;
    # the backward sends each chunk's message back first. Same numbers as one pass.
    torch.manual_seed(3)
    layer = _layer(cls, features=2, units=3)
    x = torch.randn(2, 301, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=D, requires_grad=True)
    upstream = torch.randn(2, 301, 3, dtype=D)
    results = []
    with _one_thread():
        for chunks in (1, 2, 7):
            y = _compiled.min_rnn_scan(x, layer.weight, layer.bias, h0, KINDS[cls], chunks)
            grads = torch.autograd.grad((y * upstream).sum(), (x, layer.weight, layer.bias, h0))
            results.append((y, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_compiled
def test_compiled_scan_on_two_threads_matches_one_thread():
    # Large enough for a time chunk per thread (each at least 256 steps and 2^20 lanes * steps)
    layer = _layer(MinGRU, features=1, units=16, return_sequences=True)
    x, h0 = torch.randn(16, 8192, 1, dtype=D), torch.randn(16, 16, dtype=D)
    upstream = torch.randn(16, 8192, 16, dtype=D)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, g1 = _outputs_and_grads(layer, x, h0, upstream, "scan")
        torch.set_num_threads(2)
        y2, g2 = _outputs_and_grads(layer, x, h0, upstream, "scan")
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_compiled
@pytest.mark.parametrize("cls", LAYERS)
def test_compiled_float32_scan_against_float64_at_4096_steps(cls):
    # Float32 runs in float32 with approximate exp/log: measured ~5e-7 relative on the outputs
    # (a few ulp: the sequential log-space recurrence contracts, so rounding does not grow).
    torch.manual_seed(1)
    layer = _layer(cls, features=1, units=4, return_sequences=True)
    x = torch.randn(2, 4096, 1, dtype=D)
    upstream = torch.randn(2, 4096, 4, dtype=D)
    ref, ref_grads = _outputs_and_grads(layer, x, None, upstream, "scan")
    layer.float()
    y32, grads32 = _outputs_and_grads(layer, x.float(), None, upstream.float(), "scan")
    assert y32.dtype == torch.float32 and _used_kernel(layer, x.float())
    assert ((y32.double() - ref).abs() / ref.abs()).max() < 2e-6
    for a, b in zip(grads32, ref_grads, strict=True):  # x, weight, bias
        assert (a.double() - b).abs().max() / b.abs().max() < 2e-5


def test_scan_falls_back_to_torch_without_the_kernel(monkeypatch):
    layer = _layer(MinLSTM, return_sequences=True)
    x, h0 = torch.randn(2, 30, 4, dtype=D), torch.randn(2, 5, dtype=D)
    layer.implementation = "sequential"
    expected = layer(x, h0)
    layer.implementation = "scan"
    monkeypatch.setenv("SEQCAST_NO_COMPILE", "1")
    assert not _used_kernel(layer, x, h0)
    torch.testing.assert_close(layer(x, h0), expected, **TOL)
    monkeypatch.delenv("SEQCAST_NO_COMPILE")
    _torch_scan(monkeypatch)
    assert not _used_kernel(layer, x, h0)
    torch.testing.assert_close(layer(x, h0), expected, **TOL)
    # dtypes the kernel does not take run the torch scan too
    layer.to(torch.bfloat16)
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


# -- step-by-step inference -----------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
def test_step_by_step_equals_whole_sequence(cls):
    layer = _layer(cls, return_sequences=True)
    x = torch.randn(2, 9, 4, dtype=D)
    h0 = torch.rand(2, 5, dtype=D)
    for start in (None, h0):
        h, states = start, []
        for t in range(x.shape[1]):
            h = layer.step(x[:, t], h)
            states.append(h)
        torch.testing.assert_close(torch.stack(states, 1), layer(x, start), **TOL)


def test_step_builds_an_unbuilt_layer_and_checks_shapes():
    layer = MinGRU(3)
    h = layer.step(torch.randn(2, 4))
    assert layer.built and h.shape == (2, 3) and layer.count_params() == 2 * (4 * 3 + 3)
    with pytest.raises(SeqcastError, match=r"step input of shape \(batch, features\)"):
        layer.step(torch.randn(2, 1, 4))
    with pytest.raises(SeqcastError, match="expected 4 input features"):
        layer.step(torch.randn(2, 5))
    with pytest.raises(SeqcastError, match=r"expected a state of shape \(2, 3\), got \(2, 4\)"):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4))


# -- Keras semantics ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
def test_return_sequences_and_state(cls):
    x = torch.randn(3, 8, 2)
    seq, h = cls(4, return_sequences=True, return_state=True)(x)
    assert seq.shape == (3, 8, 4) and h.shape == (3, 4)
    assert torch.equal(seq[:, -1], h)
    last, h = cls(4, return_state=True)(x)
    assert torch.equal(last, h)
    layer = cls(4)
    assert layer(x).shape == (3, 4)
    assert layer.compute_output_shape((None, None, 2)) == (None, 4)
    assert cls(4, return_sequences=True).compute_output_shape((None, 8, 2)) == (None, 8, 4)
    initial = torch.rand(3, 4)
    torch.testing.assert_close(layer(x, [initial]), layer(x, initial))  # list or tensor


@pytest.mark.parametrize("cls", LAYERS)
def test_go_backwards_reads_the_input_reversed(cls):
    forward = _layer(cls, return_sequences=True)
    backward = cls(5, return_sequences=True, go_backwards=True)
    backward(torch.zeros(1, 1, 4, dtype=D))
    backward.load_state_dict(forward.state_dict())
    x = torch.randn(2, 6, 4, dtype=D)
    # Keras: the output sequence comes in the reversed (reading) order
    torch.testing.assert_close(backward(x), forward(x.flip(1)), rtol=0, atol=0)
    assert not torch.allclose(backward(x), forward(x))


def test_bidirectional_wraps_min_gru():
    layer = Bidirectional(MinGRU(4, return_sequences=True))
    assert layer(torch.randn(2, 7, 3)).shape == (2, 7, 8)
    assert layer.count_params() == 2 * 2 * (3 * 4 + 4)


def test_parameter_counts():
    def count(layer, features):
        return Sequential([layer], input_shape=(None, features)).count_params()

    assert count(MinGRU(20), 1) == 80  # 2(F*H + H)
    assert count(MinLSTM(20), 1) == 120  # 3(F*H + H)
    assert count(MinGRU(13), 7) == 2 * (7 * 13 + 13)
    assert count(MinLSTM(13), 7) == 3 * (7 * 13 + 13)


def test_config_round_trip_and_repr():
    layer = MinLSTM(6, return_sequences=True, go_backwards=True, implementation="sequential")
    x = torch.randn(2, 5, 3)
    layer(x)
    spec = serialize(layer)
    assert spec["config"] == {
        "units": 6, "return_sequences": True, "return_state": False, "go_backwards": True,
        "implementation": "sequential",
    }  # fmt: skip
    twin = deserialize(spec)
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x), layer(x))
    text = repr(layer)
    assert "units=6" in text and "go_backwards=True" in text and "'sequential'" in text
    assert repr(MinGRU(3)) == "MinGRU(units=3)"


# -- errors ---------------------------------------------------------------------------------
def test_bad_arguments_and_inputs():
    with pytest.raises(SeqcastError, match="`units` must be a positive integer, got 0"):
        MinGRU(0)
    with pytest.raises(SeqcastError, match="unknown implementation 'loop'; expected one of"):
        MinLSTM(3, implementation="loop")
    layer = MinGRU(3)
    with pytest.raises(SeqcastError, match="unknown implementation 'fast'"):
        layer.implementation = "fast"
    with pytest.raises(SeqcastError, match=r"expected input of shape \(batch, time, features\)"):
        layer(torch.randn(2, 5))
    with pytest.raises(SeqcastError, match="time axis is empty"):
        layer(torch.randn(2, 0, 1))
    layer(torch.randn(2, 5, 1))
    with pytest.raises(SeqcastError, match="expected 1 input features .* got 2"):
        layer(torch.randn(2, 5, 2))
    with pytest.raises(SeqcastError, match=r"expected a state of shape \(2, 3\)"):
        layer(torch.randn(2, 5, 1), torch.zeros(3, 3))
    with pytest.raises(SeqcastError, match="expected one initial state tensor"):
        layer(torch.randn(2, 5, 1), [torch.zeros(2, 3), torch.zeros(2, 3)])


# -- the registered models ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["min_gru", "min_lstm"])
def test_registered_model_forecasts_and_fits(name):
    model = build_model(name, ModelSpec(window=24, horizon=6))
    assert model(torch.randn(4, 24, 1)).shape == (4, 6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 24, 1)).astype(np.float32)
    y = rng.normal(size=(32, 6)).astype(np.float32)
    history = model.fit(x, y, epochs=1, batch_size=16, seed=0, verbose=False)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x).shape == (32, 6)
