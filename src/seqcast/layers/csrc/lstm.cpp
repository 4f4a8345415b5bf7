// One LSTM layer (see lstm.h): the cell's math, a step (its matrix products and its
// elementwise pass over the batch columns), the setup and finish of a layer's pass, and the
// single-layer ops lstm_layer_forward/backward. The stack (lstm_stack.cpp) runs the same steps,
// instantiated here for float and double, so the two agree to the last bit.
//
// Products go to BLAS directly: at batch 32 and 20 units a step's product takes about a
// microsecond, as long as an ATen dispatch (through ATen when the BLAS symbols are absent).

#include <ATen/Dispatch.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "cell_math.h"
#include "lstm.h"
#include "ops.h"

namespace seqcast_rnn {
namespace {

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

// Row-major C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C; lda/ldb/ldc are row strides.
// (Row-major X is column-major X^T, so BLAS computes C^T = op(B)^T op(A)^T.)
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  const T one = T(1);
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr) return sgemm_(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  } else {
    if (dgemm_ != nullptr) return dgemm_(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const auto view = [&](const T* p, bool trans, int64_t rows, int64_t cols, int64_t ld) {
    return trans ? at::from_blob(const_cast<T*>(p), {cols, rows}, {ld, 1}, options).t()
                 : at::from_blob(const_cast<T*>(p), {rows, cols}, {ld, 1}, options);
  };
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, options);
  const Tensor product = lite::mm(view(A, trans_a, M, K, lda), view(B, trans_b, K, N, ldb));
  if (beta == T(0)) {
    c.copy_(product);
  } else {
    c.add_(product);
  }
}

// One LSTM cell's forward math on pre-activations (input bias included) z_i, z_f, z_g, z_o,
// the previous cell state cp and the peepholes p_i, p_f, p_o (0 without).
template <typename T>
struct LstmForwardValues {
  T i, f, g, o, c, h;
};

template <typename T>
SEQCAST_INLINE LstmForwardValues<T> lstm_forward_cell(T zi, T zf, T zg, T zo, T cp, T pi, T pf,
                                                      T po) {
  LstmForwardValues<T> v;
  v.i = sigmoid(zi + pi * cp);
  v.f = sigmoid(zf + pf * cp);
  v.g = tanh_(zg);
  v.c = v.f * cp + v.i * v.g;
  v.o = sigmoid(zo + po * v.c);
  v.h = v.o * tanh_(v.c);
  return v;
}

// Element e of a step's saved gates g (4H, B), cell state c and output h (H, B).
template <typename T>
SEQCAST_INLINE void lstm_store_forward(const LstmForwardValues<T>& v, int64_t n, int64_t e,
                                       T* RESTRICT g, T* RESTRICT c, T* RESTRICT h) {
  g[e] = v.i;
  g[n + e] = v.f;
  g[2 * n + e] = v.g;
  g[3 * n + e] = v.o;
  c[e] = v.c;
  h[e] = v.h;
}

// A whole forward step's elementwise pass as one flat loop over the H*B values, with the bias
// and peephole planes. pre (4H, B) = Wcat u_t; cp, c, h, hm (H, B); g (4H, B); hm may be
// nullptr (the last step).
template <typename T, bool Peep>
SEQCAST_SIMD void lstm_forward_flat(const LstmParams<T>& P, const T* RESTRICT pre,
                                    const T* RESTRICT cp, T* RESTRICT g, T* RESTRICT c,
                                    T* RESTRICT h, T* RESTRICT hm) {
  const int64_t n = P.H * P.B;
  const T* RESTRICT bp = P.bias_plane;
  const T* RESTRICT pp = P.peep_plane;
  const T* RESTRICT m = P.mask;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    const T pi = Peep ? pp[e] : T(0), pf = Peep ? pp[n + e] : T(0);
    const T po = Peep ? pp[2 * n + e] : T(0);
    const auto v = lstm_forward_cell<T>(pre[e] + bp[e], pre[n + e] + bp[n + e],
                                        pre[2 * n + e] + bp[2 * n + e],
                                        pre[3 * n + e] + bp[3 * n + e], cp[e], pi, pf, po);
    lstm_store_forward<T>(v, n, e, g, c, h);
  }
  if (hm != nullptr) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) hm[e] = m ? h[e] * m[e] : h[e];
  }
}

