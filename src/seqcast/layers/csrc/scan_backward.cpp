// The MinGRU/MinLSTM scan's backward pass (scan.h describes the scan): the adjoint recurrence
// over the lanes of a group of batch rows, in time chunks on several threads for long
// sequences, the input projection's gradients, and the op min_rnn_scan_backward.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "ops.h"
#include "scan.h"

namespace seqcast_scan {
namespace {

// One lane of one step backwards: gamma = dy + m (m: the message a_{t+1} γ_{t+1} from the step
// after), m <- a_t gamma; dz of the step into dzt (unless MessageOnly, which multiplies aprod by
// a_t instead). hp = h_{t-1}.
template <typename T, int K, bool MessageOnly>
SEQCAST_INLINE void backward_lane(const T* RESTRICT zt, int64_t N, int64_t n, T dy, T hp,
                                  T* RESTRICT m, T* RESTRICT dzt, T* RESTRICT aprod) {
  constexpr int64_t G = gates(K);
  const T zero = T(0), one = T(1);
  T k, ef = zero, ei = zero;
  if constexpr (K == kMinGRU) {
    k = zt[n];
  } else {
    ef = exp_neg(-std::abs(zt[n]));
    ei = exp_neg(-std::abs(zt[N + n]));
    k = lstm_k(zt[n], zt[N + n], ef, ei);
  }
  T a, zg;
  sigmoid_pair(k, exp_neg(-std::abs(k)), a, zg);
  const T gamma = dy + m[n];
  m[n] = a * gamma;
  if constexpr (MessageOnly) {
    aprod[n] *= a;
  } else {
    const T xh = zt[(G - 1) * N + n];
    const T ex = exp_neg(std::min(xh, zero));
    const T r = recip_1_2(one + ex);
    const bool pos = xh >= zero;
    const T gx = pos ? xh + T(0.5) : ex * r;  // g(x̃)
    const T dg = pos ? one : ex * r * r;      // g'(x̃)
    const T gz = gamma * zg;
    const T dk = gz * a * (gx - hp);
    dzt[(G - 1) * N + n] = gz * dg;
    if constexpr (K == kMinGRU) {
      dzt[n] = dk;
    } else {
      T sf_minus, sf_plus, si_minus, si_plus;
      sigmoid_pair(zt[n], ef, sf_minus, sf_plus);
      sigmoid_pair(zt[N + n], ei, si_minus, si_plus);
      dzt[n] = -dk * sf_minus;
      dzt[N + n] = dk * si_minus;
    }
  }
}

// Steps [t0, t1) backwards over the lanes, from the message m (N; left as the message sent
// back from t0). zs (t1 - t0, G, N), dys (dL/dh_t from the output) and hps (h_{t-1}), both
// (t1 - t0, N), in; dzs (t1 - t0, G, N) out, or with MessageOnly aprod (N) multiplied by
// every a_t.
template <typename T, int K, bool MessageOnly>
SEQCAST_SIMD void backward_steps(int64_t N, int64_t steps, const T* RESTRICT zs,
                                 const T* RESTRICT dys, const T* RESTRICT hps, T* RESTRICT m,
                                 T* RESTRICT dzs, T* RESTRICT aprod) {
  constexpr int64_t G = gates(K);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* RESTRICT zt = zs + t * G * N;
    T* RESTRICT dzt = MessageOnly ? nullptr : dzs + t * G * N;
    const T* RESTRICT dyt = dys + t * N;
    const T* RESTRICT hpt = MessageOnly ? nullptr : hps + t * N;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      backward_lane<T, K, MessageOnly>(zt, N, n, dyt[n], MessageOnly ? T(0) : hpt[n], m, dzt,
                                       aprod);
    }
  }
}

// seq[b, t, :] for t in [t0, t1) and the lanes' rows b, as buf[t - t0][lane].
template <typename T>
SEQCAST_SIMD void gather_steps(const T* RESTRICT seq, const Lanes<T>& L, int64_t H, int64_t t0,
                               int64_t t1, T* RESTRICT buf) {
  const int64_t N = L.N;
  for (int64_t r = 0; r < L.b1 - L.b0; ++r) {
    const T* RESTRICT src = seq + L.row0 + L.row[r * H];
    for (int64_t t = t0; t < t1; ++t) {
      const T* RESTRICT from = src + t * H;
      T* RESTRICT to = buf + (t - t0) * N + r * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) to[j] = from[j];
    }
  }
}

