// What every kernel file shares (through plumbing.h, and scan_math.h directly): portability macros
// and the float32 exponential their vectorised loops use. The build hashes every header of
// this directory into its flags (seqcast/layers/_compiled.py), so editing one rebuilds a cached
// extension.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define SEQCAST_HAS_MXCSR 1
#endif

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__)
#define SEQCAST_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SEQCAST_SIMD
#endif

#if defined(__GNUC__)
#define SEQCAST_INLINE inline __attribute__((always_inline))
#define RESTRICT __restrict__
#else
#define SEQCAST_INLINE inline
#define RESTRICT __restrict
#endif

namespace seqcast_math {

SEQCAST_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

SEQCAST_INLINE int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// exp(x) for x in [-87.3, 88.3]: 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, with
// Cephes' polynomial for exp(r) (a few ulp). Branch-free, so loops over it vectorise.
SEQCAST_INLINE float exp_in_range(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + magic;
  const float n = shifted - magic;
  const int32_t ni = float_to_bits(shifted) - float_to_bits(magic);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.0f) * bits_to_float((ni + 127) << 23);
}

// exp(x) for any float, clamped to [-87.3, 88.3]: -inf gives ~1e-38, never 0 or a denormal.
SEQCAST_INLINE float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  return exp_in_range(x);
}

}  // namespace seqcast_math
