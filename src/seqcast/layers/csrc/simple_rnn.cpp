// The SimpleRNN family over a whole sequence, forward and backward, on the time loop of
// time_loop.h: SimpleRNN (Elman) and the layer-normalised SimpleRNN. Both compile their
// elementwise passes for each activation (cell_math.h), chosen once per call.
//
// SimpleRNN: h_t = act(xproj_t + hm_{t-1} W^T).  Saved: out only (act' from the output).
//
// Layer-normalised SimpleRNN:
//   s = xproj_t + hm_{t-1} W^T; ŝ = (s - mean(s)) / sqrt(var(s) + eps); h_t = act(γ ŝ + β)
// (mean and biased variance over the H features of each row).
// Saved: out, shat (B, T, H) = ŝ, rstd (B, T) = 1 / sqrt(var + eps).
// Backward per row: dy = dh act'(h); dγ += dy ŝ; dβ += dy; dŝ = γ dy;
//   ds = rstd (dŝ - mean(dŝ) - ŝ mean(dŝ ŝ)).

#include <ATen/Dispatch.h>

#include <cmath>
#include <tuple>

#include "cell_math.h"
#include "ops.h"
#include "time_loop.h"

namespace seqcast_rnn {
namespace {

// Calls f(T{}, std::integral_constant<int, A>{}) with the dtype's scalar type T and the
// activation code A as compile-time values.
template <typename F>
void dispatch_rnn(at::ScalarType dtype, int64_t activation, const F& f) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "seqcast_simple_rnn", [&] {
    with_activation(activation, [&](auto act) { f(scalar_t(0), act); });
  });
}

// ---------------------------------------------------------------------------------------------
// SimpleRNN
// ---------------------------------------------------------------------------------------------

template <typename T>
struct RnnStep {
  int64_t H;
  Rows<const T> x, pre;  // forward: xproj[:, t], hm W^T (B, H)
  Rows<T> h;             // out[:, t]
  const T* mask;         // (B, H)
  T* hm;                 // forward: h_t * m
  Rows<const T> dout;    // backward: dout[:, t]
  const T* dhm;          // backward: dL/d(hm_t)
  T* carry;              // backward: dh_T at the last step, then 0
  Rows<T> dz;            // backward: dxproj[:, t]
};

template <int A, typename T>
SEQCAST_INLINE void rnn_forward_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre,
                                    const T* RESTRICT m, T* RESTRICT h, T* RESTRICT hm) {
  for (int64_t j = 0; j < H; ++j) {
    const T ht = activate<A>(x[j] + pre[j]);
    h[j] = ht;
    hm[j] = ht * m[j];
  }
}

template <int A, typename T>
SEQCAST_SIMD void rnn_forward_step(const RnnStep<T>& s, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    rnn_forward_row<A, T>(s.H, s.x.row(b), s.pre.row(b), s.mask + b * s.H, s.h.row(b),
                          s.hm + b * s.H);
  }
}

template <int A, typename T>
SEQCAST_INLINE void rnn_backward_row(int64_t H, const T* RESTRICT dout, const T* RESTRICT h,
                                     const T* RESTRICT m, const T* RESTRICT dhm,
                                     T* RESTRICT carry, T* RESTRICT dz) {
  for (int64_t j = 0; j < H; ++j) {
    dz[j] = (dout[j] + carry[j] + m[j] * dhm[j]) * activation_grad<A>(h[j]);
    carry[j] = T(0);
  }
}

template <int A, typename T>
SEQCAST_SIMD void rnn_backward_step(const RnnStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    rnn_backward_row<A, T>(H, s.dout.row(b), s.h.row(b), s.mask + b * H, s.dhm + b * H,
                           s.carry + b * H, s.dz.row(b));
  }
}

// ---------------------------------------------------------------------------------------------
// Layer-normalised SimpleRNN
// ---------------------------------------------------------------------------------------------

template <typename T>
struct LnRnnStep {
  int64_t H;
  T eps;
  const T *gamma, *beta;  // (H)
  const T* mask;          // (B, H)
  Rows<T> h, shat, rstd;  // out[:, t], shat[:, t], rstd[:, t] (stride T)
  Rows<const T> x, pre;   // forward: xproj[:, t], hm W^T
  T* hm;                  // forward: h_t * m
  Rows<const T> dout;     // backward: dout[:, t]
  const T* dhm;           // backward
  T* carry;               // backward: dh_T at the last step, then 0
  Rows<T> dz;             // backward: dxproj[:, t]
  T *dgamma, *dbeta;      // backward: (H), accumulated
};

