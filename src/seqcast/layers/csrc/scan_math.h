// The scalar math of the MinGRU/MinLSTM scan (scan.h describes the scan; scan_forward.cpp and
// scan_backward.cpp use it). float: branch-free approximations the compiler vectorises; double:
// the C library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"

namespace seqcast_scan {

using seqcast_math::bits_to_float;
using seqcast_math::exp_approx;
using seqcast_math::exp_in_range;
using seqcast_math::float_to_bits;

// The layer of a scan (the `kind` of the ops) and its number of gates.
enum Kind : int64_t { kMinGRU = 0, kMinLSTM = 1 };

constexpr int64_t gates(int64_t kind) { return kind == kMinGRU ? 2 : 3; }

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

}  // namespace seqcast_scan
