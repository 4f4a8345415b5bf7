// GRU over a whole sequence, forward and backward, on the time loop of time_loop.h.
// Gate order r, z, n; h_t = (1 - z) n + z h_{t-1} in both forms.
// reset_after=True:   a = hm W^T + b_hh; r = σ(x_r + a_r); z = σ(x_z + a_z);
//                     n = tanh(x_n + r a_n).   Saved: gates (B, T, 4H) = (r, z, n, a_n).
// reset_after=False:  r = σ(x_r + hm W_r^T); z = σ(x_z + hm W_z^T);
//                     n = tanh(x_n + (r hm) W_n^T).  Saved: gates (B, T, 3H) = (r, z, n) and
//                     rh (B, T, H) = r hm_{t-1}.

#include <ATen/Dispatch.h>

#include <tuple>

#include "cell_math.h"
#include "ops.h"
#include "time_loop.h"

namespace seqcast_rnn {
namespace {

template <typename T>
struct GruForwardStep {
  int64_t H;
  Rows<const T> x, pre, h_prev;  // xproj[:, t]; hm W^T (B, 3H) or (B, 2H); h_{t-1}
  const T* bias;                 // (3H) recurrent bias (reset_after only)
  const T* mask;                 // (B, H)
  Rows<T> gates, h, rh;          // gates[:, t], out[:, t], rh[:, t] (reset_after=False)
  T* hm;                         // (B, H): hm_{t-1} in, h_t * m out
  Rows<const T> pre_n;           // (r hm) W_n^T (B, H) (reset_after=False)
};

template <typename T>
SEQCAST_INLINE void gru_forward_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre,
                                    const T* RESTRICT bias, const T* RESTRICT hp,
                                    const T* RESTRICT m, T* RESTRICT g, T* RESTRICT h,
                                    T* RESTRICT hm) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + pre[j] + bias[j]);
    const T z = sigmoid(x[H + j] + pre[H + j] + bias[H + j]);
    const T an = pre[2 * H + j] + bias[2 * H + j];
    const T n = tanh_(x[2 * H + j] + r * an);
    const T ht = n + z * (hp[j] - n);
    g[j] = r;
    g[H + j] = z;
    g[2 * H + j] = n;
    g[3 * H + j] = an;
    h[j] = ht;
    hm[j] = ht * m[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_forward_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_forward_row<T>(H, s.x.row(b), s.pre.row(b), s.bias, s.h_prev.row(b), s.mask + b * H,
                       s.gates.row(b), s.h.row(b), s.hm + b * H);
  }
}

// reset_after=False, first half: r, z from pre = hm W_rz^T (B, 2H); rh = r * hm_{t-1}.
template <typename T>
SEQCAST_INLINE void gru_v3_gates_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre,
                                     const T* RESTRICT hm, T* RESTRICT g, T* RESTRICT rh) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + pre[j]);
    g[j] = r;
    g[H + j] = sigmoid(x[H + j] + pre[H + j]);
    rh[j] = r * hm[j];
  }
}

