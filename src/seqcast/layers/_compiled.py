"""Whole recurrences in compiled C++ for the CPU, forward and backward (`csrc/`: the LSTM in
`lstm.cpp` and `lstm_stack.cpp`, the GRU in `gru.cpp`, SimpleRNN and LN-SimpleRNN in
`simple_rnn.cpp`, and `scan.cpp` for MinGRU/MinLSTM's log-space scan: `min_rnn_scan`).

The recurrent layers that `torch.nn.LSTM/GRU/RNN` cannot compute (peephole LSTM, layer-normalised
SimpleRNN, GRU with reset_after=False, recurrent dropout, ...) would otherwise run a Python loop
with several ATen calls per time step. Here the time loop, the per-step matrix product and the
elementwise gate math all run in C++, and each backward pass is written by hand: one matrix
product per step for dL/dh_{t-1}, and dL/dW_hh as one matrix product over all steps afterwards.
Consecutive LSTM layers can run as one call (`lstm_stack`, which `Sequential` uses), whose
layers overlap their time steps on several threads.

The extension is built on first use with `torch.utils.cpp_extension.load` (a C++ compiler and
ninja are needed; the build is cached in torch's extension directory) and registers its ops
under `torch.ops.seqcast_rnn`. A build that really compiles (not a cache hit) says so on stderr
while it runs, and how long it took. `available()` says whether the extension can be used; it
never raises. Set SEQCAST_NO_COMPILE=1 to turn it off.

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
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqcast.errors import check_choice

__all__ = [
    "available",
    "lstm_sequence",
    "lstm_layer",
    "lstm_stack",
    "stack_threads",
    "wavefront_stats",
    "using_stack_threads",
    "gru_sequence",
    "simple_rnn_sequence",
    "ln_simple_rnn_sequence",
    "min_rnn_scan",
    "ACTIVATIONS",
    "SCAN_KINDS",
]

_log = logging.getLogger(__name__)

# One translation unit per file, listed slowest to compile first: torch's `load` has ninja
# compile them in parallel (its default: a job per core plus two; MAX_JOBS overrides), and
# ninja starts equal jobs in this order, so the first build, which the user waits for, ends
# about when the total compile time divided by the cores has passed. register.cpp defines the
# seqcast_rnn library, autograd.cpp the autograd node of every recurrence op pair.
_CSRC = Path(__file__).parent / "csrc"
_SOURCES = [
    _CSRC / name
    for name in (
        "autograd.cpp",
        "scan.cpp",
        "simple_rnn.cpp",
        "register.cpp",
        "gru.cpp",
        "lstm_stack.cpp",
        "lstm.cpp",
        "plumbing.cpp",
    )
]
# Every header the sources include (see _headers_digest_flag): all of csrc/*.h, so a new header
# needs no entry here.
_HEADERS = sorted(_CSRC.glob("*.h"))
_EXTENSION = "seqcast_recurrences"
# No -march=native: a cached build may be reused on another CPU. The kernels pick their
# instruction set at load time (target_clones). -fno-trapping-math lets branch-free clamps
# vectorise. With OpenMP (torch's own libgomp on Linux) large steps use torch's intra-op
# threads; without it (-fopenmp-simd keeps the `#pragma omp simd` loops) they run on one.
_FLAGS_WITH_OPENMP = (["-O3", "-fno-trapping-math", "-fopenmp"], ["-fopenmp"])
_FLAGS_WITHOUT_OPENMP = (["-O3", "-fno-trapping-math", "-fopenmp-simd"], [])
# A whole build's CPU seconds and its longest file's (autograd.cpp), measured on a 2-core
# x86-64 VM, for the notice's estimate of the wall time.
_BUILD_CPU_SECONDS = 48.0
_LONGEST_FILE_SECONDS = 12.0
# Written into the build directory after a successful load: the digest of what went into it.
_STAMP = "seqcast-build.sha1"

# Activation names of the SimpleRNN kernels -> their codes (csrc/cell_math.h).
ACTIVATIONS = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3}

_lock = threading.Lock()
_built: bool | None = None  # None: not tried yet
_stack_threads: int | None = None  # threads of `lstm_stack`'s wavefront; None: usable cores


def _build() -> bool:
    attempts = [_FLAGS_WITHOUT_OPENMP]
    if sys.platform.startswith("linux"):
        attempts.insert(0, _FLAGS_WITH_OPENMP)
    notice = _BuildNotice()
    for cflags, ldflags in attempts:
        try:
            from torch.utils import cpp_extension  # imports setuptools: inside the try

            flags = [*cflags, *_gcc_memory_flags(cpp_extension), _headers_digest_flag()]
            stamp = _stamp_path(cpp_extension)
            digest = _inputs_digest(flags, ldflags)
            if not _is_cached(stamp, digest):
                notice.start()
            cpp_extension.load(
                name=_EXTENSION,
                sources=[str(path) for path in _SOURCES],
                extra_cflags=flags,
                extra_ldflags=ldflags,
                is_python_module=False,
                verbose=False,
            )
            ops = torch.ops.seqcast_rnn
            if hasattr(ops, "lstm_layer_forward") and hasattr(ops, "min_rnn_scan_forward"):
                _write_stamp(stamp, digest)
                notice.done()
                return True
            return False
        except Exception as exc:  # no compiler, no ninja, a failed build: fall back, never raise
            failure = exc
            _log.debug("seqcast: building %s with %s failed", _SOURCES, cflags, exc_info=True)
    _log.warning(
        "seqcast: compiled recurrences unavailable, using the Python loop instead: %s",
        _failure_reason(failure),
    )
    return False


def _headers_digest_flag() -> str:
    """A define carrying a hash of the headers and of torch's version: torch rebuilds a cached
    extension when its sources or flags change, and it hashes the listed sources only, not what
    they include (its own headers neither)."""
    digest = hashlib.sha1(torch.__version__.encode())
    for path in _HEADERS:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"-DSEQCAST_HEADERS_SHA1={digest.hexdigest()[:16]}"


def _gcc_memory_flags(cpp_extension) -> list[str]:
    """Fewer garbage collections inside GCC: it collects whenever its heap has grown past a
    floor (128 MB where memory is plentiful), over and over while it parses torch's headers.
    A 1 GB floor takes a tenth off the build's CPU time (measured: 47 -> 43 s on x86-64) for
    about 300 MB more per compile, so only where memory holds the parallel compiles that way
    (2 GB each) and the compiler is GCC (the object code is the same either way)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        jobs = min((os.cpu_count() or 1) + 2, len(_SOURCES))  # ninja's default, at most
        if memory < jobs * (2 << 30):
            return []
        version = subprocess.run(
            [cpp_extension.get_cxx_compiler(), "--version"], capture_output=True, text=True,
            timeout=10,
        ).stdout  # fmt: skip
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    if "Free Software Foundation" not in version:  # clang and others: no such parameters
        return []
    return ["--param=ggc-min-expand=100", "--param=ggc-min-heapsize=1048576"]


