r"""MinGRU and MinLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrent layers whose
gates read only the input, so a whole sequence runs as a log-space parallel scan.

Both are linear recurrences h_t = a_t ⊙ h_{t-1} + b_t whose a_t, b_t depend on x_t alone:

    minGRU:   z_t = σ(W_z x_t + b_z),   h̃_t = g(W_h x_t + b_h)
              h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    minLSTM:  f_t = σ(W_f x_t + b_f),   i_t = σ(W_i x_t + b_i),   h̃_t = g(W_h x_t + b_h)
              f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
              h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

with g(x) = x + 0.5 for x >= 0 and σ(x) otherwise (positive, so log h̃_t exists).

How a sequence is run (`implementation`):
- "scan" (default): a log-space scan. With u_t = log(b_t / a_t) = k_t + log g(h̃_t) (k_t the
  gate's pre-activation; for minLSTM log(i_t / f_t)),

      log h_t = log a_t + logaddexp(log h_{t-1}, u_t),   log h_0 = -inf (h_0 = 0),

  and an initial state is added outside the log: h_t += (a_1 ... a_t) h_0, exact for any real
  h_0 (zero included, where log h_0 would be -inf with an infinite gradient).
  * CPU, float32/float64 (`_compiled.available()`): one compiled op per direction
    (csrc/scan.cpp) with the input projection fused in, so no (B, T, gates*H) tensor is made.
    The recurrence above runs over the batch*units lanes; with several intra-op threads a long
    sequence is cut into time chunks run from h = 0 in parallel, each then given the state
    before it the same way as h_0 (the parallel scan). The backward is written by hand (the
    adjoint h_{t-1} <- a_t), recomputing the gates; memory is linear in T. Float32 computes in
    float32 with vectorised exp/log (a few ulp; the recurrence contracts, so rounding does not
    grow: ~5e-7 relative at T = 4096), float64 in float64 with the C library.
  * elsewhere (other devices or dtypes, no compiler, SEQCAST_NO_COMPILE=1): Heinsen's (2023)
    form in torch ops, with a*_t = Σ_{s<=t} log a_s (a cumsum),

      h_t = exp(a*_t + logcumsumexp_t(log b - a*)) + exp(a*_t) ⊙ h_0.

    log h_t is a*_t plus a term of about the same size, so their sum loses eps * |a*_t| -- in
    float32, ~1e-3 relative after 16,384 steps of z = 0.5 gates. This form therefore runs in
    float64 whatever the input dtype (its result cast back).
  On a CPU both still do T steps of work per lane (chunks only spread them over threads):
  see benchmarks/long.py for what that costs against a sequential GRU.
- "sequential": h_t = a_t ⊙ h_{t-1} + b_t in a Python loop (the input projection of all steps in
  one matmul before it). The same numbers; what tests and benchmarks compare the scan against.

`step(x_t, h)` is one step of the recurrence in constant memory, for inference one step at a
time: running it over x[:, 0], x[:, 1], ... gives the same states as `forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqcast.errors import SeqcastError, check_choice, check_input_3d, check_positive_int
from seqcast.layers import _compiled
from seqcast.layers.base import Layer, Shape, mask_of

__all__ = ["MinGRU", "MinLSTM", "IMPLEMENTATIONS", "g", "log_g", "log_space_scan"]

IMPLEMENTATIONS = ("scan", "sequential")


# -- the math ---------------------------------------------------------------------------------
def _softplus(x: Tensor) -> Tensor:
    """log(1 + e^x); torch's default switches to x above 20, dropping e^-20 ~ 2e-9 (float64)."""
    return F.softplus(x, threshold=40.0)


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: x + 0.5 for x >= 0, sigmoid(x) below (continuous)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x) in a stable form: log(x + 0.5) for x >= 0, -softplus(-x) below."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -_softplus(-x))


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All h_t of h_t = a_t ⊙ h_{t-1} + b_t (h_0 = `h0`, or 0), from log a and log b.

    `log_a`, `log_b`: (B, T, H); `h0`: (B, H) or None. Returns h_1..h_T, (B, T, H), in the
    inputs' dtype; the scan itself runs in float64 (see the module docstring: in float32 the
    cancellation between a*_t and the logcumsumexp term costs ~1e-3 relative at T = 16384).
    """
    dtype = log_a.dtype
    acc = dtype if log_a.device.type == "mps" else torch.float64  # MPS has no float64
    log_a, log_b = log_a.to(acc), log_b.to(acc)
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, H): log Π_{s<=t} a_s
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.to(acc).unsqueeze(1)
    return h.to(dtype)


# -- the layers -------------------------------------------------------------------------------
class _MinRNN(Layer, abstract=True):
    """Shared plumbing: `gates` input projections F -> H in one matrix, the scan and the loop.

    Subclasses define `gates` and turn the projected inputs z = x W^T + b (…, gates*H) into the
    recurrence's coefficients: `_coefficients(z) -> (a, b)` and, in stable log form,
    `_log_coefficients(z) -> (log a, log b)`.
    """

    is_recurrent = True
    gates: ClassVar[int] = 1
    _kind: ClassVar[str]  # the compiled kernel's name for the layer (_compiled.SCAN_KINDS)

    def __init__(
        self,
        units: int,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        implementation: str = "scan",
    ) -> None:
        super().__init__()
        self.units = check_positive_int("units", units)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.implementation = implementation

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        self._implementation = check_choice("implementation", value, IMPLEMENTATIONS)

    @property
    def state_size(self) -> int:
        return self.units

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape: Shape) -> None:
        check_input_3d(input_shape, layer=self._label())
        features = input_shape[-1]
        if features is None:
            raise SeqcastError(
                f"{self._label()}: the number of input features (last axis) must be known to "
                f"build, got input shape {tuple(input_shape)}"
            )
        self.weight = nn.Parameter(torch.empty(self.gates * self.units, features))
        self.bias = nn.Parameter(torch.zeros(self.gates * self.units))
        super().build(input_shape)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform kernel per projection (as for separate Dense layers), zero bias."""
        for block in self.weight.data.split(self.units, dim=0):
            nn.init.xavier_uniform_(block)
        nn.init.zeros_(self.bias)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        batch, time = input_shape[0], input_shape[1]
        return (batch, time, self.units) if self.return_sequences else (batch, self.units)

    # -- running --------------------------------------------------------------------------------
    def project(self, x: Tensor) -> Tensor:
        """(..., F) -> (..., gates*H): every input projection, bias included, in one matmul."""
        return F.linear(x, self.weight, self.bias)

    @property
    def causal(self) -> bool:
        return self.return_sequences and not self.go_backwards

    def forward(
        self,
        x: Tensor,
        initial_state: Tensor | Sequence[Tensor] | None = None,
        mask: Tensor | None = None,
    ) -> Any:
        check_input_3d(tuple(x.shape), self.input_shape[-1], layer=self._label())
        if mask is not None or mask_of(x) is not None:
            raise SeqcastError(
                f"{self._label()} does not support masks (its scan has no step to skip); "
                "use LSTM, GRU or SimpleRNN for masked sequences, or drop the Masking layer"
            )
        if self.go_backwards:
            x = x.flip(1)
        h0 = self._initial_state(x, initial_state)
        if self.implementation == "scan" and self._use_compiled(x, h0):
            out = _compiled.min_rnn_scan(x, self.weight, self.bias, h0, self._kind)
        elif self.implementation == "scan":
            out = log_space_scan(*self._log_coefficients(self.project(x)), h0)
        else:
            out = self._sequential(self.project(x), h0)
        y = out if self.return_sequences else out[:, -1]
        return (y, out[:, -1]) if self.return_state else y

    def _use_compiled(self, x: Tensor, h0: Tensor | None) -> bool:
        """Whether the compiled scan can run this call: CPU float32/float64 tensors of one
        dtype, and the extension available (not under SEQCAST_NO_COMPILE=1)."""
        dtype = x.dtype
        tensors = (x, self.weight, self.bias) if h0 is None else (x, self.weight, self.bias, h0)
        return (
            dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors)
            and _compiled.available()
        )

    def _sequential(self, z: Tensor, h0: Tensor | None) -> Tensor:
        a, b = self._coefficients(z)  # (B, T, H) each
        h = torch.zeros_like(b[:, 0]) if h0 is None else h0
        outputs = []
        for t in range(z.shape[1]):
            h = a[:, t] * h + b[:, t]
            outputs.append(h)
        return torch.stack(outputs, dim=1)

    def step(self, x_t: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: x_t (B, F) and h_{t-1} (B, H) or None (zeros) -> h_t (B, H)."""
        if x_t.dim() != 2:
            raise SeqcastError(
                f"{self._label()}.step: expected a step input of shape (batch, features), "
                f"got {tuple(x_t.shape)}"
            )
        if not self.built:
            self.build((x_t.shape[0], None, x_t.shape[1]))
            if x_t.is_floating_point():
                self.to(device=x_t.device, dtype=x_t.dtype)
        check_input_3d((x_t.shape[0], 1, x_t.shape[1]), self.input_shape[-1], self._label())
        a, b = self._coefficients(self.project(x_t))
        if h is None:
            return b
        self._check_state(h, x_t.shape[0])
        return a * h + b

    def _initial_state(self, x: Tensor, given: Tensor | Sequence[Tensor] | None) -> Tensor | None:
        if given is None:
            return None
        if not isinstance(given, Tensor):
            given = list(given)
            if len(given) != 1:
                raise SeqcastError(
                    f"{self._label()}: expected one initial state tensor (h), got {len(given)}"
                )
            given = given[0]
        self._check_state(given, x.shape[0])
        return given

    def _check_state(self, h: Tensor, batch: int) -> None:
        if tuple(h.shape) != (batch, self.units):
            raise SeqcastError(
                f"{self._label()}: expected a state of shape {(batch, self.units)}, "
                f"got {tuple(h.shape)}"
            )

    def _coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _log_coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    # -- introspection --------------------------------------------------------------------------
    def _label(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        flags = ("return_sequences", "return_state", "go_backwards")
        parts = [f"units={self.units}", *(f"{f}=True" for f in flags if getattr(self, f))]
        if self.implementation != "scan":
            parts.append(f"implementation={self.implementation!r}")
        return ", ".join(parts)

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "implementation": self.implementation,
        }


class MinGRU(_MinRNN):
    r"""minGRU (Feng et al. 2024): a GRU whose gates see only the input, (B, T, F) -> (B, H).

    .. math::
        z_t = \sigma(W_z x_t + b_z), \quad \tilde h_t = g(W_h x_t + b_h), \quad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    g(x) = x + 0.5 (x >= 0), σ(x) (x < 0); h_0 = 0 or `initial_state`. The scan runs on
    log(1 - z_t) = -softplus(k_t), log z_t = -softplus(-k_t) and log g (k_t = W_z x_t + b_z).

    =================  =====================================================
    input              (B, T, F)
    initial_state      (B, H), or a one-element list of it
    output             (B, H); (B, T, H) with `return_sequences`
    with return_state  (output, h_T)
    =================  =====================================================

    Parameters: `weight` (2H, F) = [W_z; W_h] and `bias` (2H,) = [b_z; b_h]: the two input
    projections, 2(F*H + H) in all (MinGRU(20) on 1 feature: 80). No recurrent kernel.

    Equivalent loop (implementation="sequential")::

        h = h0
        for t in range(T):
            z = sigmoid(x[:, t] @ W_z.T + b_z)
            h = (1 - z) * h + z * g(x[:, t] @ W_h.T + b_h)
    """

    gates = 2
    _kind = "min_gru"

    def _coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        k, h_tilde = z.chunk(2, dim=-1)
        gate = torch.sigmoid(k)
        return 1 - gate, gate * g(h_tilde)

    def _log_coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        k, h_tilde = z.chunk(2, dim=-1)
        return -_softplus(k), -_softplus(-k) + log_g(h_tilde)


class MinLSTM(_MinRNN):
    r"""minLSTM (Feng et al. 2024): an LSTM with input-only, normalised gates and no cell state.

    .. math::
        f_t = \sigma(W_f x_t + b_f), \quad i_t = \sigma(W_i x_t + b_i), \quad
        \tilde h_t = g(W_h x_t + b_h) \\
        f'_t = \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \quad
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    g as in MinGRU; h_0 = 0 or `initial_state`. The scan uses d_t = softplus(-k_f) -
    softplus(-k_i) = log(i_t / f_t): log f'_t = -softplus(d_t), log i'_t = -softplus(-d_t).

    Shapes as MinGRU; `return_state` gives (output, h_T) (there is no c).

    Parameters: `weight` (3H, F) = [W_f; W_i; W_h] and `bias` (3H,) = [b_f; b_i; b_h]: the
    three input projections, 3(F*H + H) in all (MinLSTM(20) on 1 feature: 120).

    Equivalent loop (implementation="sequential")::

        h = h0
        for t in range(T):
            f, i = sigmoid(x[:, t] @ W_f.T + b_f), sigmoid(x[:, t] @ W_i.T + b_i)
            h = f / (f + i) * h + i / (f + i) * g(x[:, t] @ W_h.T + b_h)
    """

    gates = 3
    _kind = "min_lstm"

    def _coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, h_tilde = z.chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(h_tilde)

    def _log_coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, h_tilde = z.chunk(3, dim=-1)
        d = _softplus(-k_f) - _softplus(-k_i)  # log(i / f)
        return -_softplus(d), -_softplus(-d) + log_g(h_tilde)
