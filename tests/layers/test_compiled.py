"""The compiled recurrences (`seqcast.layers._compiled`) against the float64 reference loops of
`tests/reference/recurrences.py`: outputs and the gradient with respect to every input to
1e-10, `gradcheck`, float32 against float64, recurrent-dropout masks, T=1 and batch 1."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from reference.recurrences import (
    gru_reference,
    ln_simple_rnn_reference,
    lstm_reference,
    simple_rnn_reference,
)

from seqcast.layers import _compiled

pytestmark = pytest.mark.skipif(
    not _compiled.available(),
    reason="compiled recurrences unavailable (no C++ compiler or ninja, a failed build, "
    "or SEQCAST_NO_COMPILE=1)",
)

D = torch.float64
TOL = dict(rtol=0, atol=1e-10)


# -- problems: (kernel, reference, arguments, indices of the differentiable arguments) ---------


def _mask(batch: int, units: int, dtype=D) -> torch.Tensor:
    keep = 0.7
    return torch.bernoulli(torch.full((batch, units), keep, dtype=dtype)) / keep


def _lstm(batch, steps, units, masked, peephole=True, dtype=D):
    args = [
        torch.randn(batch, steps, 4 * units, dtype=dtype),
        torch.randn(4 * units, units, dtype=dtype) * units**-0.5,
        torch.randn(batch, units, dtype=dtype),
        torch.randn(batch, units, dtype=dtype),
        torch.randn(3, units, dtype=dtype) if peephole else None,
        _mask(batch, units, dtype) if masked else None,
    ]
    return _compiled.lstm_sequence, lstm_reference, args, [0, 1, 2, 3] + ([4] if peephole else [])


def _gru(batch, steps, units, masked, reset_after=True, bias=True, dtype=D):
    args = [
        torch.randn(batch, steps, 3 * units, dtype=dtype),
        torch.randn(3 * units, units, dtype=dtype) * units**-0.5,
        torch.randn(batch, units, dtype=dtype),
        torch.randn(3 * units, dtype=dtype) if bias else None,
        reset_after,
        _mask(batch, units, dtype) if masked else None,
    ]
    return _compiled.gru_sequence, gru_reference, args, [0, 1, 2] + ([3] if bias else [])


def _rnn(batch, steps, units, masked, activation="tanh", dtype=D):
    args = [
        torch.randn(batch, steps, units, dtype=dtype),
        torch.randn(units, units, dtype=dtype) * units**-0.5,
        torch.randn(batch, units, dtype=dtype),
        activation,
        _mask(batch, units, dtype) if masked else None,
    ]
    return _compiled.simple_rnn_sequence, simple_rnn_reference, args, [0, 1, 2]


def _ln_rnn(batch, steps, units, masked, activation="tanh", dtype=D):
    args = [
        torch.randn(batch, steps, units, dtype=dtype),
        torch.randn(units, units, dtype=dtype) * units**-0.5,
        torch.randn(batch, units, dtype=dtype),
        1.0 + 0.3 * torch.randn(units, dtype=dtype),
        0.3 * torch.randn(units, dtype=dtype),
        1e-3,
        activation,
        _mask(batch, units, dtype) if masked else None,
    ]
    return _compiled.ln_simple_rnn_sequence, ln_simple_rnn_reference, args, [0, 1, 2, 3, 4]


PROBLEMS = {
    "lstm": _lstm,
    "lstm_no_peephole": lambda *a, **k: _lstm(*a, peephole=False, **k),
    "gru": _gru,
    "gru_no_bias": lambda *a, **k: _gru(*a, bias=False, **k),
    "gru_reset_before": lambda *a, **k: _gru(*a, reset_after=False, bias=False, **k),
    "simple_rnn_tanh": _rnn,
    "simple_rnn_relu": lambda *a, **k: _rnn(*a, activation="relu", **k),
    "simple_rnn_sigmoid": lambda *a, **k: _rnn(*a, activation="sigmoid", **k),
    "simple_rnn_linear": lambda *a, **k: _rnn(*a, activation="linear", **k),
    "ln_simple_rnn_tanh": _ln_rnn,
    "ln_simple_rnn_relu": lambda *a, **k: _ln_rnn(*a, activation="relu", **k),
    "ln_simple_rnn_sigmoid": lambda *a, **k: _ln_rnn(*a, activation="sigmoid", **k),
    "ln_simple_rnn_linear": lambda *a, **k: _ln_rnn(*a, activation="linear", **k),
}


def _leaves(args, diff):
    return [
        a.detach().clone().requires_grad_(i in diff) if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(args)
    ]


def _outputs_and_grads(fn, args, diff, weights=None):
    """fn's outputs and d(sum_k <w_k, output_k>)/d(args[i]) for i in diff (random w_k)."""
    leaves = _leaves(args, diff)
    outputs = fn(*leaves)
    if weights is None:
        weights = [torch.randn_like(o) for o in outputs]
    loss = sum((o * w).sum() for o, w in zip(outputs, weights, strict=True))
    grads = torch.autograd.grad(loss, [leaves[i] for i in diff])
    return [o.detach() for o in outputs], list(grads), weights


