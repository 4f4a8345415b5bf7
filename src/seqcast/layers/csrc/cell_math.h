// Scalar math of the recurrent cells (lstm.cpp, gru.cpp, simple_rnn.cpp). float:
// branch-free approximations the compiler vectorises (a few ulp); double: the C library (exact
// to rounding, for reference-grade gradients). Everything here is force-inlined into the
// vectorised loops that use it, so the loops compile the same in whichever file they live.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common.h"

namespace seqcast_rnn {

// tanh(x) as a rational function on [-7.9, 7.9] (Eigen's float tanh; saturated outside).
SEQCAST_INLINE float tanh_approx(float x) {
  const float bound = 7.90531110763549805f;
  x = x < -bound ? -bound : x;
  x = x > bound ? bound : x;
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

SEQCAST_INLINE float sigmoid(float x) {
  x = x < -80.0f ? -80.0f : x;  // keeps the result a normal float (> 1e-35), never denormal
  return 1.0f / (1.0f + seqcast_math::exp_approx(-x));
}
SEQCAST_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
SEQCAST_INLINE float tanh_(float x) { return tanh_approx(x); }
SEQCAST_INLINE double tanh_(double x) { return std::tanh(x); }

// Activations of the SimpleRNN kernels (the codes of _compiled.ACTIVATIONS). The derivative is
// written in terms of the output.
enum Activation : int64_t { kLinear = 0, kTanh = 1, kSigmoid = 2, kRelu = 3 };

template <int A, typename T>
SEQCAST_INLINE T activate(T x) {
  if constexpr (A == kTanh) return tanh_(x);
  if constexpr (A == kSigmoid) return sigmoid(x);
  if constexpr (A == kRelu) return x > T(0) ? x : T(0);
  return x;
}

template <int A, typename T>
SEQCAST_INLINE T activation_grad(T y) {  // d act / d x at y = act(x)
  if constexpr (A == kTanh) return T(1) - y * y;
  if constexpr (A == kSigmoid) return y * (T(1) - y);
  if constexpr (A == kRelu) return y > T(0) ? T(1) : T(0);
  return T(1);
}

// Calls f(std::integral_constant<int, A>{}) with the activation code A as a compile-time value.
template <typename F>
void with_activation(int64_t code, F&& f) {
  switch (code) {
    case kLinear: return f(std::integral_constant<int, kLinear>{});
    case kTanh: return f(std::integral_constant<int, kTanh>{});
    case kSigmoid: return f(std::integral_constant<int, kSigmoid>{});
    case kRelu: return f(std::integral_constant<int, kRelu>{});
    default: TORCH_CHECK(false, "seqcast_rnn: unknown activation code ", code);
  }
}

}  // namespace seqcast_rnn
