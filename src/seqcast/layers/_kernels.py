"""The Python side of each compiled recurrence (`_compiled` builds and loads the extension and
re-exports these functions; import them from there): the LSTM (`lstm_layer`, `lstm_stack`,
`lstm_sequence`), the GRU, SimpleRNN and LN-SimpleRNN, and MinGRU/MinLSTM's log-space scan
(`min_rnn_scan`). Each checks its arguments' choices, makes them contiguous and calls the op
pair of its cell, through one autograd node (written in C++, `csrc/autograd.cpp`, except the
scan's) or, where nothing needs a gradient, the forward op alone.

Shapes (batch-first; H = units, G = gates: LSTM 4, GRU 3, SimpleRNN 1):

    xproj (B, T, G*H)  input projection of every step, input bias included (x @ W_ih^T + b)
    w_hh  (G*H, H)     recurrent weights in torch's layout: the product is hm @ w_hh^T
    h0, c0 (B, H)      initial states
    rmask (B, H)       recurrent-dropout mask or None; hm = h * rmask feeds the recurrent
                       product, the carried state is never masked (one mask per sequence)

Every function returns (outputs (B, T, H), final states ...), differentiable with respect to
every tensor argument except `rmask` (once: no double backward). float32 and float64, CPU
tensors only. Float32 uses vectorised approximations of exp/tanh (a few ulp) and runs with
denormals flushed to zero; float64 uses the C library, for reference-grade gradients. Large
steps use torch's intra-op threads, and the whole-sequence buffers of 8 MB and more are kept
for reuse between calls (up to 512 MB, handed back to the system under memory pressure).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqcast.errors import check_choice

# `_compiled` imports this module while it loads: only its attributes at call time are used here
# (`_compiled.ops()`, which builds the extension on first use), never at import.
from seqcast.layers import _compiled

# Activation names of the SimpleRNN kernels -> their codes (csrc/cell_math.h).
ACTIVATIONS = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3}

_stack_threads: int | None = None  # threads of `lstm_stack`'s wavefront; None: usable cores


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _needs(ctx, index: int, grad: Tensor) -> Tensor | None:
    return grad if ctx.needs_input_grad[index] else None


# -- LSTM ---------------------------------------------------------------------------------------


def lstm_layer(
    xs: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    peephole: Tensor | None = None,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""A whole LSTM layer, input projection included, step-major; gate order i, f, g, o.

    .. math::
        z &= W_{ih} x_t + b + W_{hh} (h_{t-1} \odot m) \\
        i &= \sigma(z_i + p_i \odot c_{t-1}), \quad f = \sigma(z_f + p_f \odot c_{t-1}),
        \quad g = \tanh(z_g) \\
        c_t &= f \odot c_{t-1} + i \odot g, \quad
        o = \sigma(z_o + p_o \odot c_t), \quad h_t = o \odot \tanh(c_t)

    xs (T, F, B) (batch innermost: a step's elementwise pass runs over contiguous batch rows),
    w_ih (4H, F), w_hh (4H, H), bias (4H,) or None, h0 and c0 (B, H), peephole (3, H) with
    rows p_i, p_f, p_o or None (p = 0), rmask (B, H) or None. Returns out (T, H, B), h_T and
    c_T (B, H). One autograd node; its backward gives dxs, dW_ih, dW_hh, db, dh0, dc0, dp.
    """
    args = (xs, w_ih, w_hh, bias, h0, c0, peephole, rmask)
    if not torch.is_grad_enabled() or not any(
        t is not None and t.requires_grad for t in args
    ):  # inference: the op alone, without an autograd node (a third of a small call's time)
        out, h_n, c_n, *_ = _compiled.ops().lstm_layer_forward(*(_c(t) for t in args))
        return out, h_n, c_n
    # one autograd node written in C++ (autograd.cpp)
    return _compiled.ops().lstm_layer(
        xs.contiguous(), w_ih.contiguous(), w_hh.contiguous(), _c(bias), h0.contiguous(),
        c0.contiguous(), _c(peephole), _c(rmask),
    )  # fmt: skip


def stack_threads() -> int:
    """Threads for the wavefront of stacked layers (`lstm_stack`): as set by `using_stack_threads`,
    else every core this process may use (the op takes at most one per layer)."""
    if _stack_threads is not None:
        return _stack_threads
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else os.cpu_count() or 1


