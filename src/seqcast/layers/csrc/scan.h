// MinGRU / MinLSTM (seqcast/layers/scan.py) over a whole sequence for CPU, forward and backward,
// input projection included: one op per direction, so no (B, T, gates*H) tensor is written.
// Built with the recurrence kernels into one extension, whose register.cpp adds these ops to the
// seqcast_rnn library; wrapped in a torch.autograd.Function by seqcast/layers/_kernels.py.
// This header is what the scan's files share: scan_forward.cpp and scan_backward.cpp hold the
// kernels of each direction and define its op, scan.cpp the ops' argument checks, the lanes
// and their inputs, the projection by ATen and the time chunks; scan_math.h the scalar math.
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
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "plumbing.h"
#include "scan_math.h"

namespace seqcast_scan {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
namespace lite = seqcast_rnn::lite;

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

// The lanes of the batch rows [b0, b1) (scan.cpp; instantiated there for float and double).
template <typename T>
Lanes<T> make_lanes(const Problem<T>& P, int64_t b0, int64_t b1);

// Groups of batch rows of at most kMaxLanes lanes (or one row), each row's offsets 32-bit.
std::vector<std::pair<int64_t, int64_t>> row_groups(int64_t B, int64_t T, int64_t widest,
                                                    int64_t H);

// Chunk c of [0, T) among C: [T c / C, T (c + 1) / C).
inline int64_t chunk_start(int64_t T, int64_t C, int64_t c) { return T * c / C; }

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

// z of steps [t0, t1) in lanes: zs[t - t0][gate][lane] (scan.cpp; for float and double).
template <typename T>
void gather_z(const Problem<T>& P, const Lanes<T>& L, int64_t t0, int64_t t1, T* zs, T* xl);

// ---------------------------------------------------------------------------------------------
// The ops' arguments
// ---------------------------------------------------------------------------------------------

struct Checked {
  int64_t B, T, F, H, G;
  int64_t widest;  // the widest row of a step: x, z or out
  bool inline_projection;
};

// The sizes of an op's arguments, checked (TORCH_CHECK naming the op `name`).
Checked check_args(const Tensor& x, const Tensor& weight, const Tensor& bias, const OptTensor& h0,
                   int64_t kind, int64_t chunks, const char* name);

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
Tensor projection(const Checked& d, const Tensor& x, const Tensor& weight, const Tensor& bias);

// The number of time chunks: `chunks`, or automatic for 0 (auto_chunks), at most one per step.
int64_t resolve_chunks(int64_t chunks, const Checked& d);

}  // namespace seqcast_scan