// One forward step's elementwise pass over columns [b0, b1), arguments as above: a whole step
// with the planes runs flat, a column block unit by unit.
template <typename T>
SEQCAST_SIMD void lstm_forward_columns(const LstmParams<T>& P, int64_t b0, int64_t b1,
                                       const T* RESTRICT pre, const T* RESTRICT cp,
                                       T* RESTRICT g, T* RESTRICT c, T* RESTRICT h,
                                       T* RESTRICT hm) {
  const int64_t H = P.H, B = P.B, n = H * B;
  if (b0 == 0 && b1 == B && P.bias_plane != nullptr) {
    if (P.peep_plane != nullptr) return lstm_forward_flat<T, true>(P, pre, cp, g, c, h, hm);
    return lstm_forward_flat<T, false>(P, pre, cp, g, c, h, hm);
  }
  const T* RESTRICT m = P.mask;
  for (int64_t j = 0; j < H; ++j) {
    const T bi = P.bias ? P.bias[j] : T(0), bf = P.bias ? P.bias[H + j] : T(0);
    const T bg = P.bias ? P.bias[2 * H + j] : T(0), bo = P.bias ? P.bias[3 * H + j] : T(0);
    const T pi = P.peep ? P.peep[j] : T(0), pf = P.peep ? P.peep[H + j] : T(0);
    const T po = P.peep ? P.peep[2 * H + j] : T(0);
    const int64_t r = j * B;
#pragma omp simd
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t e = r + b;
      const auto v = lstm_forward_cell<T>(pre[e] + bi, pre[n + e] + bf, pre[2 * n + e] + bg,
                                          pre[3 * n + e] + bo, cp[e], pi, pf, po);
      lstm_store_forward<T>(v, n, e, g, c, h);
    }
    if (hm != nullptr) {
#pragma omp simd
      for (int64_t b = b0; b < b1; ++b) hm[r + b] = m ? h[r + b] * m[r + b] : h[r + b];
    }
  }
}

// One LSTM cell's backward math at element e of a step: dh = dL/dh_t (all paths), dc_in =
// dL/dc_t from step t+1; the activated gates, c_t, c_{t-1} and the peepholes. Gives dz (the
// four pre-activation gradients) and dL/dc_{t-1}.
template <typename T>
struct LstmBackwardValues {
  T dzi, dzf, dzg, dzo, dcp;
};

template <typename T>
SEQCAST_INLINE LstmBackwardValues<T> lstm_backward_cell(T dh, T dc_in, T i, T f, T gg, T o, T c,
                                                        T cp, T pi, T pf, T po) {
  LstmBackwardValues<T> v;
  const T tc = tanh_(c);
  v.dzo = dh * tc * o * (T(1) - o);
  const T dct = dc_in + dh * o * (T(1) - tc * tc) + v.dzo * po;
  v.dzi = dct * gg * i * (T(1) - i);
  v.dzf = dct * cp * f * (T(1) - f);
  v.dzg = dct * i * (T(1) - gg * gg);
  v.dcp = dct * f + v.dzi * pi + v.dzf * pf;
  return v;
}

// The arguments of one backward step's elementwise pass. dhm (H, B): dL/d(hm_t) from step
// t+1 (rows [0, H) of dU); carry: dh_T, zeroed after use; dc: dL/dc_t in, dL/dc_{t-1} out; dz
// (4H, B) out. db (4H, B) and dp (3H, B) accumulate per element over the steps and are summed
// over the batch once at the end (a per-row reduction each step measured a third of this pass
// at B = 32).
template <typename T>
struct LstmBackwardStep {
  int64_t n;
  const T* RESTRICT mask;
  const T* RESTRICT dout;
  const T* RESTRICT dhm;
  const T* RESTRICT g;
  const T* RESTRICT c;
  const T* RESTRICT cp;
  T* RESTRICT carry;
  T* RESTRICT dc;
  T* RESTRICT dz;
  T* RESTRICT db;
  T* RESTRICT dp;
};