@contextlib.contextmanager
def using_stack_threads(threads: int | None) -> Iterator[None]:
    """Within the block, `stack_threads()` is `threads` (None: the default)."""
    global _stack_threads
    previous, _stack_threads = _stack_threads, threads
    try:
        yield
    finally:
        _stack_threads = previous


def wavefront_stats(reset: bool = False) -> dict[str, int | bool]:
    """How `lstm_stack` calls ran since the last reset: `wavefront` (on several threads),
    `no_overlap` (of those, the ones whose threads took turns on one core), `one_thread` (sent
    to one thread after such a call); `openmp`: whether this build can run a wavefront at all.
    `reset=True` zeroes the counts and lets the next call try the wavefront again."""
    runs, misses, skipped, openmp = _compiled.ops().wavefront_stats(reset)
    return {"wavefront": runs, "no_overlap": misses, "one_thread": skipped, "openmp": bool(openmp)}


def lstm_stack(
    xs: Tensor,
    layers: list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]],
    workers: int | None = None,
) -> Tensor:
    """Stacked LSTM layers from zero states, each feeding the next: xs (T, F, B) -> the top
    layer's output (T, H, B), step-major as `lstm_layer`. `layers`: (w_ih, w_hh, bias or None,
    peephole (3, H) or None) from the bottom up.

    The same arithmetic as `lstm_layer` layer after layer, as one autograd node and one C++
    call each way. With `workers` >= 2 (and the extension built with OpenMP) the layers run as
    a wavefront on that many threads: while layer l computes step t, layer l - 1 already
    computes step t + 1 (backward: layer l + 1 step t - 1), each thread waiting for the one
    below it only where it would overtake it. Same results as one thread, bit for bit.
    `workers` None: `stack_threads()`. While another process holds the cores, the threads
    would take turns on one; the op notices (too little overlap in a call) and runs the next
    calls on one thread, trying again later.
    """
    workers = int(stack_threads() if workers is None else workers)
    w_ih, w_hh, bias, peep = ([_c(layer[i]) for layer in layers] for i in range(4))
    xs = xs.contiguous()
    if not torch.is_grad_enabled() or not (
        xs.requires_grad
        or any(t is not None and t.requires_grad for t in (*w_ih, *w_hh, *bias, *peep))
    ):
        return _compiled.ops().lstm_stack_forward(xs, w_ih, w_hh, bias, peep, workers)[0]
    # one autograd node written in C++ (autograd.cpp): no Python runs in its backward pass
    return _compiled.ops().lstm_stack(xs, w_ih, w_hh, bias, peep, workers)