// The input projection's gradients from dz of steps [t0, t1) (dzs[t - t0][gate][lane]): inline,
// into per-lane sums dbl (G, N) and dwl (F, G, N) and into dx (B, T, F) when not nullptr; else
// scattered into dz (B, T, G*H).
template <typename T>
SEQCAST_SIMD void projection_grads(const Problem<T>& P, const Lanes<T>& L, int64_t t0,
                                   int64_t t1, const T* RESTRICT dzs, T* RESTRICT dbl,
                                   T* RESTRICT dwl, T* RESTRICT dx, T* RESTRICT dz,
                                   T* RESTRICT xl) {
  const int64_t N = L.N, G = P.G, F = P.F, H = P.H;
  const int32_t* RESTRICT in = L.in.data();
  for (int64_t t = t0; t < t1; ++t) {
    const T* RESTRICT dzt = dzs + (t - t0) * G * N;
    if (dz != nullptr) {
      for (int64_t q = 0; q < G; ++q) {
        T* RESTRICT dst = dz + L.in0 + t * G * H + q * H;
        const T* RESTRICT src = dzt + q * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) dst[in[n]] = src[n];
      }
      continue;
    }
    for (int64_t q = 0; q < G; ++q) {
      T* RESTRICT acc = dbl + q * N;
      const T* RESTRICT src = dzt + q * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) acc[n] += src[n];
    }
    for (int64_t f = 0; f < F; ++f) {
      lane_inputs(P, L, t, f, xl);
      for (int64_t q = 0; q < G; ++q) {
        T* RESTRICT acc = dwl + (f * G + q) * N;
        const T* RESTRICT src = dzt + q * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) acc[n] += src[n] * xl[n];
      }
      if (dx == nullptr) continue;
      // dx[b, t, f] = sum over the lanes of row b of sum_q dz_q w_q,f
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) {
        T c = T(0);
        for (int64_t q = 0; q < G; ++q) c += dzt[q * N + n] * L.w[(f * G + q) * N + n];
        xl[n] = c;
      }
      for (int64_t b = L.b0; b < L.b1; ++b) {
        const T* RESTRICT cb = xl + (b - L.b0) * H;
        T sum = T(0);
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < H; ++j) sum += cb[j];
        dx[(b * P.T_ + t) * F + f] = sum;
      }
    }
  }
}

template <typename T>
struct BackwardIO {
  const T* dout;  // (B, T, H)
  const T* out;   // (B, T, H)
  T* dx;          // (B, T, F), or nullptr (not needed, or projection by ATen)
  T* dz;          // (B, T, G*H) (projection by ATen) or nullptr
};

// Steps [t0, t1) backwards from the incoming message m (N; updated to the message leaving t0).
// MessageOnly: also aprod (N) *= every a_t; else dz and the projection's gradients (into the
// per-lane sums dbl, dwl).
template <typename T, int K, bool MessageOnly>
void backward_range(const Problem<T>& P, const BackwardIO<T>& io, const Lanes<T>& L, int64_t t0,
                    int64_t t1, T* m, T* aprod, T* dbl, T* dwl) {
  const int64_t N = L.N, G = P.G, H = P.H;
  std::vector<T> zs(kSteps * G * N), xl(N), dys(kSteps * N);
  std::vector<T> hps(MessageOnly ? 0 : kSteps * N), dzs(MessageOnly ? 0 : kSteps * G * N);
  for (int64_t e = t1; e > t0; e -= kSteps) {
    const int64_t b = std::max(t0, e - kSteps);
    gather_z(P, L, b, e, zs.data(), xl.data());
    gather_steps(io.dout, L, H, b, e, dys.data());
    if constexpr (!MessageOnly) {  // h_{t-1}: h0 (or 0) at t = 0
      if (b == 0) {
        std::copy(L.h0.begin(), L.h0.end(), hps.begin());
        gather_steps(io.out, L, H, 0, e - 1, hps.data() + N);
      } else {
        gather_steps(io.out, L, H, b - 1, e - 1, hps.data());
      }
    }
    backward_steps<T, K, MessageOnly>(N, e - b, zs.data(), dys.data(), hps.data(), m,
                                      dzs.data(), aprod);
    if constexpr (!MessageOnly) {
      projection_grads(P, L, b, e, dzs.data(), dbl, dwl, io.dx, io.dz, xl.data());
    }
  }
}

