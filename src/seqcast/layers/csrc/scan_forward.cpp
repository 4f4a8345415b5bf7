// The MinGRU/MinLSTM scan's forward pass (scan.h describes the scan): the log-space recurrence
// over the lanes of a group of batch rows, run in time chunks on several threads for long
// sequences, and the op min_rnn_scan_forward.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "ops.h"
#include "scan.h"

namespace seqcast_scan {
namespace {

// seq[b, t, j] of one step t for the lanes <-> lanes[n].
template <typename T>
void read_step(const T* seq, const Lanes<T>& L, int64_t H, int64_t t, T* lanes) {
  for (int64_t n = 0; n < L.N; ++n) lanes[n] = seq[L.row0 + L.row[n] + t * H];
}

// What a forward run does with P_t = a_1 ... a_t (from its first step):
//   kZeroStart: nothing (h_0 = 0); kAddState: h_t += P_t h0[lane];
//   kStoreProduct: h_t stays the zero-start value, P_t goes to `prod` (for a chunk's fix-up).
enum StateMode : int { kZeroStart = 0, kAddState = 1, kStoreProduct = 2 };

// Steps [t0, t1) of the recurrence over the lanes: s (N) holds log h of the zero-start scan and
// p (N) the running product; zs (t1 - t0, G, N) in; h_t written to out (B, T, H).
template <typename T, int K, int Mode>
SEQCAST_SIMD void forward_steps(const Lanes<T>& L, int64_t H, int64_t t0, int64_t t1,
                                const T* RESTRICT zs, T* RESTRICT s, T* RESTRICT p,
                                T* RESTRICT out, T* RESTRICT prod) {
  constexpr int64_t G = gates(K);
  const int64_t N = L.N;
  const int32_t* RESTRICT row = L.row.data();
  const T* RESTRICT h0 = L.h0.data();
  const T zero = T(0);
  for (int64_t t = t0; t < t1; ++t) {
    const T* RESTRICT zt = zs + (t - t0) * G * N;
    T* RESTRICT ot = out + L.row0 + t * H;
    T* RESTRICT pt = Mode == kStoreProduct ? prod + L.row0 + t * H : nullptr;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      const T k = gate_input<T, K>(zt, N, n);
      const T xh = zt[(G - 1) * N + n];
      const T ex = exp_neg(std::min(xh, zero));
      const T u = k + log_g(xh, ex);  // log(b / a)
      const T ek = exp_neg(-std::abs(k));
      const T lh = s[n];
      const T e1 = exp_neg(-std::abs(lh - u));  // lh = -inf: 0 (float: ~1e-38)
      const T next = std::max(lh, u) - std::max(k, zero) + log_ratio(e1, ek);
      s[n] = next;
      T h = exp_(next);
      if constexpr (Mode != kZeroStart) {
        const T a = (k >= zero ? ek : T(1)) * recip_1_2(T(1) + ek);
        const T pn = p[n] * a;
        p[n] = pn;
        if constexpr (Mode == kAddState) h += pn * h0[n];
        if constexpr (Mode == kStoreProduct) pt[row[n]] = pn;
      }
      ot[row[n]] = h;
    }
  }
}

// Steps [t0, t1) from h = 0 at t0, adding h0 (mode kAddState) or storing P_t (kStoreProduct).
template <typename T, int K>
void forward_range(const Problem<T>& P, const Lanes<T>& L, int64_t t0, int64_t t1, int mode,
                   T* out, T* prod) {
  const int64_t N = L.N, G = P.G, H = P.H;
  std::vector<T> zs(kSteps * G * N), xl(N);
  std::vector<T> s(N, -std::numeric_limits<T>::infinity()), p(N, T(1));
  for (int64_t b = t0; b < t1; b += kSteps) {
    const int64_t e = std::min(t1, b + kSteps);
    gather_z(P, L, b, e, zs.data(), xl.data());
    if (mode == kAddState) {
      forward_steps<T, K, kAddState>(L, H, b, e, zs.data(), s.data(), p.data(), out, prod);
    } else if (mode == kStoreProduct) {
      forward_steps<T, K, kStoreProduct>(L, H, b, e, zs.data(), s.data(), p.data(), out, prod);
    } else {
      forward_steps<T, K, kZeroStart>(L, H, b, e, zs.data(), s.data(), p.data(), out, prod);
    }
  }
}

// out[b, t, :] += prod[b, t, :] * carry[lanes of b] for the lanes' rows, t in [t0, t1).
template <typename T>
SEQCAST_SIMD void add_carry(const Lanes<T>& L, int64_t T_, int64_t H, int64_t t0, int64_t t1,
                            const T* RESTRICT prod, const T* RESTRICT carry, T* RESTRICT out) {
  for (int64_t b = L.b0; b < L.b1; ++b) {
    const T* RESTRICT cb = carry + (b - L.b0) * H;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = (b * T_ + t) * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) out[r + j] += prod[r + j] * cb[j];
    }
  }
}

