"""Reference recurrences: one plain Python loop per time step, written directly from the
equations, torch ops only (so autograd gives reference gradients). Meant for float64.

Shapes are batch-first. H = units. Unless a function says otherwise:

    xproj (B, T, G*H)  input projection of every step, input bias included (x @ W_ih^T + b)
    w_hh  (G*H, H)     recurrent weights in torch's layout: the product is hm @ w_hh^T
    h0, c0 (B, H)      initial states
    rmask (B, H)       recurrent-dropout mask or None: hm = h_{t-1} * rmask feeds the recurrent
                       product; the carried state is never masked

Every function returns (outputs (B, T, H), final states ...). Gate orders are torch's:
LSTM i, f, g, o; GRU r, z, n.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "lstm_reference",
    "gru_reference",
    "simple_rnn_reference",
    "ln_simple_rnn_reference",
    "ln_lstm_reference",
    "ln_gru_reference",
    "layer_norm",
    "ACTIVATIONS",
]

ACTIVATIONS = {
    "linear": lambda v: v,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}


def _masked(h: Tensor, rmask: Tensor | None) -> Tensor:
    return h if rmask is None else h * rmask


def layer_norm(s: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-3) -> Tensor:
    """LN(s) = gamma * (s - mean(s)) / sqrt(var(s) + eps) + beta over the last axis (biased
    variance), written out rather than calling F.layer_norm."""
    mean = s.mean(dim=-1, keepdim=True)
    var = ((s - mean) ** 2).mean(dim=-1, keepdim=True)
    return gamma * (s - mean) / torch.sqrt(var + eps) + beta


def lstm_reference(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    peephole: Tensor | None = None,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM, optional peepholes (3, H) with rows p_i, p_f, p_o (None: p = 0).

        z   = xproj_t + (h_{t-1} * m) W_hh^T            split into z_i, z_f, z_g, z_o
        i   = σ(z_i + p_i * c_{t-1})
        f   = σ(z_f + p_f * c_{t-1})
        g   = tanh(z_g)
        c_t = f * c_{t-1} + i * g
        o   = σ(z_o + p_o * c_t)
        h_t = o * tanh(c_t)

    Returns (out (B, T, H), h_T, c_T).
    """
    h, c, outs = h0, c0, []
    for x_t in xproj.unbind(dim=1):  # (B, G*H) per step; unbind's backward is one stack
        z = x_t + _masked(h, rmask) @ w_hh.T
        zi, zf, zg, zo = z.chunk(4, dim=-1)
        if peephole is not None:
            zi = zi + peephole[0] * c
            zf = zf + peephole[1] * c
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        if peephole is not None:
            zo = zo + peephole[2] * c
        h = torch.sigmoid(zo) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def gru_reference(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    b_hh: Tensor | None = None,
    reset_after: bool = True,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """GRU; xproj_t = (x_r, x_z, x_n), hm = h_{t-1} * m.

    reset_after=True (Keras' default, torch's formula; b_hh (3H,) or None = zeros):
        a   = hm W_hh^T + b_hh                            split into a_r, a_z, a_n
        r   = σ(x_r + a_r),  z = σ(x_z + a_z)
        n   = tanh(x_n + r * a_n)
    reset_after=False (no recurrent bias; W_hh rows split into W_hr, W_hz, W_hn):
        r   = σ(x_r + hm W_hr^T),  z = σ(x_z + hm W_hz^T)
        n   = tanh(x_n + (r * hm) W_hn^T)
    both:
        h_t = (1 - z) * n + z * h_{t-1}

    Returns (out (B, T, H), h_T).
    """
    h, outs = h0, []
    w_r, w_z, w_n = w_hh.chunk(3, dim=0)
    for x_t in xproj.unbind(dim=1):
        xr, xz, xn = x_t.chunk(3, dim=-1)
        hm = _masked(h, rmask)
        if reset_after:
            a = hm @ w_hh.T
            if b_hh is not None:
                a = a + b_hh
            ar, az, an = a.chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + ar), torch.sigmoid(xz + az)
            n = torch.tanh(xn + r * an)
        else:
            r = torch.sigmoid(xr + hm @ w_r.T)
            z = torch.sigmoid(xz + hm @ w_z.T)
            n = torch.tanh(xn + (r * hm) @ w_n.T)
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, dim=1), h