// reset_after=False, second half: n from pre_n = rh W_n^T (B, H), then h_t.
template <typename T>
SEQCAST_INLINE void gru_v3_state_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre_n,
                                     const T* RESTRICT hp, const T* RESTRICT m, T* RESTRICT g,
                                     T* RESTRICT h, T* RESTRICT hm) {
  for (int64_t j = 0; j < H; ++j) {
    const T n = tanh_(x[2 * H + j] + pre_n[j]);
    const T ht = n + g[H + j] * (hp[j] - n);
    g[2 * H + j] = n;
    h[j] = ht;
    hm[j] = ht * m[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_gates_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_gates_row<T>(s.H, s.x.row(b), s.pre.row(b), s.hm + b * s.H, s.gates.row(b),
                        s.rh.row(b));
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_state_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_state_row<T>(H, s.x.row(b), s.pre_n.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.gates.row(b), s.h.row(b), s.hm + b * H);
  }
}

template <typename T>
struct GruBackwardStep {
  int64_t H;
  Rows<const T> dout, gates, h_prev;  // dout[:, t], gates[:, t], h_{t-1}
  const T* mask;                      // (B, H)
  const T* dhm;                       // (B, H): dL/d(hm_t) from step t+1's product(s)
  T* carry;                           // (B, H): dL/dh_t's direct part in, z * dh out
  Rows<T> dz;                         // dxproj[:, t]
  T* da;                              // (B, 3H): d(hm W^T + b_hh) of this step (reset_after)
  Rows<T> da_n;                       // da[:, 2H:] of every step, (B, T, H) (reset_after)
  Rows<const T> drh;                  // dL/d(rh_t) (B, H) (reset_after=False)
};

template <typename T>
SEQCAST_INLINE void gru_backward_row(int64_t H, const T* RESTRICT dout, const T* RESTRICT g,
                                     const T* RESTRICT hp, const T* RESTRICT m,
                                     const T* RESTRICT dhm, T* RESTRICT carry, T* RESTRICT dz,
                                     T* RESTRICT da, T* RESTRICT da_n) {
  for (int64_t j = 0; j < H; ++j) {
    const T dh = dout[j] + carry[j] + m[j] * dhm[j];
    const T r = g[j], z = g[H + j], n = g[2 * H + j], an = g[3 * H + j];
    const T dn = dh * (T(1) - z) * (T(1) - n * n);
    const T dzz = dh * (hp[j] - n) * z * (T(1) - z);
    const T dzr = dn * an * r * (T(1) - r);
    carry[j] = dh * z;
    dz[j] = dzr;
    dz[H + j] = dzz;
    dz[2 * H + j] = dn;
    da[j] = dzr;
    da[H + j] = dzz;
    da[2 * H + j] = dn * r;
    da_n[j] = dn * r;
  }
}

template <typename T>
SEQCAST_SIMD void gru_backward_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_backward_row<T>(H, s.dout.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.dhm + b * H, s.carry + b * H, s.dz.row(b), s.da + b * 3 * H,
                        s.da_n.row(b));
  }
}

// reset_after=False, first half: dz_z, dz_n (written to dz) and the direct part of dh_{t-1}.
template <typename T>
SEQCAST_INLINE void gru_v3_backward_row(int64_t H, const T* RESTRICT dout, const T* RESTRICT g,
                                        const T* RESTRICT hp, const T* RESTRICT m,
                                        const T* RESTRICT dhm, T* RESTRICT carry,
                                        T* RESTRICT dz) {
  for (int64_t j = 0; j < H; ++j) {
    const T dh = dout[j] + carry[j] + m[j] * dhm[j];
    const T z = g[H + j], n = g[2 * H + j];
    carry[j] = dh * z;
    dz[H + j] = dh * (hp[j] - n) * z * (T(1) - z);
    dz[2 * H + j] = dh * (T(1) - z) * (T(1) - n * n);
  }
}