// One row of the forward step; returns rstd.
template <int A, typename T>
SEQCAST_INLINE T ln_rnn_forward_row(int64_t H, T eps, const T* RESTRICT x, const T* RESTRICT pre,
                                    const T* RESTRICT gamma, const T* RESTRICT beta,
                                    const T* RESTRICT m, T* RESTRICT shat, T* RESTRICT h,
                                    T* RESTRICT hm) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < H; ++j) sum += x[j] + pre[j];
  const T mean = sum / T(H);
  T sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < H; ++j) {
    const T d = x[j] + pre[j] - mean;
    sq += d * d;
  }
  const T rstd = T(1) / std::sqrt(sq / T(H) + eps);
  for (int64_t j = 0; j < H; ++j) {
    const T sh = (x[j] + pre[j] - mean) * rstd;
    const T ht = activate<A>(gamma[j] * sh + beta[j]);
    shat[j] = sh;
    h[j] = ht;
    hm[j] = ht * m[j];
  }
  return rstd;
}

template <int A, typename T>
SEQCAST_SIMD void ln_rnn_forward_step(const LnRnnStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    *s.rstd.row(b) = ln_rnn_forward_row<A, T>(H, s.eps, s.x.row(b), s.pre.row(b), s.gamma,
                                              s.beta, s.mask + b * H, s.shat.row(b), s.h.row(b),
                                              s.hm + b * H);
  }
}

template <int A, typename T>
SEQCAST_INLINE void ln_rnn_backward_row(int64_t H, T rstd, const T* RESTRICT dout,
                                        const T* RESTRICT h, const T* RESTRICT shat,
                                        const T* RESTRICT gamma, const T* RESTRICT m,
                                        const T* RESTRICT dhm, T* RESTRICT carry,
                                        T* RESTRICT dz, T* RESTRICT dgamma, T* RESTRICT dbeta) {
  T sum_d = 0, sum_ds = 0;
#pragma omp simd reduction(+ : sum_d, sum_ds)
  for (int64_t j = 0; j < H; ++j) {
    const T dy = (dout[j] + carry[j] + m[j] * dhm[j]) * activation_grad<A>(h[j]);
    carry[j] = T(0);
    dgamma[j] += dy * shat[j];
    dbeta[j] += dy;
    const T dsh = dy * gamma[j];
    dz[j] = dsh;
    sum_d += dsh;
    sum_ds += dsh * shat[j];
  }
  const T mean_d = sum_d / T(H), mean_ds = sum_ds / T(H);
  for (int64_t j = 0; j < H; ++j) dz[j] = rstd * (dz[j] - mean_d - shat[j] * mean_ds);
}

template <int A, typename T>
SEQCAST_SIMD void ln_rnn_backward_step(const LnRnnStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    ln_rnn_backward_row<A, T>(H, *s.rstd.row(b), s.dout.row(b), s.h.row(b), s.shat.row(b),
                              s.gamma, s.mask + b * H, s.dhm + b * H, s.carry + b * H,
                              s.dz.row(b), s.dgamma, s.dbeta);
  }
}

}  // namespace

std::tuple<Tensor, Tensor> simple_rnn_forward(const Tensor& xproj, const Tensor& w_hh,
                                              const Tensor& h0, int64_t activation,
                                              const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 1, "simple_rnn_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  ForwardLoop loop(h0, rmask, H);
  Tensor out = empty_buffer({B, T, H}, xproj.options());
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, H, H));
  dispatch_rnn(xproj.scalar_type(), activation, [&](auto type, auto act) {
    using T_ = decltype(type);
    constexpr int A = decltype(act)::value;
    loop.run(T, w_hh.t(), [&](int64_t t) {
      RnnStep<T_> s{};
      s.H = H;
      s.x = step_rows<const T_>(xproj, t);
      s.pre = matrix_rows<const T_>(loop.pre);
      s.h = step_rows<T_>(out, t);
      s.mask = loop.mask.data_ptr<T_>();
      s.hm = loop.hm.data_ptr<T_>();
      for_rows(B, H, [&](int64_t b0, int64_t b1) { rnn_forward_step<A, T_>(s, b0, b1); });
    });
  });
  return {out, out.select(1, T - 1).clone()};
}