// The lanes' backward in C time chunks; adds their projection gradients to dw (G*H, F) and
// db (G*H) (inline projection) and writes their rows of dh0 when given.
template <typename T, int K>
void backward_lanes(const Problem<T>& P, const BackwardIO<T>& io, const Lanes<T>& L, int64_t C,
                    T* dw, T* db, T* dh0) {
  const int64_t T_ = P.T_, N = L.N, G = P.G, H = P.H, F = P.F;
  const bool inline_projection = io.dz == nullptr;
  std::vector<T> msg(C * N, T(0));  // msg[c]: the message into chunk c from the chunk after
  if (C > 1) {
    // 1. the message each chunk but the first sends back from m = 0, and its product of a_t
    std::vector<T> local(C * N, T(0)), prod(C * N, T(1));
    for_chunks<T>(1, C, [&](int64_t c) {
      backward_range<T, K, true>(P, io, L, chunk_start(T_, C, c), chunk_start(T_, C, c + 1),
                                 local.data() + c * N, prod.data() + c * N, nullptr, nullptr);
    });
    // 2. the true incoming messages, last chunk first
    for (int64_t c = C - 1; c >= 1; --c) {
      for (int64_t n = 0; n < N; ++n) {
        msg[(c - 1) * N + n] = local[c * N + n] + prod[c * N + n] * msg[c * N + n];
      }
    }
  }
  // 3. the full backward of every chunk, in parallel, with per-lane sums per chunk
  const int64_t sums = inline_projection ? (G + F * G) * N : 0;
  std::vector<T> partial(C * sums, T(0));
  for_chunks<T>(0, C, [&](int64_t c) {
    T* dbl = partial.data() + c * sums;
    backward_range<T, K, false>(P, io, L, chunk_start(T_, C, c), chunk_start(T_, C, c + 1),
                                msg.data() + c * N, nullptr, dbl, dbl + G * N);
  });
  if (inline_projection) {  // chunk by chunk, lane by lane: independent of the scheduling
    for (int64_t c = 0; c < C; ++c) {
      const T* dbl = partial.data() + c * sums;
      const T* dwl = dbl + G * N;
      for (int64_t b = L.b0; b < L.b1; ++b) {
        for (int64_t q = 0; q < G; ++q) {
          for (int64_t j = 0; j < H; ++j) {
            const int64_t n = (b - L.b0) * H + j, unit = q * H + j;
            db[unit] += dbl[q * N + n];
            for (int64_t f = 0; f < F; ++f) dw[unit * F + f] += dwl[(f * G + q) * N + n];
          }
        }
      }
    }
  }
  if (dh0 != nullptr) {
    for (int64_t n = 0; n < N; ++n) dh0[L.b0 * H + n] = msg[n];
  }
}

}  // namespace

// Gradients of sum(dout * out) with respect to x (empty unless need_dx), weight, bias and h0
// (empty without h0), from the forward's inputs and its output `out`.
std::tuple<Tensor, Tensor, Tensor, Tensor> min_rnn_scan_backward(
    const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
    const OptTensor& h0, const Tensor& out, int64_t kind, int64_t chunks, bool need_dx) {
  const Checked d = check_args(x, weight, bias, h0, kind, chunks, "min_rnn_scan_backward");
  for (const Tensor* t : {&dout, &out}) {
    TORCH_CHECK(t->sizes() == at::IntArrayRef({d.B, d.T, d.H}), "min_rnn_scan_backward: dout ",
                "and out must be (batch, time, units) = (", d.B, ", ", d.T, ", ", d.H, "), got ",
                t->sizes());
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->is_contiguous() && t->device().is_cpu(),
                "min_rnn_scan_backward: dout and out must be contiguous CPU tensors of dtype ",
                x.scalar_type());
  }
  const int64_t C = resolve_chunks(chunks, d);
  const bool has_h0 = h0.has_value() && h0->defined();
  const auto opts = x.options();
  const int64_t GH = d.G * d.H;
  Tensor dweight = lite::zeros({GH, d.F}, opts), db = lite::zeros({GH}, opts);
  Tensor dh0 = has_h0 ? lite::empty({d.B, d.H}, opts) : lite::empty({0}, opts);
  Tensor dx = need_dx && d.inline_projection ? lite::empty({d.B, d.T, d.F}, opts)
                                             : lite::empty({0}, opts);
  Tensor dz = d.inline_projection ? Tensor() : lite::empty({d.B, d.T, GH}, opts);
  const Tensor z = projection(d, x, weight, bias);
  if (d.B > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_rnn_scan_backward", [&] {
      using T = scalar_t;
      const FlushDenormalsFor<T> flush;
      const Problem<T> P = make_problem<T>(d, x, weight, bias, z, h0);
      const BackwardIO<T> io{dout.data_ptr<T>(), out.data_ptr<T>(),
                             dx.numel() > 0 ? dx.data_ptr<T>() : nullptr,
                             d.inline_projection ? nullptr : dz.data_ptr<T>()};
      with_kind(kind, [&](auto k) {
        for (const auto& [b0, b1] : row_groups(d.B, d.T, d.widest, d.H)) {
          backward_lanes<T, decltype(k)::value>(P, io, make_lanes(P, b0, b1), C,
                                                dweight.data_ptr<T>(), db.data_ptr<T>(),
                                                has_h0 ? dh0.data_ptr<T>() : nullptr);
        }
      });
    });
  }
  if (!d.inline_projection) {  // dz (B, T, G*H) -> the projection's gradients by ATen
    const Tensor rows = dz.reshape({d.B * d.T, GH});
    dweight = lite::mm(rows.t(), x.reshape({d.B * d.T, d.F}));
    db = rows.sum(0);
    if (need_dx) dx = lite::mm(rows, weight).reshape({d.B, d.T, d.F});
  }
  return {dx, dweight, db, dh0};
}

}  // namespace seqcast_scan