template <typename T, bool Masked>
SEQCAST_INLINE void lstm_backward_element(const LstmBackwardStep<T>& S, int64_t e, T pi, T pf,
                                          T po) {
  const int64_t n = S.n;
  const T dh = S.dout[e] + S.carry[e] + (Masked ? S.mask[e] * S.dhm[e] : S.dhm[e]);
  const auto v = lstm_backward_cell<T>(dh, S.dc[e], S.g[e], S.g[n + e], S.g[2 * n + e],
                                       S.g[3 * n + e], S.c[e], S.cp[e], pi, pf, po);
  S.dc[e] = v.dcp;
  S.carry[e] = T(0);
  S.dz[e] = v.dzi;
  S.dz[n + e] = v.dzf;
  S.dz[2 * n + e] = v.dzg;
  S.dz[3 * n + e] = v.dzo;
  S.db[e] += v.dzi;
  S.db[n + e] += v.dzf;
  S.db[2 * n + e] += v.dzg;
  S.db[3 * n + e] += v.dzo;
  S.dp[e] += v.dzi * S.cp[e];
  S.dp[n + e] += v.dzf * S.cp[e];
  S.dp[2 * n + e] += v.dzo * S.c[e];
}

// A whole backward step as one flat loop (peepholes from the plane).
template <typename T, bool Peep, bool Masked>
SEQCAST_SIMD void lstm_backward_flat(const LstmBackwardStep<T>& step, const T* RESTRICT pp) {
  const LstmBackwardStep<T> S = step;  // a local copy: its pointers are loop invariants
  const int64_t n = S.n;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    lstm_backward_element<T, Masked>(S, e, Peep ? pp[e] : T(0), Peep ? pp[n + e] : T(0),
                                     Peep ? pp[2 * n + e] : T(0));
  }
}

// The same unit by unit over the columns [b0, b1) of a column block.
template <typename T, bool Masked>
SEQCAST_SIMD void lstm_backward_rows(const LstmParams<T>& P, int64_t b0, int64_t b1,
                                     const LstmBackwardStep<T>& step) {
  const LstmBackwardStep<T> S = step;
  const int64_t H = P.H, B = P.B;
  for (int64_t j = 0; j < H; ++j) {
    const T pi = P.peep ? P.peep[j] : T(0), pf = P.peep ? P.peep[H + j] : T(0);
    const T po = P.peep ? P.peep[2 * H + j] : T(0);
    const int64_t r = j * B;
#pragma omp simd
    for (int64_t b = b0; b < b1; ++b) lstm_backward_element<T, Masked>(S, r + b, pi, pf, po);
  }
}

// One backward step's elementwise pass over columns [b0, b1): a whole step flat, a column
// block unit by unit.
template <typename T>
void lstm_backward_columns(const LstmParams<T>& P, int64_t b0, int64_t b1,
                           const LstmBackwardStep<T>& S) {
  const bool masked = S.mask != nullptr;
  if (b0 == 0 && b1 == P.B && (P.peep == nullptr || P.peep_plane != nullptr)) {
    const T* pp = P.peep_plane;
    if (P.peep != nullptr) {
      return masked ? lstm_backward_flat<T, true, true>(S, pp)
                    : lstm_backward_flat<T, true, false>(S, pp);
    }
    return masked ? lstm_backward_flat<T, false, true>(S, pp)
                  : lstm_backward_flat<T, false, false>(S, pp);
  }
  return masked ? lstm_backward_rows<T, true>(P, b0, b1, S)
                : lstm_backward_rows<T, false>(P, b0, b1, S);
}

// (rows, B) = every value of v (rows) repeated over the B columns.
template <typename T>
void broadcast_rows(T* RESTRICT plane, const T* RESTRICT v, int64_t rows, int64_t B) {
  for (int64_t r = 0; r < rows; ++r) std::fill(plane + r * B, plane + (r + 1) * B, v[r]);
}