# -- equality with the reference loops ----------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize(
    "shape", [(4, 7, 5), (1, 6, 3), (3, 1, 4)], ids=["B4_T7_H5", "batch1", "T1"]
)
@pytest.mark.parametrize("name", PROBLEMS)
def test_matches_reference_float64(name, shape, masked):
    kernel, reference, args, diff = PROBLEMS[name](*shape, masked)
    got, got_grads, weights = _outputs_and_grads(kernel, args, diff)
    want, want_grads, _ = _outputs_and_grads(reference, args, diff, weights)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == D
        torch.testing.assert_close(g, w, **TOL)
    for i, g, w in zip(diff, got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, **TOL, msg=lambda m, i=i: f"grad of argument {i}: {m}")


@pytest.mark.parametrize("name", PROBLEMS)
def test_gradcheck(name):
    kernel, _, args, diff = PROBLEMS[name](2, 3, 3, masked=True)
    leaves = _leaves(args, diff)
    assert torch.autograd.gradcheck(lambda *a: kernel(*a), leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_float32_agrees_with_float64(name, masked):
    kernel, _, args, diff = PROBLEMS[name](5, 20, 16, masked)
    got64, grads64, weights = _outputs_and_grads(kernel, args, diff)
    args32 = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
    got32, grads32, _ = _outputs_and_grads(kernel, args32, diff, [w.float() for w in weights])
    for g32, g64 in zip(got32 + grads32, got64 + grads64, strict=True):
        assert g32.dtype == torch.float32
        scale = max(1.0, g64.abs().max().item())  # relu/linear RNNs grow: errors relative to it
        torch.testing.assert_close(g32.double(), g64, rtol=0, atol=1e-5 * scale)


# -- behaviour ----------------------------------------------------------------------------------


def test_only_the_needed_gradients_are_returned():
    x = torch.randn(2, 4, 12, dtype=D, requires_grad=True)
    w = torch.randn(12, 3, dtype=D)
    h0, c0 = torch.zeros(2, 3, dtype=D), torch.zeros(2, 3, dtype=D)
    out, h, c = _compiled.lstm_sequence(x, w, h0, c0)
    (out.sum() + c.sum()).backward()
    assert x.grad is not None and w.grad is None and h0.grad is None


def test_final_states_are_the_last_outputs_and_unused_outputs_need_no_gradient():
    kernel, _, args, diff = PROBLEMS["gru"](3, 5, 4, masked=False)
    leaves = _leaves(args, diff)
    out, h = kernel(*leaves)
    torch.testing.assert_close(h, out[:, -1], rtol=0, atol=0)
    h.sum().backward()  # the gradient of `out` is never materialised by the caller
    assert all(leaves[i].grad is not None for i in diff)


def test_non_contiguous_inputs_are_accepted():
    kernel, reference, args, _ = PROBLEMS["lstm"](3, 4, 5, masked=True)
    xproj = args[0].transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    assert not xproj.is_contiguous()
    got = kernel(xproj, *args[1:])
    want = reference(*args)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL)


def test_unknown_activation_is_a_value_error():
    kernel, _, args, _ = PROBLEMS["simple_rnn_tanh"](2, 3, 4, masked=False)
    args[3] = "softmax"
    with pytest.raises(ValueError, match="activation"):
        kernel(*args)
    _, _, args, _ = PROBLEMS["ln_simple_rnn_tanh"](2, 3, 4, masked=False)
    with pytest.raises(ValueError, match="activation"):
        _compiled.ln_simple_rnn_sequence(*args[:6], "elu")


def test_gru_reset_before_takes_no_recurrent_bias():
    _, _, args, _ = PROBLEMS["gru"](2, 3, 4, masked=False)
    args[4] = False  # reset_after=False, with a b_hh given
    with pytest.raises(RuntimeError, match="b_hh"):
        _compiled.gru_sequence(*args)


