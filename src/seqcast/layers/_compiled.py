"""Whole recurrences in compiled C++ for the CPU, forward and backward (`csrc/`: the LSTM in
`lstm.cpp` and `lstm_stack.cpp`, the GRU in `gru.cpp`, SimpleRNN and LN-SimpleRNN in
`simple_rnn.cpp`, and `scan*.cpp` for MinGRU/MinLSTM's log-space scan: `min_rnn_scan`).

The recurrent layers that `torch.nn.LSTM/GRU/RNN` cannot compute (peephole LSTM, layer-normalised
SimpleRNN, GRU with reset_after=False, recurrent dropout, ...) would otherwise run a Python loop
with several ATen calls per time step. Here the time loop, the per-step matrix product and the
elementwise gate math all run in C++, and each backward pass is written by hand: one matrix
product per step for dL/dh_{t-1}, and dL/dW_hh as one matrix product over all steps afterwards.
Consecutive LSTM layers can run as one call (`lstm_stack`, which `Sequential` uses), whose
layers overlap their time steps on several threads.

This module builds and loads the extension; the function of each recurrence (`lstm_layer`,
`gru_sequence`, `min_rnn_scan`, ..., their shapes and numerics) is defined in `_kernels.py` and
imported from here.

The extension is built on first use with `torch.utils.cpp_extension.load` (a C++ compiler and
ninja are needed; the build is cached in torch's extension directory) and registers its ops
under `torch.ops.seqcast_rnn`. A build that really compiles (not a cache hit) says so on stderr
while it runs, and how long it took. `available()` says whether the extension can be used; it
never raises. Set SEQCAST_NO_COMPILE=1 to turn it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from seqcast.layers._kernels import (
    ACTIVATIONS,
    SCAN_KINDS,
    gru_sequence,
    ln_simple_rnn_sequence,
    lstm_layer,
    lstm_sequence,
    lstm_stack,
    min_rnn_scan,
    simple_rnn_sequence,
    stack_threads,
    using_stack_threads,
    wavefront_stats,
)

__all__ = [
    "available",
    "ops",
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
        "simple_rnn.cpp",
        "register.cpp",
        "gru.cpp",
        "lstm_stack.cpp",
        "lstm.cpp",
        "scan_backward.cpp",
        "scan_forward.cpp",
        "plumbing.cpp",
        "scan.cpp",
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
_BUILD_CPU_SECONDS = 51.0
_LONGEST_FILE_SECONDS = 12.0
# Written into the build directory after a successful load: the digest of what went into it.
_STAMP = "seqcast-build.sha1"

_lock = threading.Lock()
_built: bool | None = None  # None: not tried yet


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


def ops():
    """The extension's ops (`torch.ops.seqcast_rnn`), built or loaded first; a RuntimeError
    where they are not available."""
    if not available():
        raise RuntimeError(
            "seqcast's compiled recurrences are not available (see the log, or "
            "SEQCAST_NO_COMPILE); check `_compiled.available()` before calling them"
        )
    return torch.ops.seqcast_rnn


def build_in_background() -> None:
    """Start building (or loading) the extension on a thread, so that a caller about to run
    recurrent layers after other work overlaps the first-use build with that work and the
    build notice shows at once; `available()` waits for it. The thread is not a daemon: the
    interpreter waits for it at exit rather than killing the compiler mid-build (which would
    leave torch's build lock behind)."""
    if _built is None and os.environ.get("SEQCAST_NO_COMPILE", "") in ("", "0"):
        threading.Thread(target=available, name="seqcast-kernel-build").start()


class CompiledFallbackWarning(UserWarning):
    """implementation="compiled" was asked for, and this call runs the step loop instead."""


def refusal(x: torch.Tensor, has_kernel: bool, plain: bool) -> str | None:
    """Why the compiled C++ kernels cannot run this call, or None when they can."""
    if not has_kernel:
        return "no compiled kernel for this cell"
    if not plain:
        return "a mask is given (the compiled kernels run whole sequences)"
    if x.device.type != "cpu":
        return f"the input is on {x.device.type} (the compiled kernels are CPU kernels)"
    if x.dtype not in (torch.float32, torch.float64):
        return f"the input is {x.dtype} (the compiled kernels take float32 or float64)"
    if not available():
        return "the C++ extension is unavailable (SEQCAST_NO_COMPILE is set or it did not build)"
    return None