# -- the build notice ---------------------------------------------------------------------------
#
# A cold build takes tens of seconds inside the first model that uses a recurrent layer, which
# would otherwise look like a hang. Whether `load` will compile is known beforehand from a stamp
# the last successful load left in the build directory: the digest of its sources, headers,
# flags and torch's version (what decides torch's and ninja's rebuilds). No stamp, another
# digest or no library: a compile, announced before it starts.


class _BuildNotice:
    """Says once that the kernels are compiling, and then how long it took."""

    def __init__(self) -> None:
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()
            _notify(
                "seqcast: compiling the C++ recurrence kernels "
                f"(first use only, about {_expected_build_seconds()} s)..."
            )

    def done(self) -> None:
        if self.started is not None:
            seconds = time.monotonic() - self.started
            _notify(f"seqcast: C++ recurrence kernels built in {seconds:.1f} s")


def _notify(message: str) -> None:
    """A one-time notice: to the log where the application has set up logging (its levels
    decide), else straight to stderr, since an INFO record without a handler goes nowhere and
    the CLI sets up none."""
    if _log.hasHandlers():
        _log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def _expected_build_seconds() -> int:
    """The build's wall time on this machine's cores, to the next 5 s."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = max(1, len(usable) if usable else os.cpu_count() or 1)
    seconds = max(_BUILD_CPU_SECONDS / cores, _LONGEST_FILE_SECONDS)
    return 5 * -(-int(seconds) // 5)


def _inputs_digest(cflags: list[str], ldflags: list[str]) -> str:
    digest = hashlib.sha1(f"{torch.__version__}|{sys.version}|{cflags}|{ldflags}".encode())
    for path in _SOURCES:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()  # the headers are in cflags, through their digest


def _stamp_path(cpp_extension) -> Path | None:
    """The stamp's place in torch's build directory for the extension (None: unknown)."""
    try:
        return Path(cpp_extension._get_build_directory(_EXTENSION, verbose=False)) / _STAMP
    except Exception:  # a private function of torch's: without it, every build is announced
        return None


def _is_cached(stamp: Path | None, digest: str) -> bool:
    if stamp is None or not (stamp.parent / f"{_EXTENSION}.so").exists():
        return False
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


def _write_stamp(stamp: Path | None, digest: str) -> None:
    if stamp is None:
        return
    try:
        partial = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        partial.write_text(digest + "\n")
        partial.replace(stamp)  # atomic: a concurrent reader sees the old stamp or this one
    except OSError:  # a read-only cache: the next build is announced again, nothing worse
        _log.debug("seqcast: could not write %s", stamp, exc_info=True)


def _failure_reason(exc: Exception) -> str:
    """The telling line of a build failure: the compiler's first error, else the last line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines[1:]:
        if any(word in line for word in ("error", "not found", "No such file")):
            return line
    return lines[-1] if lines else type(exc).__name__