// reset_after=False, second half: given drh = dz_n W_n, dz_r and carry += m * r * drh.
template <typename T>
SEQCAST_INLINE void gru_v3_reset_row(int64_t H, const T* RESTRICT drh, const T* RESTRICT g,
                                     const T* RESTRICT hp, const T* RESTRICT m,
                                     T* RESTRICT carry, T* RESTRICT dz) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = g[j];
    dz[j] = drh[j] * hp[j] * m[j] * r * (T(1) - r);
    carry[j] += m[j] * r * drh[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_backward_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_backward_row<T>(H, s.dout.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                           s.dhm + b * H, s.carry + b * H, s.dz.row(b));
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_reset_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_reset_row<T>(H, s.drh.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.carry + b * H, s.dz.row(b));
  }
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_forward(const Tensor& xproj, const Tensor& w_hh,
                                                       const Tensor& h0, const OptTensor& b_hh,
                                                       bool reset_after,
                                                       const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 3, "gru_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  TORCH_CHECK(reset_after || !b_hh.has_value() || !b_hh->defined(),
              "gru_sequence: reset_after=False has no recurrent bias; pass b_hh=None");
  const Tensor bias = or_default(b_hh, lite::zeros({3 * H}, h0.options()), "b_hh");
  ForwardLoop loop(h0, rmask, (reset_after ? 3 : 2) * H);
  const auto opts = xproj.options();
  Tensor out = empty_buffer({B, T, H}, opts);
  Tensor gates = empty_buffer({B, T, (reset_after ? 4 : 3) * H}, opts);
  Tensor rh = reset_after ? lite::empty({0}, opts) : empty_buffer({B, T, H}, opts);
  Tensor pre_n = reset_after ? lite::empty({0}, opts) : lite::empty({B, H}, opts);
  const Tensor w_t = reset_after ? w_hh.t() : w_hh.narrow(0, 0, 2 * H).t();
  const Tensor w_n_t = w_hh.narrow(0, 2 * H, H).t();
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, 3 * H, H));
  AT_DISPATCH_FLOATING_TYPES(xproj.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    loop.run(T, w_t, [&](int64_t t) {
      const GruForwardStep<T_> s{
          H,
          step_rows<const T_>(xproj, t),
          matrix_rows<const T_>(loop.pre),
          previous_state<const T_>(h0, out, t),
          bias.data_ptr<T_>(),
          loop.mask.data_ptr<T_>(),
          step_rows<T_>(gates, t),
          step_rows<T_>(out, t),
          reset_after ? Rows<T_>{nullptr, 0} : step_rows<T_>(rh, t),
          loop.hm.data_ptr<T_>(),
          reset_after ? Rows<const T_>{nullptr, 0} : matrix_rows<const T_>(pre_n)};
      if (reset_after) {
        for_rows(B, 4 * H, [&](int64_t b0, int64_t b1) { gru_forward_step<T_>(s, b0, b1); });
      } else {
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_gates_step<T_>(s, b0, b1); });
        lite::mm_out(pre_n, rh.select(1, t), w_n_t);
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_state_step<T_>(s, b0, b1); });
      }
    });
  });
  return {out, out.select(1, T - 1).clone(), gates, rh};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(const Tensor& dout, const Tensor& dh_n,
                                                        const Tensor& w_hh, const Tensor& h0,
                                                        bool reset_after, const OptTensor& rmask,
                                                        const Tensor& out, const Tensor& gates,
                                                        const Tensor& rh) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  BackwardLoop loop(h0, dh_n, rmask);
  const auto opts = out.options();
  Tensor dz = empty_buffer({B, T, 3 * H}, opts);
  Tensor da = reset_after ? lite::empty({B, 3 * H}, opts) : lite::empty({0}, opts);
  Tensor da_n = reset_after ? empty_buffer({B, T, H}, opts) : lite::empty({0}, opts);
  Tensor drh = reset_after ? lite::empty({0}, opts) : lite::empty({B, H}, opts);
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * H), w_n = w_hh.narrow(0, 2 * H, H);
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, 3 * H, H));
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    // reset_after: dhm = da W_hh; else dhm = dz_rz W_rz + (the reset gate's part, in carry)
    loop.run(T, reset_after ? w_hh : w_rz, [&](int64_t t) -> Tensor {
      const GruBackwardStep<T_> s{
          H,
          step_rows<const T_>(dout, t),
          step_rows<const T_>(gates, t),
          previous_state<const T_>(h0, out, t),
          loop.mask.data_ptr<T_>(),
          loop.dhm.data_ptr<T_>(),
          loop.carry.data_ptr<T_>(),
          step_rows<T_>(dz, t),
          da.data_ptr<T_>(),
          reset_after ? step_rows<T_>(da_n, t) : Rows<T_>{nullptr, 0},
          reset_after ? Rows<const T_>{nullptr, 0} : matrix_rows<const T_>(drh)};
      if (reset_after) {
        for_rows(B, 6 * H, [&](int64_t b0, int64_t b1) { gru_backward_step<T_>(s, b0, b1); });
        return da;
      }
      for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_backward_step<T_>(s, b0, b1); });
      lite::mm_out(drh, dz.select(1, t).narrow(1, 2 * H, H), w_n);
      for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) { gru_v3_reset_step<T_>(s, b0, b1); });
      return dz.select(1, t).narrow(1, 0, 2 * H);
    });
  });
  Tensor dh0 = loop.dh0();
  // dW_hh for the r and z rows: dz^T hm; for the n rows: da_n^T hm, or dz_n^T (r hm).
  const Tensor dw_rz = recurrent_weight_grad(dz, 0, 2 * H, h0, out, rmask);
  if (reset_after) {
    Tensor dw = concat(dw_rz, recurrent_weight_grad(da_n, 0, H, h0, out, rmask));
    const int64_t batch_and_time[] = {0, 1};  // sum({0, 1}) is ambiguous in some torch versions
    Tensor db = concat(dz.narrow(2, 0, 2 * H).sum(batch_and_time), da_n.sum(batch_and_time));
    return {dz, dw, dh0, db};
  }
  Tensor dw = concat(dw_rz, weight_grad(dz, 2 * H, H, rh));
  return {dz, dw, dh0, lite::zeros({3 * H}, opts)};
}

}  // namespace seqcast_rnn