void check_lstm_layer(const Tensor& xs, const Tensor& w_ih, const Tensor& w_hh,
                      const OptTensor& bias, const Tensor& h0, const Tensor& c0,
                      const OptTensor& peephole, const OptTensor& rmask) {
  TORCH_CHECK(xs.dim() == 3, "lstm_layer: xs must be (time, features, batch), got ", xs.sizes());
  TORCH_CHECK(xs.scalar_type() == at::kFloat || xs.scalar_type() == at::kDouble,
              "lstm_layer: float32 or float64 only, got ", xs.scalar_type());
  const int64_t T = xs.size(0), F = xs.size(1), B = xs.size(2), H = w_hh.size(-1);
  TORCH_CHECK(T >= 1, "lstm_layer: the sequence must have at least one step");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * H,
              "lstm_layer: w_hh must be (4*units, units), got ", w_hh.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == 4 * H && w_ih.size(1) == F,
              "lstm_layer: w_ih must be (4*units, features) = (", 4 * H, ", ", F, "), got ",
              w_ih.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == H,
              "lstm_layer: h0 must be (batch, units) = (", B, ", ", H, "), got ", h0.sizes());
  TORCH_CHECK(c0.sizes() == h0.sizes(), "lstm_layer: c0 must be (batch, units) = (", B, ", ",
              H, "), got ", c0.sizes());
  const auto check = [&](const Tensor& t, at::IntArrayRef shape, const char* what) {
    TORCH_CHECK(t.sizes() == shape, "lstm_layer: ", what, " must have shape ", shape, ", got ",
                t.sizes());
    TORCH_CHECK(t.scalar_type() == xs.scalar_type(), "lstm_layer: all tensors must have dtype ",
                xs.scalar_type());
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(),
                "lstm_layer: tensors must be contiguous on the CPU");
  };
  check(xs, xs.sizes(), "xs");
  check(w_ih, w_ih.sizes(), "w_ih");
  check(w_hh, w_hh.sizes(), "w_hh");
  check(h0, h0.sizes(), "h0");
  check(c0, c0.sizes(), "c0");
  if (bias.has_value() && bias->defined()) check(*bias, {4 * H}, "bias");
  if (peephole.has_value() && peephole->defined()) check(*peephole, {3, H}, "peephole");
  if (rmask.has_value() && rmask->defined()) check(*rmask, {B, H}, "rmask");
}