def available(device: torch.device | str | None = None) -> bool:
    """Whether the compiled kernels can run (on `device`, when given): False when
    SEQCAST_NO_COMPILE=1, when the extension cannot be built, or for a non-CPU device.

    The first call builds (or loads the cached build of) the extension; never raises.
    """
    if os.environ.get("SEQCAST_NO_COMPILE", "") not in ("", "0"):
        return False
    if device is not None and str(device).split(":")[0] != "cpu":
        return False
    global _built
    if _built is None:
        with _lock:
            if _built is None:
                _built = _build()
    return _built


def _ops():
    if not available():
        raise RuntimeError(
            "seqcast's compiled recurrences are not available (see the log, or "
            "SEQCAST_NO_COMPILE); check `_compiled.available()` before calling them"
        )
    return torch.ops.seqcast_rnn


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
        out, h_n, c_n, *_ = _ops().lstm_layer_forward(*(_c(t) for t in args))
        return out, h_n, c_n
    # one autograd node written in C++ (autograd.cpp)
    return _ops().lstm_layer(
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
    runs, misses, skipped, openmp = _ops().wavefront_stats(reset)
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
        return _ops().lstm_stack_forward(xs, w_ih, w_hh, bias, peep, workers)[0]
    # one autograd node written in C++ (autograd.cpp): no Python runs in its backward pass
    return _ops().lstm_stack(xs, w_ih, w_hh, bias, peep, workers)


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
    return _ops().gru_sequence(
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
    return _ops().simple_rnn_sequence(
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
    return _ops().ln_simple_rnn_sequence(
        xproj.contiguous(), w_hh.contiguous(), h0.contiguous(), gamma.contiguous(),
        beta.contiguous(), float(eps), code, _c(rmask),
    )  # fmt: skip


# -- MinGRU / MinLSTM log-space scan ------------------------------------------------------------

# Layer kinds of the scan kernels -> the codes of scan.cpp.
SCAN_KINDS = {"min_gru": 0, "min_lstm": 1}


class _MinRNNScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, h0, kind, chunks):
        out = _ops().min_rnn_scan_forward(x, weight, bias, h0, kind, chunks)
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
        return _ops().min_rnn_scan_forward(*(_c(t) for t in args), code, int(chunks))
    return _MinRNNScan.apply(*(_c(t) for t in args), code, int(chunks))