std::tuple<Tensor, Tensor, Tensor> simple_rnn_backward(const Tensor& dout, const Tensor& dh_n,
                                                       const Tensor& w_hh, const Tensor& h0,
                                                       int64_t activation,
                                                       const OptTensor& rmask,
                                                       const Tensor& out) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  BackwardLoop loop(h0, dh_n, rmask);
  Tensor dz = empty_buffer({B, T, H}, out.options());
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, H, H));
  dispatch_rnn(out.scalar_type(), activation, [&](auto type, auto act) {
    using T_ = decltype(type);
    constexpr int A = decltype(act)::value;
    loop.run(T, w_hh, [&](int64_t t) {
      RnnStep<T_> s{};
      s.H = H;
      s.h = step_rows<T_>(out, t);
      s.mask = loop.mask.data_ptr<T_>();
      s.dout = step_rows<const T_>(dout, t);
      s.dhm = loop.dhm.data_ptr<T_>();
      s.carry = loop.carry.data_ptr<T_>();
      s.dz = step_rows<T_>(dz, t);
      for_rows(B, H, [&](int64_t b0, int64_t b1) { rnn_backward_step<A, T_>(s, b0, b1); });
      return dz.select(1, t);
    });
  });
  Tensor dh0 = loop.dh0();
  Tensor dw = recurrent_weight_grad(dz, 0, H, h0, out, rmask);
  return {dz, dw, dh0};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> ln_simple_rnn_forward(
    const Tensor& xproj, const Tensor& w_hh, const Tensor& h0, const Tensor& gamma,
    const Tensor& beta, double eps, int64_t activation, const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 1, "ln_simple_rnn_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  const Tensor zeros_h = lite::zeros({H}, h0.options());
  const Tensor gamma_ = or_default(gamma, zeros_h, "gamma");
  const Tensor beta_ = or_default(beta, zeros_h, "beta");
  ForwardLoop loop(h0, rmask, H);
  Tensor out = empty_buffer({B, T, H}, xproj.options());
  Tensor shat = empty_buffer({B, T, H}, xproj.options());
  Tensor rstd = empty_buffer({B, T, 1}, xproj.options());
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, H, H));
  dispatch_rnn(xproj.scalar_type(), activation, [&](auto type, auto act) {
    using T_ = decltype(type);
    constexpr int A = decltype(act)::value;
    loop.run(T, w_hh.t(), [&](int64_t t) {
      LnRnnStep<T_> s{};
      s.H = H;
      s.eps = static_cast<T_>(eps);
      s.gamma = gamma_.data_ptr<T_>();
      s.beta = beta_.data_ptr<T_>();
      s.mask = loop.mask.data_ptr<T_>();
      s.h = step_rows<T_>(out, t);
      s.shat = step_rows<T_>(shat, t);
      s.rstd = step_rows<T_>(rstd, t);
      s.x = step_rows<const T_>(xproj, t);
      s.pre = matrix_rows<const T_>(loop.pre);
      s.hm = loop.hm.data_ptr<T_>();
      for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { ln_rnn_forward_step<A, T_>(s, b0, b1); });
    });
  });
  return {out, out.select(1, T - 1).clone(), shat, rstd};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> ln_simple_rnn_backward(
    const Tensor& dout, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h0,
    const Tensor& gamma, int64_t activation, const OptTensor& rmask, const Tensor& out,
    const Tensor& shat, const Tensor& rstd) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  BackwardLoop loop(h0, dh_n, rmask);
  Tensor dz = empty_buffer({B, T, H}, out.options());
  Tensor dgamma = lite::zeros({at::get_num_threads(), H}, out.options());  // per-thread sums
  Tensor dbeta = lite::zeros({at::get_num_threads(), H}, out.options());
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, H, H));
  dispatch_rnn(out.scalar_type(), activation, [&](auto type, auto act) {
    using T_ = decltype(type);
    constexpr int A = decltype(act)::value;
    loop.run(T, w_hh, [&](int64_t t) {
      LnRnnStep<T_> s{};
      s.H = H;
      s.gamma = gamma.data_ptr<T_>();
      s.mask = loop.mask.data_ptr<T_>();
      s.h = step_rows<T_>(out, t);
      s.shat = step_rows<T_>(shat, t);
      s.rstd = step_rows<T_>(rstd, t);
      s.dout = step_rows<const T_>(dout, t);
      s.dhm = loop.dhm.data_ptr<T_>();
      s.carry = loop.carry.data_ptr<T_>();
      s.dz = step_rows<T_>(dz, t);
      s.dgamma = dgamma.data_ptr<T_>();
      s.dbeta = dbeta.data_ptr<T_>();
      for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) {
        LnRnnStep<T_> part = s;
        const int64_t slot = thread_slot(dgamma.size(0));
        part.dgamma += slot * H;
        part.dbeta += slot * H;
        ln_rnn_backward_step<A, T_>(part, b0, b1);
      });
      return dz.select(1, t);
    });
  });
  Tensor dh0 = loop.dh0();
  Tensor dw = recurrent_weight_grad(dz, 0, H, h0, out, rmask);
  return {dz, dw, dh0, dgamma.sum(0), dbeta.sum(0)};
}

}  // namespace seqcast_rnn