def test_mismatched_shapes_are_reported():
    x = torch.randn(2, 3, 8)
    with pytest.raises(RuntimeError, match="w_hh"):
        _compiled.lstm_sequence(x, torch.randn(8, 3), torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="h0"):
        _compiled.lstm_sequence(x, torch.randn(8, 2), torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="dtype"):
        _compiled.simple_rnn_sequence(torch.randn(2, 3, 2), torch.randn(2, 2, dtype=D),
                                      torch.zeros(2, 2))  # fmt: skip


@pytest.mark.parametrize("batch, units", [(2, 3), (64, 128)], ids=["one_thread", "threads"])
def test_float32_kernels_leave_denormals_as_they_found_them(batch, units):
    # The kernels flush denormals to zero while they run (on every intra-op thread when they
    # use several); afterwards other float32 work must see IEEE denormals again.
    kernel, _, args, diff = PROBLEMS["gru"](batch, 3, units, masked=False, dtype=torch.float32)
    leaves = _leaves(args, diff)
    kernel(*leaves)[0].sum().backward()
    tiny = torch.full((1 << 16,), 1e-39, dtype=torch.float32)  # a denormal float32
    assert (tiny * 1.5 > 0).all()  # large enough to run on torch's intra-op threads
    assert (tiny[:1] * 1.5).item() > 0


def test_large_buffers_are_reused_only_once_freed():
    # Buffers of 8 MB and more come from a cache of freed ones: a tensor still alive keeps its
    # memory, and a reused buffer gives the same results as a fresh one.
    kernel, _, args, diff = PROBLEMS["lstm"](64, 100, 128, masked=False, dtype=torch.float32)
    first = [o.detach().clone() for o in kernel(*args)]
    kept = kernel(*args)  # (64, 100, 4*128) float32 saved gates: 13 MB
    other = [a * 0.5 if isinstance(a, torch.Tensor) else a for a in args]
    kernel(*other)
    for _ in range(2):
        again = kernel(*args)
    for a, b, c in zip(first, kept, again, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=0, atol=0)
    leaves = _leaves(args, diff)
    kernel(*leaves)[0].sum().backward()
    grads = [leaves[i].grad.clone() for i in diff]
    leaves = _leaves(args, diff)
    kernel(*leaves)[0].sum().backward()
    for i, g in zip(diff, grads, strict=True):
        torch.testing.assert_close(leaves[i].grad, g, rtol=0, atol=0)


def test_turned_off_by_environment_variable(monkeypatch):
    monkeypatch.setenv("SEQCAST_NO_COMPILE", "1")
    assert _compiled.available() is False
    monkeypatch.delenv("SEQCAST_NO_COMPILE")
    assert _compiled.available() is True
    assert _compiled.available("cpu") is True
    assert _compiled.available(torch.device("meta")) is False


def test_a_failed_build_logs_once_and_reports_unavailable(monkeypatch, caplog):
    monkeypatch.setattr(_compiled, "_built", None)
    source = _compiled._SOURCES[0]
    monkeypatch.setattr(_compiled, "_SOURCES", [source, source.with_name("missing.cpp")])
    with caplog.at_level(logging.WARNING, logger=_compiled.__name__):
        assert _compiled.available() is False
        assert _compiled.available() is False
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


def test_lstm_layer_column_blocks_on_threads_match_one_thread():
    # Large calls split the batch into column blocks run on separate threads (each block's
    # weight gradients summed, then added in block order); the result must not depend on it.
    torch.manual_seed(0)
    T, F, B, H = 40, 96, 48, 96  # T * 4H * (H + F) * B > 2^24: blocks when 2+ threads
    args = [
        torch.randn(T, F, B, dtype=D),
        torch.randn(4 * H, F, dtype=D) * F**-0.5,
        torch.randn(4 * H, H, dtype=D) * H**-0.5,
        torch.randn(4 * H, dtype=D),
        torch.randn(B, H, dtype=D),
        torch.randn(B, H, dtype=D),
        torch.randn(3, H, dtype=D),
        _mask(B, H),
    ]
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            leaves = [a.clone().requires_grad_(i < 7) for i, a in enumerate(args)]
            out, h, c = _compiled.lstm_layer(*leaves)
            (out.sum() + (h * c).sum()).backward()
            results.append([out, h, c, *(leaves[i].grad for i in range(7))])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        torch.testing.assert_close(two, one, rtol=0, atol=1e-11)


