// MinGRU / MinLSTM (seqcast/layers/scan.py) over a whole sequence for CPU, forward and backward,
// input projection included: one op per direction, so no (B, T, gates*H) tensor is written.
// Built with the recurrence kernels into one extension, whose register.cpp adds these ops to the
// seqcast_rnn library; wrapped in a torch.autograd.Function by seqcast/layers/_compiled.py.
//
// Both layers are h_t = a_t h_{t-1} + b_t with a_t = σ(-k_t), b_t = σ(k_t) g(x̃_t), where
// z = x W^T + bias = (k, x̃) for MinGRU and (k_f, k_i, x̃) for MinLSTM with
// k = softplus(-k_f) - softplus(-k_i) = log(i / f). With u_t = log(b_t / a_t) = k_t + log g(x̃_t):
//
//   log h_t = log a_t + logaddexp(log h_{t-1}, u_t)
//           = max(log h_{t-1}, u_t) - max(k_t, 0) + log((1 + e^{-|log h_{t-1} - u_t|})
//                                                      / (1 + e^{-|k_t|}))
//
// The scan runs that recurrence in log space from h = 0 (log h = -inf). An initial state is
// added outside the log, h_t = exp(log h_t) + P_t h_0 with P_t = a_1 ... a_t, which is exact and
// lets h_0 be any real value. A time chunk of the parallel scan is the same computation with
// the state at the chunk's start as its h_0: chunks run on separate threads from h = 0, and a
// fix-up adds P_t (local to the chunk) times the true state before it.
//
// The backward pass is the adjoint of the linear recurrence: with γ_t = dL/dh_t (all paths),
// γ_t = dy_t + a_{t+1} γ_{t+1}, and per step
//   dk = γ_t a_t σ(k_t) (g(x̃_t) - h_{t-1}),   dx̃ = γ_t σ(k_t) g'(x̃_t),   dh_0 = a_1 γ_1
// (MinLSTM: dk_f = -dk σ(-k_f), dk_i = dk σ(-k_i)). It needs only the outputs h from the
// forward; z is recomputed. Time chunks first find each chunk's outgoing message with a
// cheaper pass, then run the full backward from the right incoming one.
//
// Layout: the (batch row, unit) pairs of a group of rows are the lanes of the vector loops
// (lane n = (b - b0) H + j), so a step's math runs over B*H contiguous values however small H
// is. The projection z of kSteps steps is computed in that layout (x gathered per lane), and
// outputs, dy and h_{t-1} are scattered and gathered per lane with 32-bit offsets. With more
// than 32 input features the projection is one ATen matrix product instead, and so are its
// gradients (from a (B, T, G*H) dz). Float32 uses vectorisable approximations of exp, log and
// 1/x (a few ulp; the sequential log-space recurrence contracts, so rounding does not
// accumulate) and runs with denormals flushed to zero; float64 uses the C library.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "ops.h"
#include "plumbing.h"