// The lanes' outputs in C time chunks (C = 1: one sequential pass).
template <typename T, int K>
void forward_lanes(const Problem<T>& P, const Lanes<T>& L, int64_t C, T* out, T* prod) {
  const int64_t T_ = P.T_, H = P.H, N = L.N;
  const int first = P.h0 != nullptr ? kAddState : kZeroStart;
  if (C == 1) return forward_range<T, K>(P, L, 0, T_, first, out, prod);
  // 1. every chunk from h = 0 (chunk 0 from h0: final already), in parallel
  for_chunks<T>(0, C, [&](int64_t c) {
    forward_range<T, K>(P, L, chunk_start(T_, C, c), chunk_start(T_, C, c + 1),
                        c == 0 ? first : kStoreProduct, out, prod);
  });
  // 2. the true state before each chunk, in order: h_end = h_local_end + P_end * h_before
  std::vector<T> carry(C * N), local(N), product(N);
  read_step(out, L, H, chunk_start(T_, C, 1) - 1, carry.data() + N);
  for (int64_t c = 2; c < C; ++c) {
    const int64_t last = chunk_start(T_, C, c) - 1;
    read_step(out, L, H, last, local.data());
    read_step(prod, L, H, last, product.data());
    const T* before = carry.data() + (c - 1) * N;
    for (int64_t n = 0; n < N; ++n) carry[c * N + n] = local[n] + product[n] * before[n];
  }
  // 3. fix-up of the later chunks, in parallel
  for_chunks<T>(1, C, [&](int64_t c) {
    add_carry(L, T_, H, chunk_start(T_, C, c), chunk_start(T_, C, c + 1), prod,
              carry.data() + c * N, out);
  });
}

}  // namespace

// out (B, T, H): h_1..h_T of MinGRU (kind 0) or MinLSTM (kind 1) on x (B, T, F) with the input
// projection (weight (G*H, F), bias (G*H)) and h0 (B, H) or None (zeros). chunks: the number of
// time chunks of the parallel scan (0: one per intra-op thread for long sequences, else 1).
Tensor min_rnn_scan_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const OptTensor& h0, int64_t kind, int64_t chunks) {
  const Checked d = check_args(x, weight, bias, h0, kind, chunks, "min_rnn_scan_forward");
  const int64_t C = resolve_chunks(chunks, d);
  Tensor out = lite::empty({d.B, d.T, d.H}, x.options());
  if (d.B == 0) return out;
  Tensor prod = C > 1 ? lite::empty({d.B, d.T, d.H}, x.options()) : Tensor();
  const Tensor z = projection(d, x, weight, bias);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_rnn_scan_forward", [&] {
    using T = scalar_t;
    const FlushDenormalsFor<T> flush;
    const Problem<T> P = make_problem<T>(d, x, weight, bias, z, h0);
    T* prod_ptr = C > 1 ? prod.data_ptr<T>() : nullptr;
    with_kind(kind, [&](auto k) {
      for (const auto& [b0, b1] : row_groups(d.B, d.T, d.widest, d.H)) {
        forward_lanes<T, decltype(k)::value>(P, make_lanes(P, b0, b1), C, out.data_ptr<T>(),
                                             prod_ptr);
      }
    });
  });
  return out;
}

}  // namespace seqcast_scan