def test_lstm_layer_reports_mismatched_shapes():
    x = torch.randn(3, 2, 4)  # (T, F, B)
    w_ih, w_hh = torch.randn(8, 2), torch.randn(8, 2)
    h0 = torch.zeros(4, 2)
    with pytest.raises(RuntimeError, match="w_ih must be"):
        _compiled.lstm_layer(x, torch.randn(8, 3), w_hh, None, h0, h0)
    with pytest.raises(RuntimeError, match="h0 must be"):
        _compiled.lstm_layer(x, w_ih, w_hh, None, torch.zeros(3, 2), h0)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        _compiled.lstm_layer(x, w_ih, w_hh, torch.zeros(7), h0, h0)


# -- stacked LSTM layers (`lstm_stack`) ---------------------------------------------------------


def _stack_layers(sizes, peephole, bias=True, dtype=D):
    layers = []
    for features, units in sizes:
        layers.append((
            torch.randn(4 * units, features, dtype=dtype) * features**-0.5,
            torch.randn(4 * units, units, dtype=dtype) * units**-0.5,
            torch.randn(4 * units, dtype=dtype) if bias else None,
            torch.randn(3, units, dtype=dtype) * 0.5 if peephole else None,
        ))  # fmt: skip
    return [tuple(t if t is None else t.requires_grad_() for t in layer) for layer in layers]


def _layer_after_layer(xs, layers):
    h = xs
    for w_ih, w_hh, bias, peephole in layers:
        zeros = torch.zeros(xs.shape[2], w_hh.shape[1], dtype=xs.dtype)
        h, _, _ = _compiled.lstm_layer(h, w_ih, w_hh, bias, zeros, zeros, peephole)
    return h