namespace seqcast_scan {
namespace {

using namespace seqcast_math;

using at::Tensor;
using OptTensor = std::optional<Tensor>;
namespace lite = seqcast_rnn::lite;

enum Kind : int64_t { kMinGRU = 0, kMinLSTM = 1 };

constexpr int64_t gates(int64_t kind) { return kind == kMinGRU ? 2 : 3; }

// ---------------------------------------------------------------------------------------------
// Scalar math. float: branch-free approximations the compiler vectorises; double: the C library.
// ---------------------------------------------------------------------------------------------


// log(x) for a normal, finite x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)); Cephes' logf
// polynomial for log(m) (a few ulp).
SEQCAST_INLINE float log_approx(float x) {
  const int32_t bits = float_to_bits(x);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  float m = bits_to_float((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  m = (low ? m + m : m) - 1.0f;
  const float m2 = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * m2;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * m2;
  return m + y + e * 0.693359375f;
}

SEQCAST_INLINE float exp_(float x) { return exp_approx(x); }
SEQCAST_INLINE double exp_(double x) { return std::exp(x); }

// exp(x) for x <= 0 or -inf (the scan's exponentials are all e^{-|.|} or e^{min(., 0)}).
SEQCAST_INLINE float exp_neg(float x) { return exp_in_range(x < -87.3f ? -87.3f : x); }
SEQCAST_INLINE double exp_neg(double x) { return std::exp(x); }

// 1 / d for d in [1, 2]. float: a quadratic (1.2% relative) and two Newton steps (2e-8), which
// pipeline where a vector division would hold its unit for ~10 cycles; double: the division.
SEQCAST_INLINE float recip_1_2(float d) {
  float r = (0.31433198f * d - 1.42705108f) * d + 2.10099456f;
  r = r * (2.0f - d * r);
  return r * (2.0f - d * r);
}
SEQCAST_INLINE double recip_1_2(double d) { return 1.0 / d; }

// log((1 + e1) / (1 + e2)) for e1, e2 in [0, 1]. float: 2 atanh(w), w = (e1 - e2) / (2 + e1 + e2),
// |w| <= 1/3, with a minimax polynomial in w^2 (1.2e-8 absolute); double: log1p(e1) - log1p(e2).
SEQCAST_INLINE float log_ratio(float e1, float e2) {
  const float w = (e1 - e2) * 0.5f * recip_1_2(1.0f + 0.5f * (e1 + e2));
  const float w2 = w * w;
  float p = 0.1364035040f;
  p = p * w2 + 0.1407345750f;
  p = p * w2 + 0.2000646006f;
  p = p * w2 + 0.3333328023f;
  return 2.0f * w + 2.0f * w * w2 * p;
}
SEQCAST_INLINE double log_ratio(double e1, double e2) { return std::log1p(e1) - std::log1p(e2); }

// log g(x), g(x) = x + 0.5 (x >= 0), σ(x) (x < 0); ex = exp(min(x, 0)).
SEQCAST_INLINE float log_g(float x, float ex) {
  const float l = log_approx(x >= 0.0f ? x + 0.5f : 1.0f + ex);
  return x >= 0.0f ? l : x - l;
}
SEQCAST_INLINE double log_g(double x, double ex) {
  return x >= 0.0 ? std::log(x + 0.5) : x - std::log1p(ex);
}

// k = softplus(-k_f) - softplus(-k_i) (MinLSTM's log(i / f)), from e_f = exp(-|k_f|), e_i.
template <typename T>
SEQCAST_INLINE T lstm_k(T kf, T ki, T ef, T ei) {
  const T zero = T(0);
  return std::max(-kf, zero) - std::max(-ki, zero) + log_ratio(ef, ei);
}

// σ(-k) and σ(k) from e = exp(-|k|), both without cancellation.
template <typename T>
SEQCAST_INLINE void sigmoid_pair(T k, T e, T& s_minus, T& s_plus) {
  const T r = recip_1_2(T(1) + e);
  s_minus = k >= T(0) ? e * r : r;
  s_plus = k >= T(0) ? r : e * r;
}

// The gate input k of a step (MinLSTM: from k_f, k_i) and, for the backward, σ(-k_f), σ(-k_i).
template <typename T, int K>
SEQCAST_INLINE T gate_input(const T* RESTRICT zt, int64_t N, int64_t n) {
  if constexpr (K == kMinGRU) {
    return zt[n];
  } else {
    const T kf = zt[n], ki = zt[N + n];
    return lstm_k(kf, ki, exp_neg(-std::abs(kf)), exp_neg(-std::abs(ki)));
  }
}

// ---------------------------------------------------------------------------------------------
// Denormals and threads
// ---------------------------------------------------------------------------------------------

// Float32 work runs with denormals flushed to zero (FTZ/DAZ, see FlushDenormals in plumbing.h):
// the vanishing messages of a long backward pass otherwise reach denormal floats, whose
// arithmetic is ~100 times slower. Set on the thread that does the work and restored after it:
// the calling thread, and each task of a chunked pass (so no extra hand-off to the thread pool
// is needed).
template <typename T>
struct FlushDenormalsFor : seqcast_rnn::FlushDenormals {
  FlushDenormalsFor() : FlushDenormals(c10::CppTypeToScalarType<T>::value) {}
};

// f(c) for every chunk c in [begin, end), on torch's intra-op threads (inline with one).
template <typename T, typename F>
void for_chunks(int64_t begin, int64_t end, const F& f) {
  at::parallel_for(begin, end, 1, [&](int64_t c0, int64_t c1) {
    const FlushDenormalsFor<T> flush;
    for (int64_t c = c0; c < c1; ++c) f(c);
  });
}

// ---------------------------------------------------------------------------------------------
// Problem, lanes and blocks
// ---------------------------------------------------------------------------------------------

constexpr int64_t kSteps = 16;             // steps of z gathered per block
constexpr int64_t kMaxLanes = 1024;        // lanes (rows * H) per group of batch rows
constexpr int64_t kInlineFeatures = 32;    // up to this many input features (and a weight of up
constexpr int64_t kInlineWeight = 16384;   // to this many values) the projection runs inline
// Automatic time chunks (one per thread) need at least this many steps and lanes * steps each:
// ~2 ms of float32 work, as a join with a thread that a busy machine has not scheduled can cost
// milliseconds (measured: 1.9 -> 24 ms a call at 0.65M lanes * steps on 2 shared cores).
constexpr int64_t kMinChunkSteps = 256;
constexpr int64_t kMinChunkWork = int64_t(1) << 20;

template <typename T>
struct Problem {
  int64_t B, T_, F, H, G;  // G: gates (2 MinGRU, 3 MinLSTM)
  const T* x;              // (B, T, F)
  const T* w;              // (G*H, F)
  const T* bias;           // (G*H)
  const T* z;              // (B, T, G*H) projection computed beforehand, or nullptr (inline)
  const T* h0;             // (B, H) or nullptr
};

// The lanes of the batch rows [b0, b1): lane n = (b - b0) H + j is unit j of row b. Offsets
// are 32-bit (so that gathers vectorise) and relative to row b0: in0 + in[n] is lane n's input
// at t = 0 in x (offset b T F) or z (b T G H + j), row0 + row[n] its place in a (B, T, H)
// sequence (b T H + j).
template <typename T>
struct Lanes {
  int64_t b0, b1, N, in0, row0;
  std::vector<int32_t> in, row;
  std::vector<T> bias;                 // (G, N): lane n's bias per gate (inline projection)
  std::vector<T> w;                    // (F, G, N): lane n's weights (inline projection)
  std::vector<T> h0;                   // (N): h0, or zeros
};

template <typename T>
Lanes<T> make_lanes(const Problem<T>& P, int64_t b0, int64_t b1) {
  const int64_t H = P.H, G = P.G, F = P.F, N = (b1 - b0) * H;
  const bool inline_projection = P.z == nullptr;
  const int64_t in_width = inline_projection ? F : G * H;
  Lanes<T> L{b0,
             b1,
             N,
             b0 * P.T_ * in_width,
             b0 * P.T_ * H,
             std::vector<int32_t>(N),
             std::vector<int32_t>(N),
             {},
             {},
             std::vector<T>(N, T(0))};
  if (inline_projection) {
    L.bias.resize(G * N);
    L.w.resize(F * G * N);
  }
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t j = 0; j < H; ++j) {
      const int64_t n = (b - b0) * H + j;
      L.row[n] = static_cast<int32_t>((b - b0) * P.T_ * H + j);
      L.in[n] = static_cast<int32_t>((b - b0) * P.T_ * in_width + (inline_projection ? 0 : j));
      if (P.h0 != nullptr) L.h0[n] = P.h0[b * H + j];
      if (!inline_projection) continue;
      for (int64_t q = 0; q < G; ++q) {
        L.bias[q * N + n] = P.bias[q * H + j];
        for (int64_t f = 0; f < F; ++f) L.w[(f * G + q) * N + n] = P.w[(q * H + j) * F + f];
      }
    }
  }
  return L;
}

// Groups of batch rows of at most kMaxLanes lanes (or one row), each row's offsets 32-bit.
std::vector<std::pair<int64_t, int64_t>> row_groups(int64_t B, int64_t T, int64_t widest,
                                                    int64_t H) {
  const int64_t max_offset = std::numeric_limits<int32_t>::max();
  const int64_t rows = std::max<int64_t>(1, std::min(kMaxLanes / H, max_offset / (T * widest)));
  std::vector<std::pair<int64_t, int64_t>> groups;
  for (int64_t b0 = 0; b0 < B; b0 += rows) groups.emplace_back(b0, std::min(B, b0 + rows));
  return groups;
}

// Chunk c of [0, T) among C: [T c / C, T (c + 1) / C).
int64_t chunk_start(int64_t T, int64_t C, int64_t c) { return T * c / C; }

int64_t auto_chunks(int64_t T, int64_t lanes) {
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region()) return 1;
  const int64_t by_steps = T / kMinChunkSteps;
  const int64_t by_work = lanes * T / kMinChunkWork;
  return std::max<int64_t>(1, std::min({threads, by_steps, by_work}));
}

// x[b, t, f] over the H lanes of each row b (inline projection).
template <typename T>
SEQCAST_INLINE void lane_inputs(const Problem<T>& P, const Lanes<T>& L, int64_t t, int64_t f,
                                T* RESTRICT xl) {
  const int64_t H = P.H;
  const T* RESTRICT src = P.x + L.in0 + t * P.F + f;
  for (int64_t r = 0; r < L.b1 - L.b0; ++r) {
    const T v = src[L.in[r * H]];
    T* RESTRICT dst = xl + r * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) dst[j] = v;
  }
}