// dst (cols, rows) = src (rows, cols)^T: small state matrices between (B, H) and (H, B).
template <typename T>
void transpose_into(T* RESTRICT dst, const T* RESTRICT src, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

template <typename T>
void lstm_forward_finish(LstmForwardBuffers& buf, const T* h_last) {
  const int64_t T_ = buf.cs.size(0), H = buf.cs.size(1), B = buf.cs.size(2);
  transpose_into<T>(buf.h_n.data_ptr<T>(), h_last, H, B);
  transpose_into<T>(buf.c_n.data_ptr<T>(), buf.cs.data_ptr<T>() + (T_ - 1) * H * B, H, B);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

template <typename T>
void LstmForwardRun<T>::step(int64_t t, int64_t b0, int64_t b1) const {
  const int64_t n = H * B;
  gemm<T>(false, false, 4 * H, b1 - b0, R, W, R, U + t * R * B + b0, B, T(0), Z + b0, B);
  const T* cp = t == 0 ? c0_t : cs + (t - 1) * n;
  T* hm = t + 1 < steps ? U + (t + 1) * R * B : nullptr;
  lstm_forward_columns<T>(P, b0, b1, Z, cp, gates + t * 4 * n, cs + t * n,
                          h_out + t * h_stride, hm);
}

template <typename T>
void LstmBackwardRun<T>::step(int64_t t, int64_t b0, int64_t b1, T* dw) const {
  const int64_t n = H * B, G = 4 * H, F = R - H, nb = b1 - b0;
  const T* cp = t == 0 ? c0_t : cs + (t - 1) * n;
  const LstmBackwardStep<T> S{n,     P.mask,     dout + t * dout_stride, DU, gates + t * 4 * n,
                              cs + t * n, cp, carry, dc, DZ, DB, DP};
  lstm_backward_columns<T>(P, b0, b1, S);
  const T* Ut = U + t * R * B;
  gemm<T>(true, false, R, nb, G, W, R, DZ + b0, B, T(0), DU + b0, B);  // dU = Wcat^T dz_t
  // dWcat^T += u dz^T: the transposed product measured 15-25% faster than dz u^T here
  gemm<T>(false, true, R, G, nb, Ut + b0, B, DZ + b0, B, T(1), dw, G);
  T* dxt = dx + t * dx_stride;
  for (int64_t f = 0; f < F; ++f) {
    std::memcpy(dxt + f * B + b0, DU + (H + f) * B + b0, sizeof(T) * nb);
  }
}

// ---------------------------------------------------------------------------------------------
// A layer's pass and the single-layer ops
// ---------------------------------------------------------------------------------------------

LstmForwardBuffers lstm_forward_buffers(const Tensor& w_ih, const Tensor& w_hh, int64_t T,
                                        int64_t B, bool with_out, const at::TensorOptions& opts) {
  const int64_t H = w_hh.size(-1), F = w_ih.size(1), R = H + F;
  LstmForwardBuffers buf;
  buf.wcat = concat(w_hh, w_ih, 1);
  buf.u = empty_buffer({T, R, B}, opts);
  buf.out = with_out ? empty_buffer({T, H, B}, opts) : Tensor();
  buf.cs = empty_buffer({T, H, B}, opts);
  buf.gates = empty_buffer({T, 4 * H, B}, opts);
  // pre | c0^T | mask^T | bias plane (4H, B) | peephole plane (3H, B)
  buf.scratch = lite::empty({13 * H * B}, opts);
  buf.h_n = lite::empty({B, H}, opts);
  buf.c_n = lite::empty({B, H}, opts);
  return buf;
}

// Fills u_0's state rows (hm_0 = h0 * m) and the transposed c0 and mask; returns the run with
// its h_t going to (h_out, h_stride).
template <typename T>
LstmForwardRun<T> lstm_forward_run(LstmForwardBuffers& buf, const Tensor& h0, const Tensor& c0,
                                   const OptTensor& bias, const OptTensor& peephole,
                                   const OptTensor& rmask, T* h_out, int64_t h_stride) {
  const int64_t T_ = buf.u.size(0), R = buf.u.size(1), B = buf.u.size(2), H = buf.cs.size(1);
  const int64_t n = H * B;
  const bool masked = rmask.has_value() && rmask->defined();
  T* Z = buf.scratch.data_ptr<T>();
  T* c0_t = Z + 4 * n;
  T* mask = c0_t + n;
  T* U = buf.u.data_ptr<T>();
  transpose_into<T>(c0_t, c0.data_ptr<T>(), B, H);
  transpose_into<T>(U, h0.data_ptr<T>(), B, H);
  if (masked) {
    transpose_into<T>(mask, rmask->data_ptr<T>(), B, H);
    for (int64_t e = 0; e < n; ++e) U[e] *= mask[e];
  }
  const T* bias_v = ptr_or_null<T>(bias);
  const T* peep_v = ptr_or_null<T>(peephole);
  T* bias_plane = mask + n;
  T* peep_plane = bias_plane + 4 * n;
  if (bias_v != nullptr) {
    broadcast_rows<T>(bias_plane, bias_v, 4 * H, B);
  } else {
    std::fill(bias_plane, bias_plane + 4 * n, T(0));
  }
  if (peep_v != nullptr) broadcast_rows<T>(peep_plane, peep_v, 3 * H, B);
  const LstmParams<T> P{H,          B,          bias_v, peep_v, masked ? mask : nullptr,
                        bias_plane, peep_v ? peep_plane : nullptr};
  return {T_, H, B, R, P, buf.wcat.data_ptr<T>(), U, Z, buf.cs.data_ptr<T>(),
          buf.gates.data_ptr<T>(), c0_t, h_out, h_stride};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_forward(
    const Tensor& xs, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
    const Tensor& h0, const Tensor& c0, const OptTensor& peephole, const OptTensor& rmask) {
  check_lstm_layer(xs, w_ih, w_hh, bias, h0, c0, peephole, rmask);
  const int64_t T = xs.size(0), F = xs.size(1), B = xs.size(2), H = w_hh.size(-1);
  const int64_t n = H * B, R = H + F;
  LstmForwardBuffers buf = lstm_forward_buffers(w_ih, w_hh, T, B, true, xs.options());
  buf.u.narrow(1, H, F).copy_(xs);
  const ColumnBlocks blocks(B, T * 4 * H * R);
  const FlushDenormals flush(xs.scalar_type(), blocks.count > 1 || may_use_threads(B, 4 * H, R));
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "lstm_layer_forward", [&] {
    using T_ = scalar_t;
    T_* out = buf.out.data_ptr<T_>();
    const auto run = lstm_forward_run<T_>(buf, h0, c0, bias, peephole, rmask, out, n);
    blocks.run(B, [&](int64_t, int64_t b0, int64_t b1) {
      for (int64_t t = 0; t < T; ++t) run.step(t, b0, b1);
    });
    lstm_forward_finish<T_>(buf, out + (T - 1) * n);
  });
  return {buf.out, buf.h_n, buf.c_n, buf.cs, buf.gates, buf.u};
}

LstmBackwardBuffers lstm_backward_buffers(const Tensor& w_ih, const Tensor& w_hh, int64_t T,
                                          int64_t B, int64_t blocks, bool with_dxs,
                                          const at::TensorOptions& opts) {
  const int64_t H = w_hh.size(-1), F = w_ih.size(1), R = H + F, G = 4 * H, n = H * B;
  LstmBackwardBuffers buf;
  buf.wcat = concat(w_hh, w_ih, 1);
  buf.zeroed = lite::zeros({R * B + G * B + 3 * n + blocks * G * R}, opts);
  buf.scratch = lite::empty({4 * n + G * B + 3 * n}, opts);  // ... | dz | peephole plane
  buf.dxs = with_dxs ? lite::empty({T, F, B}, opts) : Tensor();
  buf.dw_ih = lite::empty({G, F}, opts);
  buf.dw_hh = lite::empty({G, H}, opts);
  buf.dbias = lite::empty({G}, opts);
  buf.dpeep = lite::empty({3, H}, opts);
  buf.dh0 = lite::empty({B, H}, opts);
  buf.dc0 = lite::empty({B, H}, opts);
  buf.blocks = blocks;
  return buf;
}

template <typename T>
LstmBackwardRun<T> lstm_backward_run(LstmBackwardBuffers& buf, const Tensor& dh_n,
                                     const Tensor& dc_n, const Tensor& c0,
                                     const OptTensor& peephole, const OptTensor& rmask,
                                     const Tensor& cs, const Tensor& gates, const Tensor& u,
                                     const T* dout, int64_t dout_stride, T* dx,
                                     int64_t dx_stride) {
  const int64_t H = cs.size(1), B = cs.size(2), R = u.size(1), G = 4 * H, n = H * B;
  const bool masked = rmask.has_value() && rmask->defined();
  T* DU = buf.zeroed.data_ptr<T>();
  T* DB = DU + R * B;
  T* DP = DB + G * B;
  T* c0_t = buf.scratch.data_ptr<T>();
  T* mask = c0_t + n;
  T* carry = mask + n;
  T* dc = carry + n;
  T* DZ = dc + n;
  transpose_into<T>(c0_t, c0.data_ptr<T>(), B, H);
  if (masked) transpose_into<T>(mask, rmask->data_ptr<T>(), B, H);
  transpose_into<T>(carry, dh_n.data_ptr<T>(), B, H);
  transpose_into<T>(dc, dc_n.data_ptr<T>(), B, H);
  const T* peep_v = ptr_or_null<T>(peephole);
  T* peep_plane = DZ + G * B;
  if (peep_v != nullptr) broadcast_rows<T>(peep_plane, peep_v, 3 * H, B);
  const LstmParams<T> P{H,       B,      nullptr, peep_v, masked ? mask : nullptr,
                        nullptr, peep_v ? peep_plane : nullptr};
  return {H,  B,     R,  P,  buf.wcat.data_ptr<T>(), u.data_ptr<T>(), cs.data_ptr<T>(),
          gates.data_ptr<T>(), c0_t, dout, dout_stride, DU, DB, DP, carry, dc, DZ, dx,
          dx_stride};
}


template <typename T>
void lstm_backward_finish(LstmBackwardBuffers& buf, const LstmBackwardRun<T>& run) {
  const int64_t H = run.H, B = run.B, R = run.R, F = R - H, G = 4 * H;
  T* out_ih = buf.dw_ih.data_ptr<T>();
  T* out_hh = buf.dw_hh.data_ptr<T>();
  for (int64_t k = 0; k < buf.blocks; ++k) {
    const T* dw = lstm_block_dw<T>(buf, k, H, B, R);
    const auto put = [k](T& to, T value) { to = k == 0 ? value : to + value; };
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < H; ++j) put(out_hh[g * H + j], dw[j * G + g]);
      for (int64_t f = 0; f < F; ++f) put(out_ih[g * F + f], dw[(H + f) * G + g]);
    }
  }
  T* out_b = buf.dbias.data_ptr<T>();
  T* out_p = buf.dpeep.data_ptr<T>();
  for (int64_t row = 0; row < G; ++row) {
    T sum = 0;
    for (int64_t b = 0; b < B; ++b) sum += run.DB[row * B + b];
    out_b[row] = sum;
  }
  for (int64_t row = 0; row < 3 * H; ++row) {
    T sum = 0;
    for (int64_t b = 0; b < B; ++b) sum += run.DP[row * B + b];
    out_p[row] = sum;
  }
  T* h0g = buf.dh0.data_ptr<T>();
  T* c0g = buf.dc0.data_ptr<T>();
  const T* mask = run.P.mask;
  for (int64_t j = 0; j < H; ++j) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t e = j * B + b;
      h0g[b * H + j] = run.carry[e] + (mask ? mask[e] : T(1)) * run.DU[e];
      c0g[b * H + j] = run.dc[e];
    }
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_layer_backward(
    const Tensor& dout, const Tensor& dh_n, const Tensor& dc_n, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& c0, const OptTensor& peephole, const OptTensor& rmask,
    const Tensor& cs, const Tensor& gates, const Tensor& u) {
  const int64_t T = cs.size(0), H = cs.size(1), B = cs.size(2), F = w_ih.size(1);
  const int64_t n = H * B, R = H + F, G = 4 * H;
  const ColumnBlocks blocks(B, T * G * R);
  LstmBackwardBuffers buf =
      lstm_backward_buffers(w_ih, w_hh, T, B, blocks.count, true, cs.options());
  const FlushDenormals flush(cs.scalar_type(), blocks.count > 1 || may_use_threads(B, G, R));
  AT_DISPATCH_FLOATING_TYPES(cs.scalar_type(), "lstm_layer_backward", [&] {
    using T_ = scalar_t;
    const auto run = lstm_backward_run<T_>(buf, dh_n, dc_n, c0, peephole, rmask, cs, gates, u,
                                           dout.data_ptr<T_>(), n, buf.dxs.data_ptr<T_>(),
                                           F * B);
    blocks.run(B, [&](int64_t k, int64_t b0, int64_t b1) {
      T_* dw = lstm_block_dw<T_>(buf, k, H, B, R);
      for (int64_t t = T - 1; t >= 0; --t) run.step(t, b0, b1, dw);
    });
    lstm_backward_finish<T_>(buf, run);
  });
  return {buf.dxs, buf.dw_ih, buf.dw_hh, buf.dbias, buf.dh0, buf.dc0, buf.dpeep};
}

// What the stack (lstm_stack.cpp) calls, for both dtypes: the steps, a pass's setup and finish.
template struct LstmForwardRun<float>;
template struct LstmForwardRun<double>;
template struct LstmBackwardRun<float>;
template struct LstmBackwardRun<double>;

#define SEQCAST_INSTANTIATE(T)                                                                  \
  template LstmForwardRun<T> lstm_forward_run<T>(LstmForwardBuffers&, const Tensor&,          \
                                                 const Tensor&, const OptTensor&,             \
                                                 const OptTensor&, const OptTensor&, T*,      \
                                                 int64_t);                                    \
  template LstmBackwardRun<T> lstm_backward_run<T>(                                           \
      LstmBackwardBuffers&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,    \
      const OptTensor&, const Tensor&, const Tensor&, const Tensor&, const T*, int64_t, T*,   \
      int64_t);                                                                               \
  template void lstm_backward_finish<T>(LstmBackwardBuffers&, const LstmBackwardRun<T>&);
SEQCAST_INSTANTIATE(float)
SEQCAST_INSTANTIATE(double)
#undef SEQCAST_INSTANTIATE

}  // namespace seqcast_rnn