def lstm_sequence(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    peephole: Tensor | None = None,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """`lstm_layer` on an already projected, batch-first input: xproj (B, T, 4H) ->
    out (B, T, H), h_T, c_T. (An identity input kernel: for references and tests; the layer
    itself calls `lstm_layer`.)"""
    eye = torch.eye(xproj.shape[-1], dtype=xproj.dtype, device=xproj.device)
    out, h_n, c_n = lstm_layer(xproj.permute(1, 2, 0), eye, w_hh, None, h0, c0, peephole, rmask)
    return out.permute(2, 0, 1), h_n, c_n


# -- GRU ----------------------------------------------------------------------------------------


def gru_sequence(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    b_hh: Tensor | None = None,
    reset_after: bool = True,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""GRU over a whole sequence; gate order r, z, n (torch's). Returns (out, h_T).

    reset_after=True (Keras' default, torch's formula), with hm = h_{t-1} ⊙ m:

    .. math::
        a &= hm\, W_{hh}^T + b_{hh}, \quad r = \sigma(x_r + a_r), \quad z = \sigma(x_z + a_z),
        \quad n = \tanh(x_n + r \odot a_n) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    reset_after=False (no recurrent bias; b_hh must be None):
    r = σ(x_r + hm W_hr^T), z = σ(x_z + hm W_hz^T), n = tanh(x_n + (r ⊙ hm) W_hn^T).

    xproj (B, T, 3H) = (x_r, x_z, x_n), w_hh (3H, H), h0 (B, H), b_hh (3H,) or None (zeros),
    rmask (B, H) or None. out (B, T, H), h_T (B, H).
    """
    # one autograd node written in C++ (autograd.cpp)
    return _compiled.ops().gru_sequence(
        xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), _c(b_hh), bool(reset_after),
        _c(rmask),
    )  # fmt: skip


# -- SimpleRNN ----------------------------------------------------------------------------------


def _activation_code(activation: str) -> int:
    return ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]


def simple_rnn_sequence(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    activation: str = "tanh",
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""SimpleRNN (Elman) over a whole sequence. Returns (out, h_T).

    .. math::  h_t = \mathrm{act}(x^{proj}_t + (h_{t-1} \odot m) W_{hh}^T)

    activation: "tanh", "relu", "sigmoid" or "linear" (anything else: a ValueError).
    xproj (B, T, H), w_hh (H, H), h0 (B, H), rmask (B, H) or None. out (B, T, H), h_T (B, H).
    """
    code = _activation_code(activation)
    # one autograd node written in C++ (autograd.cpp)
    return _compiled.ops().simple_rnn_sequence(
        xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), code, _c(rmask)
    )


# -- layer-normalised SimpleRNN -----------------------------------------------------------------


def ln_simple_rnn_sequence(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    gamma: Tensor,
    beta: Tensor,
    eps: float = 1e-3,
    activation: str = "tanh",
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Layer-normalised SimpleRNN over a whole sequence (Hands-on ML's LNSimpleRNNCell: a
    SimpleRNN step with no activation, LayerNormalization, then the activation). Returns
    (out, h_T).

    .. math::
        s &= x^{proj}_t + (h_{t-1} \odot m) W_{hh}^T, \quad
        \hat s = (s - \mathrm{mean}(s)) / \sqrt{\mathrm{var}(s) + \epsilon} \\
        h_t &= \mathrm{act}(\gamma \odot \hat s + \beta)

    mean and (biased) variance over the H features of each row. xproj (B, T, H), w_hh (H, H),
    h0 (B, H), gamma and beta (H,), rmask (B, H) or None. out (B, T, H), h_T (B, H).
    """
    code = _activation_code(activation)
    # one autograd node written in C++ (autograd.cpp)
    return _compiled.ops().ln_simple_rnn_sequence(
        xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), gamma.contiguous(),
        beta.contiguous(), float(eps), code, _c(rmask),
    )  # fmt: skip


# -- MinGRU / MinLSTM log-space scan ------------------------------------------------------------

# Layer kinds of the scan kernels -> their codes (Kind in csrc/scan_math.h).
SCAN_KINDS = {"min_gru": 0, "min_lstm": 1}


class _MinRNNScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, h0, kind, chunks):
        out = _compiled.ops().min_rnn_scan_forward(x, weight, bias, h0, kind, chunks)
        ctx.kind, ctx.chunks = kind, chunks
        ctx.save_for_backward(x, weight, bias, h0, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, weight, bias, h0, out = ctx.saved_tensors
        dx, dw, db, dh0 = torch.ops.seqcast_rnn.min_rnn_scan_backward(
            dout.contiguous(), x, weight, bias, h0, out, ctx.kind, ctx.chunks,
            ctx.needs_input_grad[0],
        )  # fmt: skip
        grads = (dx, dw, db, dh0 if h0 is not None else None)
        return (*(_needs(ctx, i, g) for i, g in enumerate(grads)), None, None)


def min_rnn_scan(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    h0: Tensor | None = None,
    kind: str = "min_gru",
    chunks: int = 0,
) -> Tensor:
    r"""MinGRU or MinLSTM (`seqcast.layers.scan`) over a whole sequence, input projection
    included: h_1..h_T, (B, T, H), of h_t = a_t ⊙ h_{t-1} + b_t, run as a log-space scan.

    x (B, T, F), weight (G*H, F) and bias (G*H,) the layer's (G = 2 for "min_gru", 3 for
    "min_lstm"), h0 (B, H) or None (zeros; any real values). `chunks`: time chunks of the
    parallel scan (0: one per intra-op thread on long sequences, else 1; the result does not
    depend on it beyond rounding). One autograd node; its backward gives dx, dweight, dbias and
    dh0, computed analytically (once differentiable).
    """
    code = SCAN_KINDS[check_choice("kind", kind, SCAN_KINDS)]
    args = (x, weight, bias, h0)
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in args):
        return _compiled.ops().min_rnn_scan_forward(*(_c(t) for t in args), code, int(chunks))
    return _MinRNNScan.apply(*(_c(t) for t in args), code, int(chunks))