@pytest.mark.parametrize("dtype", [D, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("peephole, bias", [(False, True), (True, False)])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_lstm_stack_equals_layer_after_layer_to_the_last_bit(dtype, peephole, bias, workers):
    # The stack runs each layer's steps with the single-layer op's arithmetic in the same
    # order, whether one thread runs them layer after layer or several as a wavefront (steps
    # of 4H(H+F)B >= 2^15 multiply-adds over the layers, as here). The upper layers are the
    # smaller: their threads would overtake the ones below if they did not wait.
    torch.manual_seed(0)
    layers = _stack_layers([(3, 40), (40, 6), (6, 4)], peephole, bias, dtype)
    xs = torch.randn(60, 3, 32, dtype=dtype, requires_grad=True)
    leaves = [xs, *(t for layer in layers for t in layer if t is not None)]
    threads = torch.get_num_threads()
    # The reference runs on one intra-op thread, as the wavefront's layers do (their matrix
    # products run inside a parallel region, where MKL uses one thread): MKL's small products
    # round differently on one thread and on two, which is the library's doing, not the stack's.
    try:
        torch.set_num_threads(1)
        expected = _layer_after_layer(xs, layers)
        want = torch.autograd.grad((expected * expected.cos()).sum(), leaves)
    finally:
        torch.set_num_threads(threads)
    try:
        # one worker runs the layers at top level: on one thread too, like the reference
        torch.set_num_threads(1 if workers == 1 else max(threads, workers))
        _compiled.wavefront_stats(reset=True)
        out = _compiled.lstm_stack(xs, layers, workers)
        got = torch.autograd.grad((out * out.cos()).sum(), leaves)
        stats = _compiled.wavefront_stats()
    finally:
        torch.set_num_threads(threads)
    if workers > 1 and stats["openmp"]:
        assert stats["wavefront"] >= 1  # the forward, at least, ran as a wavefront
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_lstm_stack_gradcheck():
    torch.manual_seed(1)
    layers = _stack_layers([(2, 3), (3, 2)], peephole=True)
    xs = torch.randn(4, 2, 3, dtype=D, requires_grad=True)
    params = [t for layer in layers for t in layer]

    def stack(x, *flat):
        return _compiled.lstm_stack(x, [tuple(flat[i : i + 4]) for i in (0, 4)])

    assert torch.autograd.gradcheck(stack, (xs, *params))


def test_lstm_stack_large_batches_use_column_blocks_with_the_same_result():
    torch.manual_seed(2)
    layers = _stack_layers([(96, 96), (96, 96)], peephole=False)
    xs = torch.randn(40, 96, 48, dtype=D, requires_grad=True)  # large enough for blocks
    leaves = [xs, *(t for layer in layers for t in layer if t is not None)]
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = _compiled.lstm_stack(xs, layers, workers=n)
            results.append([out, *torch.autograd.grad(out.square().sum(), leaves)])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        torch.testing.assert_close(two, one, rtol=0, atol=1e-11)


def test_lstm_stack_keeps_its_results_while_another_process_holds_a_core():
    # With the second core busy the op falls back to one thread for a while (see the
    # WavefrontGate in lstm_stack.cpp); whichever way a call runs, its result is the same.
    import subprocess
    import sys

    torch.manual_seed(3)
    layers = _stack_layers([(1, 20), (20, 20)], peephole=False, dtype=torch.float32)
    xs = torch.randn(50, 1, 32)
    expected = _compiled.lstm_stack(xs, layers, workers=1).detach()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for _ in range(200):
            torch.testing.assert_close(
                _compiled.lstm_stack(xs, layers, workers=2).detach(), expected, rtol=0, atol=0
            )
    finally:
        busy.kill()
        busy.wait()


def test_lstm_stack_reports_mismatched_layers():
    xs = torch.randn(3, 2, 4)
    layers = [(torch.randn(8, 2), torch.randn(8, 2), None, None)] * 2  # 2 -> 2 -> 2: fine
    assert _compiled.lstm_stack(xs, layers).shape == (3, 2, 4)
    wrong = [layers[0], (torch.randn(12, 5), torch.randn(12, 3), None, None)]
    with pytest.raises(RuntimeError, match="layer 1 takes 2 features"):
        _compiled.lstm_stack(xs, wrong)


def test_stack_threads_follow_the_setting():
    assert _compiled.stack_threads() >= 1
    with _compiled.using_stack_threads(1):
        assert _compiled.stack_threads() == 1
        with _compiled.using_stack_threads(None):
            assert _compiled.stack_threads() >= 1
        assert _compiled.stack_threads() == 1


def test_lstm_stack_names_the_layer_and_tensor_that_do_not_fit():
    xs = torch.randn(3, 2, 4)
    good = (torch.randn(8, 2), torch.randn(8, 2), None, None)
    with pytest.raises(RuntimeError, match="layer 1's w_hh must have shape"):
        _compiled.lstm_stack(xs, [good, (torch.randn(8, 2), torch.randn(12, 2), None, None)])
    with pytest.raises(RuntimeError, match="layer 0's bias must have shape"):
        _compiled.lstm_stack(xs, [(*good[:2], torch.zeros(7), None), good])
    with pytest.raises(RuntimeError, match="layer 0's peephole must be a contiguous CPU"):
        _compiled.lstm_stack(xs, [(*good[:3], torch.zeros(3, 2, dtype=D)), good])


def test_editing_a_shared_header_changes_the_build_flags(monkeypatch, tmp_path):
    # torch rebuilds a cached extension only when its listed sources or its flags change; the
    # shared header reaches the flags through its hash.
    header = tmp_path / "common.h"
    header.write_text("// one version\n")
    monkeypatch.setattr(_compiled, "_HEADERS", [header])
    before = _compiled._headers_digest_flag()
    header.write_text("// another version\n")
    assert _compiled._headers_digest_flag() != before
    assert before.startswith("-DSEQCAST_HEADERS_SHA1=")


def test_every_source_is_compiled_and_every_header_hashed():
    # A file left out of _SOURCES would fail the load with an undefined symbol; a header left
    # out of the hash would let a cached build outlive an edit of it.
    csrc = _compiled._CSRC
    assert sorted(_compiled._SOURCES) == sorted(csrc.glob("*.cpp"))
    assert len(set(_compiled._SOURCES)) == len(_compiled._SOURCES)
    assert _compiled._HEADERS == sorted(csrc.glob("*.h"))


class _FakeBuild:
    """`cpp_extension.load` that builds nothing: it notes what was said on stderr by the time
    it ran, and leaves a library in the stamp's directory, as a build would."""

    def __init__(self, capsys, directory):
        self.capsys, self.directory, self.said_before = capsys, directory, []

    def __call__(self, **kwargs):
        self.said_before.append(self.capsys.readouterr().err)
        (self.directory / f"{_compiled._EXTENSION}.so").write_bytes(b"")


@pytest.fixture
def fake_build(monkeypatch, tmp_path, capsys):
    from torch.utils import cpp_extension

    fake = _FakeBuild(capsys, tmp_path)
    monkeypatch.setattr(cpp_extension, "load", fake)
    monkeypatch.setattr(_compiled, "_stamp_path", lambda _: tmp_path / _compiled._STAMP)
    monkeypatch.setattr(_compiled._log, "hasHandlers", lambda: False)  # as on the CLI
    return fake


def test_a_compile_is_announced_before_it_starts_and_timed_and_a_cache_hit_is_silent(
    fake_build, capsys
):
    assert _compiled._build() is True
    said = fake_build.said_before[0]
    assert "seqcast: compiling the C++ recurrence kernels (first use only, about" in said
    assert re.search(r"recurrence kernels built in \d+\.\d s", capsys.readouterr().err)
    assert _compiled._build() is True  # the stamp matches: torch only loads the cached build
    assert fake_build.said_before[1] == "" and capsys.readouterr().err == ""


def test_an_edited_source_or_other_flags_are_announced_again(
    fake_build, monkeypatch, tmp_path, capsys
):
    _compiled._build()
    edited = tmp_path / "src" / _compiled._SOURCES[-1].name
    edited.parent.mkdir()
    edited.write_text(_compiled._SOURCES[-1].read_text() + "// edited\n")
    monkeypatch.setattr(_compiled, "_SOURCES", [*_compiled._SOURCES[:-1], edited])
    _compiled._build()
    for flags in ("_FLAGS_WITH_OPENMP", "_FLAGS_WITHOUT_OPENMP"):
        monkeypatch.setattr(_compiled, flags, (["-O3", "-DSEQCAST_OTHER"], []))
    _compiled._build()
    assert ["compiling" in said for said in fake_build.said_before] == [True, True, True]


def test_with_logging_set_up_the_notice_is_a_log_record(fake_build, monkeypatch, caplog):
    monkeypatch.setattr(_compiled._log, "hasHandlers", lambda: True)
    with caplog.at_level(logging.INFO, logger="seqcast.layers"):
        _compiled._build()
    said = [r.getMessage() for r in caplog.records if r.name == _compiled.__name__]
    assert len(said) == 2 and "compiling" in said[0] and "built in" in said[1]
    assert fake_build.said_before == [""]  # nothing on stderr


def test_lstm_stack_with_mixed_layers_gives_each_input_its_gradient():
    # Autograd's node (C++) takes only the biases and peepholes that exist: a stack mixing
    # layers with and without them must still hand every tensor its own gradient.
    torch.manual_seed(4)
    first = _stack_layers([(3, 5)], peephole=True, bias=False)[0]
    second = _stack_layers([(5, 4)], peephole=False, bias=True)[0]
    third = _stack_layers([(4, 2)], peephole=True, bias=True)[0]
    layers = [first, second, third]
    xs = torch.randn(6, 3, 4, dtype=D, requires_grad=True)
    leaves = [xs, *(t for layer in layers for t in layer if t is not None)]
    expected = _layer_after_layer(xs, layers)
    want = torch.autograd.grad(expected.sin().sum(), leaves)
    out = _compiled.lstm_stack(xs, layers, workers=1)
    got = torch.autograd.grad(out.sin().sum(), leaves)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_lstm_stack_refuses_a_differentiable_backward():
    layers = _stack_layers([(2, 3), (3, 2)], peephole=False)
    xs = torch.randn(4, 2, 3, dtype=D, requires_grad=True)
    out = _compiled.lstm_stack(xs, layers)
    with pytest.raises(RuntimeError, match="backward pass is not differentiable"):
        torch.autograd.grad(out.sum(), xs, create_graph=True)


@pytest.mark.parametrize(
    ("name", "used"),
    [(name, used) for name in PROBLEMS for used in range(3 if name.startswith("lstm") else 2)],
)
def test_gradients_when_the_loss_uses_one_output(name, used):
    # The other outputs' gradients (out, h_T, c_T) reach the (C++) autograd node undefined:
    # they count as 0.
    kernel, reference, args, diff = PROBLEMS[name](3, 5, 4, False)
    weights = torch.randn_like(reference(*args)[used])
    grads = []
    for fn in (kernel, reference):
        leaves = _leaves(args, diff)
        loss = (fn(*leaves)[used] * weights).sum()
        grads.append(torch.autograd.grad(loss, [leaves[i] for i in diff]))
    for g, w in zip(*grads, strict=True):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("name", PROBLEMS)
def test_kernels_refuse_a_differentiable_backward(name):
    kernel, _, args, diff = PROBLEMS[name](2, 3, 4, False)
    leaves = _leaves(args, diff)
    out = kernel(*leaves)[0]
    with pytest.raises(RuntimeError, match="backward pass is not differentiable"):
        torch.autograd.grad(out.sum(), leaves[0], create_graph=True)