def simple_rnn_reference(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    activation: str = "tanh",
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """SimpleRNN (Elman):

        h_t = act(xproj_t + (h_{t-1} * m) W_hh^T),   act in tanh, relu, sigmoid, linear

    Returns (out (B, T, H), h_T).
    """
    act, h, outs = ACTIVATIONS[activation], h0, []
    for x_t in xproj.unbind(dim=1):
        h = act(x_t + _masked(h, rmask) @ w_hh.T)
        outs.append(h)
    return torch.stack(outs, dim=1), h


def ln_simple_rnn_reference(
    xproj: Tensor,
    w_hh: Tensor,
    h0: Tensor,
    gamma: Tensor,
    beta: Tensor,
    eps: float = 1e-3,
    activation: str = "tanh",
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Layer-normalised SimpleRNN (Hands-on ML's LNSimpleRNNCell):

        s   = xproj_t + (h_{t-1} * m) W_hh^T
        ŝ   = (s - mean(s)) / sqrt(var(s) + eps)          mean, biased var over the H features
        h_t = act(gamma * ŝ + beta)

    Returns (out (B, T, H), h_T).
    """
    act, h, outs = ACTIVATIONS[activation], h0, []
    for x_t in xproj.unbind(dim=1):
        s = x_t + _masked(h, rmask) @ w_hh.T
        h = act(layer_norm(s, gamma, beta, eps))
        outs.append(h)
    return torch.stack(outs, dim=1), h


def ln_lstm_reference(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    gamma_x: Tensor,
    beta_x: Tensor,
    gamma_h: Tensor,
    beta_h: Tensor,
    gamma_c: Tensor,
    beta_c: Tensor,
    eps: float = 1e-3,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Layer-normalised LSTM (TensorFlow Addons' LayerNormLSTMCell). Takes the raw input
    x (B, T, F) and w_ih (4H, F), because the input projection is normalised before the bias.

        z   = LN_x(x_t W_ih^T) + LN_h((h_{t-1} * m) W_hh^T) + b   LN_x, LN_h over all 4H features
        i   = σ(z_i),  f = σ(z_f),  g = tanh(z_g),  o = σ(z_o)
        c_t = LN_c(f * c_{t-1} + i * g)                            LN_c over the H features
        h_t = o * tanh(c_t)

    The normalised cell state is the one carried to the next step. Each LN has its own gain
    and shift (gamma_*, beta_*: (4H,) for x and h, (H,) for c); bias (4H,) or None.
    Returns (out (B, T, H), h_T, c_T).
    """
    h, c, outs = h0, c0, []
    for x_t in x.unbind(dim=1):
        z = layer_norm(x_t @ w_ih.T, gamma_x, beta_x, eps)
        z = z + layer_norm(_masked(h, rmask) @ w_hh.T, gamma_h, beta_h, eps)
        if bias is not None:
            z = z + bias
        zi, zf, zg, zo = z.chunk(4, dim=-1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        c = layer_norm(c, gamma_c, beta_c, eps)
        h = torch.sigmoid(zo) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def ln_gru_reference(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor | None,
    h0: Tensor,
    gamma_x: Tensor,
    beta_x: Tensor,
    gamma_h: Tensor,
    beta_h: Tensor,
    eps: float = 1e-3,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Layer-normalised GRU (reset_after form). Takes the raw input x (B, T, F) and
    w_ih (3H, F); the recurrent norm's shift beta_h plays the part of b_hh.

        (x_r, x_z, x_n) = LN_x(x_t W_ih^T) + b                    LN over all 3H features
        (a_r, a_z, a_n) = LN_h((h_{t-1} * m) W_hh^T)               LN over all 3H features
        r   = σ(x_r + a_r),  z = σ(x_z + a_z)
        n   = tanh(x_n + r * a_n)
        h_t = (1 - z) * n + z * h_{t-1}

    gamma_*, beta_*: (3H,); bias (3H,) or None. Returns (out (B, T, H), h_T).
    """
    h, outs = h0, []
    for x_t in x.unbind(dim=1):
        xz = layer_norm(x_t @ w_ih.T, gamma_x, beta_x, eps)
        if bias is not None:
            xz = xz + bias
        xr, xu, xn = xz.chunk(3, dim=-1)
        ar, au, an = layer_norm(_masked(h, rmask) @ w_hh.T, gamma_h, beta_h, eps).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + ar), torch.sigmoid(xu + au)
        h = (1 - z) * torch.tanh(xn + r * an) + z * h
        outs.append(h)
    return torch.stack(outs, dim=1), h