// z of steps [t0, t1) in lanes: zs[t - t0][gate][lane].
template <typename T>
SEQCAST_SIMD void gather_z(const Problem<T>& P, const Lanes<T>& L, int64_t t0, int64_t t1,
                           T* RESTRICT zs, T* RESTRICT xl) {
  const int64_t N = L.N, G = P.G, F = P.F, H = P.H;
  const int32_t* RESTRICT in = L.in.data();
  for (int64_t t = t0; t < t1; ++t) {
    T* RESTRICT zt = zs + (t - t0) * G * N;
    if (P.z != nullptr) {
      for (int64_t q = 0; q < G; ++q) {
        const T* RESTRICT src = P.z + L.in0 + t * G * H + q * H;
        T* RESTRICT dst = zt + q * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) dst[n] = src[in[n]];
      }
      continue;
    }
    for (int64_t f = 0; f < F; ++f) {
      lane_inputs(P, L, t, f, xl);
      for (int64_t q = 0; q < G; ++q) {
        T* RESTRICT dst = zt + q * N;
        const T* RESTRICT wq = L.w.data() + (f * G + q) * N;
        if (f == 0) {
          const T* RESTRICT bq = L.bias.data() + q * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) dst[n] = bq[n] + xl[n] * wq[n];
        } else {
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) dst[n] += xl[n] * wq[n];
        }
      }
    }
  }
}

