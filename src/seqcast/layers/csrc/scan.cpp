// The MinGRU/MinLSTM scan's plumbing (scan.h describes the scan): the ops' argument checks,
// the lanes of a group of batch rows and the gathering of their inputs, the projection by ATen
// and the number of time chunks. The kernels and the ops are in scan_forward.cpp and
// scan_backward.cpp.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "scan.h"

namespace seqcast_scan {
namespace {

int64_t auto_chunks(int64_t T, int64_t lanes) {
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region()) return 1;
  const int64_t by_steps = T / kMinChunkSteps;
  const int64_t by_work = lanes * T / kMinChunkWork;
  return std::max<int64_t>(1, std::min({threads, by_steps, by_work}));
}

}  // namespace

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

template Lanes<float> make_lanes(const Problem<float>&, int64_t, int64_t);
template Lanes<double> make_lanes(const Problem<double>&, int64_t, int64_t);
template void gather_z(const Problem<float>&, const Lanes<float>&, int64_t, int64_t, float*,
                       float*);
template void gather_z(const Problem<double>&, const Lanes<double>&, int64_t, int64_t, double*,
                       double*);

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

Tensor projection(const Checked& d, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (d.inline_projection) return Tensor();
  return lite::addmm(bias, x.reshape({d.B * d.T, d.F}), weight.t());
}

int64_t resolve_chunks(int64_t chunks, const Checked& d) {
  const int64_t C = chunks > 0 ? chunks : auto_chunks(d.T, std::min(d.B * d.H, kMaxLanes));
  return std::max<int64_t>(1, std::min(C, d.T));
}

}  // namespace seqcast_scan