// seq[b, t, j] of one step t for the lanes <-> lanes[n].
template <typename T>
void read_step(const T* seq, const Lanes<T>& L, int64_t H, int64_t t, T* lanes) {
  for (int64_t n = 0; n < L.N; ++n) lanes[n] = seq[L.row0 + L.row[n] + t * H];
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------

struct Checked {
  int64_t B, T, F, H, G;
  int64_t widest;  // the widest row of a step: x, z or out
  bool inline_projection;
};

Checked check_args(const Tensor& x, const Tensor& weight, const Tensor& bias, const OptTensor& h0,
                   int64_t kind, int64_t chunks, const char* name) {
  TORCH_CHECK(kind == kMinGRU || kind == kMinLSTM, name, ": kind must be 0 (MinGRU) or 1 ",
              "(MinLSTM), got ", kind);
  const int64_t G = kind == kMinGRU ? 2 : 3;
  TORCH_CHECK(x.dim() == 3, name, ": x must be (batch, time, features), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, name,
              ": float32 or float64 only, got ", x.scalar_type());
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2);
  TORCH_CHECK(T >= 1, name, ": the sequence must have at least one step");
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == F && weight.size(0) % G == 0 &&
                  weight.size(0) > 0,
              name, ": weight must be (", G, "*units, ", F, "), got ", weight.sizes());
  const int64_t H = weight.size(0) / G;
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == G * H, name, ": bias must be (", G * H,
              ",), got ", bias.sizes());
  TORCH_CHECK(chunks >= 0, name, ": chunks must be >= 0 (0: automatic), got ", chunks);
  std::vector<const Tensor*> all{&x, &weight, &bias};
  if (h0.has_value() && h0->defined()) {
    TORCH_CHECK(h0->dim() == 2 && h0->size(0) == B && h0->size(1) == H, name,
                ": h0 must be (batch, units) = (", B, ", ", H, "), got ", h0->sizes());
    all.push_back(&*h0);
  }
  for (const Tensor* t : all) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), name, ": all tensors must have dtype ",
                x.scalar_type(), ", got ", t->scalar_type());
    TORCH_CHECK(t->is_contiguous(), name, ": tensors must be contiguous");
    TORCH_CHECK(t->device().is_cpu(), name, ": tensors must be on the CPU");
  }
  const bool inline_projection = F <= kInlineFeatures && F * G * H <= kInlineWeight;
  const int64_t widest = std::max(F, G * H);
  TORCH_CHECK(T * widest <= std::numeric_limits<int32_t>::max(), name, ": one sequence of ",
              T, " steps of ", widest, " values is too long (2^31 values at most)");
  return {B, T, F, H, G, widest, inline_projection};
}

template <typename F>
void with_kind(int64_t kind, F&& f) {
  if (kind == kMinGRU) return f(std::integral_constant<int, kMinGRU>{});
  return f(std::integral_constant<int, kMinLSTM>{});
}

template <typename T>
Problem<T> make_problem(const Checked& d, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const Tensor& z, const OptTensor& h0) {
  const bool has_h0 = h0.has_value() && h0->defined();
  return {d.B, d.T, d.F, d.H, d.G, x.data_ptr<T>(), w.data_ptr<T>(), bias.data_ptr<T>(),
          d.inline_projection ? nullptr : z.data_ptr<T>(), has_h0 ? h0->data_ptr<T>() : nullptr};
}

// The projection z = x W^T + bias by ATen, (B*T, G*H), when it does not run inline.
Tensor projection(const Checked& d, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (d.inline_projection) return Tensor();
  return lite::addmm(bias, x.reshape({d.B * d.T, d.F}), weight.t());
}

int64_t resolve_chunks(int64_t chunks, const Checked& d) {
  const int64_t C = chunks > 0 ? chunks : auto_chunks(d.T, std::min(d.B * d.H, kMaxLanes));
  return std::max<int64_t>(1, std::min(C, d.T));
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
