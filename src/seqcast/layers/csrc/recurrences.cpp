// Whole recurrences, forward and backward, for CPU: the time loop runs here so no Python runs
// per step. Built and loaded lazily by seqcast/layers/_compiled.py; each forward/backward op
// pair has its autograd node, written in C++, in autograd.cpp.
//
// Conventions (contiguous, float32 or float64, on the CPU; batch-first except the LSTM's, which
// are step-major, see its section):
//   xproj (B, T, G*H)  input projection of every step, input bias included
//   w_hh  (G*H, H)     torch's layout: the recurrent product is hm @ w_hh^T
//   rmask (B, H)       optional recurrent-dropout mask: hm = h * rmask feeds the recurrent
//                      product; the carried state is never masked (None = a mask of ones)
//   h0, c0 (B, H)
//
// Every step does one matrix product with w_hh (ATen -> BLAS, into a preallocated buffer; at
// these sizes BLAS measured faster than plain loops) and one pass of plain C++ over the step's
// elements, split over torch's intra-op threads when the step is large. The elementwise passes
// are compiled for three instruction sets (target_clones) and chosen at load time, so a cached
// build runs on any x86-64 CPU. The backward loop stores the pre-activation gradient of every
// step in dxproj (xproj enters linearly), and dw_hh is one matrix product over all B*T rows
// after the loop.
//
// The "carry" buffer of a backward pass holds the part of dL/dh_{t-1} that does not go through
// the recurrent product (dh_T at the start, z*dh for the GRU); "dhm" holds dL/d(hm_{t-1}) from
// the step's recurrent product. The gradient reaching h_{t-1} is dout_{t-1} + carry + m * dhm.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__linux__)
#include <sys/mman.h>
#define SEQCAST_BUFFER_CACHE 1
#endif

#include "common.h"
#include "ops.h"

namespace seqcast_rnn {
namespace {

using namespace seqcast_math;

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// ---------------------------------------------------------------------------------------------
// Scalar math. float: branch-free approximations the compiler vectorises (a few ulp); double:
// the C library (exact to rounding, for reference-grade gradients).
// ---------------------------------------------------------------------------------------------


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
  return 1.0f / (1.0f + exp_approx(-x));
}
SEQCAST_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
SEQCAST_INLINE float tanh_(float x) { return tanh_approx(x); }
SEQCAST_INLINE double tanh_(double x) { return std::tanh(x); }

// Activations of the SimpleRNN kernels. The derivative is written in terms of the output.
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

// ---------------------------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------------------------

struct Dims {
  int64_t B, T, H;
};

Dims check_inputs(const Tensor& xproj, const Tensor& w_hh, const Tensor& h0, int64_t gates,
                  const char* name) {
  TORCH_CHECK(xproj.dim() == 3, name, ": xproj must be (batch, time, ", gates,
              "*units), got ", xproj.sizes());
  TORCH_CHECK(xproj.device().is_cpu(), name, ": tensors must be on the CPU");
  TORCH_CHECK(xproj.scalar_type() == at::kFloat || xproj.scalar_type() == at::kDouble, name,
              ": float32 or float64 only, got ", xproj.scalar_type());
  const int64_t B = xproj.size(0), T = xproj.size(1), H = w_hh.size(-1);
  TORCH_CHECK(T >= 1, name, ": the sequence must have at least one step");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == gates * H, name, ": w_hh must be (",
              gates, "*units, units), got ", w_hh.sizes());
  TORCH_CHECK(xproj.size(2) == gates * H, name, ": xproj must have ", gates * H,
              " features, got ", xproj.size(2));
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == H, name,
              ": h0 must be (batch, units) = (", B, ", ", H, "), got ", h0.sizes());
  for (const Tensor* t : {&xproj, &w_hh, &h0}) {
    TORCH_CHECK(t->scalar_type() == xproj.scalar_type(), name, ": all tensors must have dtype ",
                xproj.scalar_type());
    TORCH_CHECK(t->is_contiguous(), name, ": tensors must be contiguous");
    TORCH_CHECK(t->device().is_cpu(), name, ": tensors must be on the CPU");
  }
  return {B, T, H};
}

// `t` if given (checked to match `fallback` in shape and dtype), else `fallback`.
Tensor or_default(const OptTensor& t, const Tensor& fallback, const char* what) {
  if (!t.has_value() || !t->defined()) return fallback;
  TORCH_CHECK(t->sizes() == fallback.sizes(), what, " must have shape ", fallback.sizes(),
              ", got ", t->sizes());
  TORCH_CHECK(t->scalar_type() == fallback.scalar_type(), what, " must have dtype ",
              fallback.scalar_type());
  TORCH_CHECK(t->is_contiguous() && t->device().is_cpu(), what, " must be contiguous on the CPU");
  return *t;
}

Tensor mask_or_ones(const OptTensor& rmask, const Tensor& h0) {
  return or_default(rmask, at::ones_like(h0), "rmask");
}

// Float32 ops run with denormals flushed to zero (FTZ/DAZ), restored on exit: the vanishing
// gradients of a long sequence (say a loss on the last state only) otherwise reach denormal
// floats, whose arithmetic is ~100 times slower (measured: a 6x slower backward at T=500).
// Values below 1.2e-38 become 0. When the op is large enough to use torch's intra-op threads
// (where BLAS runs its products too), the mode is set on each of them as well, each thread
// restoring its own on exit. Float64 ops run unchanged.
class FlushDenormals {
 public:
  FlushDenormals(at::ScalarType dtype, bool all_threads)
      : active_(dtype == at::kFloat), all_threads_(all_threads) {
    if (active_) apply(true);
  }
  ~FlushDenormals() {
    if (active_) apply(false);
  }

 private:
  void apply(bool enter) const {
#if defined(SEQCAST_HAS_MXCSR)
    static thread_local unsigned saved = 0;
    const auto set = [enter] {
      if (enter) saved = _mm_getcsr();
      _mm_setcsr(enter ? saved | 0x8040u : saved);
    };
    set();  // this thread, then each other thread of the team once
    if (all_threads_) {
      at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
        if (at::get_thread_num() != 0) set();
      });
    }
#endif
  }
  bool active_, all_threads_;
};

// Runs f(b0, b1) over ranges of the B rows of a step: on torch's intra-op threads when a step
// has enough elementwise work to pay for the hand-off, else inline. Work that accumulates over
// rows goes to the partial sums of the running thread.
constexpr int64_t kMinElementsPerThread = 16384;

template <typename F>
void for_rows(int64_t B, int64_t row_width, const F& f) {
  const int64_t rows_per_thread = kMinElementsPerThread / std::max<int64_t>(1, row_width);
  at::parallel_for(0, B, std::max<int64_t>(1, rows_per_thread), f);
}

// Whether an op's steps may run on several threads: in for_rows, or in BLAS, whose products
// of a step, (B, H) @ (H, G*H), go parallel from about a million multiply-adds.
bool may_use_threads(int64_t B, int64_t gate_width, int64_t H) {
  return at::get_num_threads() > 1 &&
         (B * gate_width >= 2 * kMinElementsPerThread || B * gate_width * H >= (1 << 20));
}

// The partial-sum slot of the running thread, among `slots` = at::get_num_threads() made
// before the loop. (Run inline inside an outer parallel region, the thread number may be any;
// then this call is the only user of its slots.)
int64_t thread_slot(int64_t slots) {
  return std::min<int64_t>(at::get_thread_num(), slots - 1);
}

// Whole-sequence buffers (saved activations, dxproj) are the only large memory the kernels
// touch. Fresh from the system they cost more than the arithmetic: each call would fault in
// and zero ~100 MB page by page (measured: a sixth of a large GRU's time, with erratic spikes
// when other processes load the memory bus). So large buffers are mapped here on transparent
// huge pages (where the system allows, THP "madvise" mode), and a freed buffer is kept, up to
// kKeptBytes, for the next call that asks for the same size. A kept buffer is marked
// MADV_FREE: the system may still take its pages back under memory pressure. (Linux only;
// elsewhere buffers come from at::empty.)
#if defined(SEQCAST_BUFFER_CACHE)
class BufferCache {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kKeptBytes = size_t(512) << 20;

  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: buffers may outlive it
    return *cache;
  }

  // A 2 MB aligned block of `bytes` (a multiple of kHugePage), or nullptr.
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->second == bytes) {
          void* block = it->first;
          kept_.erase(it);
          kept_bytes_ -= bytes;
          return block;
        }
      }
    }
    return map(bytes);
  }

  void give(void* block, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (kept_bytes_ + bytes <= kKeptBytes) {
#if defined(MADV_FREE)
        madvise(block, bytes, MADV_FREE);
#endif
        kept_.emplace_back(block, bytes);
        kept_bytes_ += bytes;
        return;
      }
    }
    munmap(block, bytes);
  }

 private:
  static void* map(size_t bytes) {
    const size_t mapped = bytes + kHugePage;  // room to align the start to a huge page
    void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    const uintptr_t first = reinterpret_cast<uintptr_t>(base);
    const uintptr_t start = (first + kHugePage - 1) & ~(kHugePage - 1);
    if (start > first) munmap(base, start - first);
    if (start + bytes < first + mapped) {
      munmap(reinterpret_cast<void*>(start + bytes), first + mapped - start - bytes);
    }
    void* block = reinterpret_cast<void*>(start);
#if defined(MADV_HUGEPAGE)
    madvise(block, bytes, MADV_HUGEPAGE);
#endif
    return block;
  }

  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> kept_;
  size_t kept_bytes_ = 0;
};
#endif

// An uninitialised tensor for a whole-sequence buffer (large ones from BufferCache).
Tensor empty_buffer(at::IntArrayRef sizes, const at::TensorOptions& options) {
#if defined(SEQCAST_BUFFER_CACHE)
  const size_t bytes = c10::multiply_integers(sizes) * options.dtype().itemsize();
  if (bytes >= 4 * BufferCache::kHugePage) {
    const size_t rounded =
        (bytes + BufferCache::kHugePage - 1) / BufferCache::kHugePage * BufferCache::kHugePage;
    if (void* block = BufferCache::instance().take(rounded)) {
      return at::from_blob(
          block, sizes, [rounded](void* p) { BufferCache::instance().give(p, rounded); },
          options);
    }
  }
#endif
  return at::empty(sizes, options);
}

// Rows of a (B, ..., width) tensor at time t: pointer to row 0 and the stride between rows.
template <typename T>
struct Rows {
  T* ptr;
  int64_t stride;
  T* row(int64_t b) const { return ptr + b * stride; }
};

template <typename T>
Rows<T> step_rows(const Tensor& seq, int64_t t) {  // seq (B, T, W) -> seq[:, t, :]
  return {seq.data_ptr<std::remove_const_t<T>>() + t * seq.size(2), seq.size(1) * seq.size(2)};
}

template <typename T>
Rows<T> matrix_rows(const Tensor& m) {  // m (B, W)
  return {m.data_ptr<std::remove_const_t<T>>(), m.size(1)};
}

// The state before step t: h0 (or c0) at t = 0, else out[:, t-1] (or cs[:, t-1]).
template <typename T>
Rows<T> previous_state(const Tensor& h0, const Tensor& out, int64_t t) {
  return t == 0 ? matrix_rows<T>(h0) : step_rows<T>(out, t - 1);
}

// dW = sum over all (b, t) of dz[b, t]^T @ input[b, t]: dz (B, T, >= col0 + cols) narrowed to
// columns [col0, col0 + cols), input (B, T, H). One matrix product over all B*T rows.
Tensor weight_grad(const Tensor& dz, int64_t col0, int64_t cols, const Tensor& input) {
  const Tensor dz_rows = dz.reshape({-1, dz.size(2)}).narrow(1, col0, cols);
  return at::mm(dz_rows.t(), input.reshape({-1, input.size(2)}));
}

// dW_hh = sum over all (b, t) of dz[b, t]^T @ hm_{t-1}[b], hm_{t-1} = (h0 or out[:, t-1]) * m.
Tensor recurrent_weight_grad(const Tensor& dz, int64_t col0, int64_t cols, const Tensor& h0,
                             const Tensor& out, const OptTensor& rmask) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  if (rmask.has_value() && rmask->defined()) {  // the previous states, masked, as one tensor
    Tensor prev = empty_buffer(out.sizes(), out.options());
    prev.select(1, 0).copy_(h0);
    prev.narrow(1, 1, T - 1).copy_(out.narrow(1, 0, T - 1));
    prev.mul_(rmask->unsqueeze(1));
    return weight_grad(dz, col0, cols, prev);
  }
  // Unmasked, h_{t-1}[b] is the row before dz[b, t]'s in out's (B*T, H) rows, except at t = 0:
  // pair every row of dz with the previous row of out (no copy), then swap the B - 1 wrong
  // pairs (out[b-1, T-1] with dz[b, 0]) for the right ones (h0[b] with dz[b, 0]).
  const Tensor dz_rows = dz.reshape({-1, dz.size(2)}).narrow(1, col0, cols);
  const Tensor out_rows = out.reshape({-1, H});
  Tensor dw = at::mm(dz_rows.narrow(0, 1, B * T - 1).t(), out_rows.narrow(0, 0, B * T - 1));
  const Tensor dz_first = dz.select(1, 0).narrow(1, col0, cols);  // (B, cols)
  dw.addmm_(dz_first.t(), h0);
  if (B > 1) {
    dw.addmm_(dz_first.narrow(0, 1, B - 1).t(), out.select(1, T - 1).narrow(0, 0, B - 1), 1, -1);
  }
  return dw;
}

// ---------------------------------------------------------------------------------------------
// LSTM layer (gate order i, f, g, o; optional peepholes p = (p_i, p_f, p_o), rows of (3, H)),
// input projection included, so the whole layer is one autograd node:
//   z_t = Wcat u_t + b,   Wcat = [W_hh | W_ih] (4H, H+F),   u_t = [hm_{t-1}; x_t] (H+F, B)
//   i = σ(z_i + p_i c_{t-1}), f = σ(z_f + p_f c_{t-1}), g = tanh(z_g)
//   c_t = f c_{t-1} + i g, o = σ(z_o + p_o c_t), h_t = o tanh(c_t), hm_t = h_t m
//
// Layout: step-major, batch innermost. Inputs xs (T, F, B), outputs out and cs (T, H, B),
// saved gates (T, 4H, B) = activated (i, f, g, o) and U (T, H+F, B) = every u_t (the forward
// writes hm_t straight into u_{t+1}). A forward step is one matrix product and one elementwise
// pass; a backward step two products, dU = Wcat^T dz_t (dL/dhm_{t-1} and dL/dx_t at once)
// and dWcat += dz_t u_t^T, and one elementwise pass. The layer keeps this layout between
// stacked layers (its output is a (B, T, H) view of (T, H, B) memory), so nothing is
// transposed on the way.
//
// Batch columns never interact, so with several intra-op threads the batch is cut into
// column blocks (multiples of 16 where possible) that run the whole time loop independently:
// one fork and join per call rather than one per step. Weight gradients are summed per block
// and added in block order, so results do not depend on the thread count's scheduling.
//
// Products go to BLAS directly: at batch 32 and 20 units a step's product takes about a
// microsecond, as long as an ATen dispatch (through ATen when the BLAS symbols are absent).
// ---------------------------------------------------------------------------------------------

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
  const Tensor product = at::mm(view(A, trans_a, M, K, lda), view(B, trans_b, K, N, ldb));
  if (beta == T(0)) {
    c.copy_(product);
  } else {
    c.add_(product);
  }
}

// Column blocks of the batch: one per thread when the call is large enough to pay for a fork
// and join (about 16M multiply-adds: a 2-layer LSTM(20) step at batch 32 stays on one thread,
// where a busy second core measured up to 100x slower through the join). Inside a block, BLAS
// sees the OpenMP region and runs on the block's thread only.
struct ColumnBlocks {
  int64_t width, count;
  ColumnBlocks(int64_t B, int64_t work_per_column) {
    const int64_t threads = at::get_num_threads();
    width = B;
    if (threads > 1 && B >= 16 && work_per_column * B >= (int64_t(1) << 24)) {
      const int64_t even = (B + threads - 1) / threads;
      width = std::min(B, (even + 15) / 16 * 16);
    }
    count = (B + width - 1) / width;
  }
  template <typename F>
  void run(int64_t B, const F& f) const {  // f(block index, b0, b1)
    if (count == 1) return f(0, 0, B);
    at::parallel_for(0, count, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) f(k, k * width, std::min(B, (k + 1) * width));
    });
  }
};

template <typename T>
struct LstmParams {
  int64_t H, B;
  const T* bias;  // (4H) or nullptr
  const T* peep;  // (3H) or nullptr
  const T* mask;  // (H, B) or nullptr
  // The same values broadcast over the batch, (4H, B) and (3H, B), or nullptr: with them a
  // whole step's elementwise pass is one flat loop over H*B values. (Per unit, the loop over
  // the batch is 2 vectors long at B = 32, and each unit's dependency chain of exp and
  // divisions then runs with little else to overlap it: the flat loop measured 23% faster.)
  const T* bias_plane;
  const T* peep_plane;
};

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

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
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

// One LSTM layer's forward pass over a sequence, step by step: the single-layer op runs its
// steps in a loop, the stack op interleaves the steps of several layers. Step t reads u_t
// (rows [0, H): hm_{t-1}; rows [H, R): x_t) and writes gates_t, c_t, h_t and hm_t into u_{t+1}.
// h_t goes to h_out + t * h_stride: the layer's own output, or rows [H', R') of the next
// layer's u_t in a stack (whose input it is).
template <typename T>
struct LstmForwardRun {
  int64_t steps, H, B, R;
  LstmParams<T> P;
  const T* W;      // Wcat (4H, R) = [W_hh | W_ih]
  T* U;            // (T, R, B)
  T* Z;            // (4H, B) scratch: the step's pre-activations
  T* cs;           // (T, H, B)
  T* gates;        // (T, 4H, B)
  const T* c0_t;   // (H, B)
  T* h_out;
  int64_t h_stride;

  void step(int64_t t, int64_t b0, int64_t b1) const {
    const int64_t n = H * B;
    gemm<T>(false, false, 4 * H, b1 - b0, R, W, R, U + t * R * B + b0, B, T(0), Z + b0, B);
    const T* cp = t == 0 ? c0_t : cs + (t - 1) * n;
    T* hm = t + 1 < steps ? U + (t + 1) * R * B : nullptr;
    lstm_forward_columns<T>(P, b0, b1, Z, cp, gates + t * 4 * n, cs + t * n,
                            h_out + t * h_stride, hm);
  }
};

// The tensors of one layer's forward pass: out (T, H, B) (may stay empty inside a stack),
// cs, gates and u, saved for the backward pass, h_n and c_n (B, H); plus the scratch.
struct LstmForwardBuffers {
  Tensor wcat, u, out, cs, gates, scratch, h_n, c_n;
};

LstmForwardBuffers lstm_forward_buffers(const Tensor& w_ih, const Tensor& w_hh, int64_t T,
                                        int64_t B, bool with_out, const at::TensorOptions& opts) {
  const int64_t H = w_hh.size(-1), F = w_ih.size(1), R = H + F;
  LstmForwardBuffers buf;
  buf.wcat = at::cat({w_hh, w_ih}, 1);
  buf.u = empty_buffer({T, R, B}, opts);
  buf.out = with_out ? empty_buffer({T, H, B}, opts) : Tensor();
  buf.cs = empty_buffer({T, H, B}, opts);
  buf.gates = empty_buffer({T, 4 * H, B}, opts);
  // pre | c0^T | mask^T | bias plane (4H, B) | peephole plane (3H, B)
  buf.scratch = at::empty({13 * H * B}, opts);
  buf.h_n = at::empty({B, H}, opts);
  buf.c_n = at::empty({B, H}, opts);
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

template <typename T>
void lstm_forward_finish(LstmForwardBuffers& buf, const T* h_last) {
  const int64_t T_ = buf.cs.size(0), H = buf.cs.size(1), B = buf.cs.size(2);
  transpose_into<T>(buf.h_n.data_ptr<T>(), h_last, H, B);
  transpose_into<T>(buf.c_n.data_ptr<T>(), buf.cs.data_ptr<T>() + (T_ - 1) * H * B, H, B);
}

}  // namespace

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

namespace {

// One LSTM layer's backward pass, step by step from the last. Step t takes dL/dh_t from above
// (dout + t * dout_stride, (H, B)) and from step t+1 (dU rows [0, H) and the carry), and
// gives dz_t, dU = Wcat^T dz_t (its rows [H, R), dL/dx_t, go to dx + t * dx_stride) and
// dWcat += dz_t u_t^T (kept transposed, as dWcat^T += u_t dz_t^T).
template <typename T>
struct LstmBackwardRun {
  int64_t H, B, R;
  LstmParams<T> P;  // bias unused
  const T* W;       // Wcat (4H, R)
  const T* U;       // (T, R, B)
  const T* cs;      // (T, H, B)
  const T* gates;   // (T, 4H, B)
  const T* c0_t;    // (H, B)
  const T* dout;
  int64_t dout_stride;
  T* DU;     // (R, B)
  T* DB;     // (4H, B) per-element sums of dz
  T* DP;     // (3H, B) per-element sums for the peepholes
  T* carry;  // (H, B) dL/dh_T, zeroed after its first use
  T* dc;     // (H, B)
  T* DZ;     // (4H, B)
  T* dx;
  int64_t dx_stride;

  void step(int64_t t, int64_t b0, int64_t b1, T* dw) const {
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
};

// The tensors of one layer's backward pass: the gradients it returns (dxs may stay empty
// inside a stack) and its zero-initialised and scratch buffers, one allocation each (small
// calls are dominated by their fixed costs): zeroed = dU (R, B) | db (G, B) | dp (3H, B) | per
// column block: dWcat^T (R, G); scratch = c0^T, mask^T, carry, dc (H, B each) | dz (G, B) |
// the peephole plane (3H, B).
struct LstmBackwardBuffers {
  Tensor wcat, zeroed, scratch, dxs, dw_ih, dw_hh, dbias, dpeep, dh0, dc0;
  int64_t blocks;
};

LstmBackwardBuffers lstm_backward_buffers(const Tensor& w_ih, const Tensor& w_hh, int64_t T,
                                          int64_t B, int64_t blocks, bool with_dxs,
                                          const at::TensorOptions& opts) {
  const int64_t H = w_hh.size(-1), F = w_ih.size(1), R = H + F, G = 4 * H, n = H * B;
  LstmBackwardBuffers buf;
  buf.wcat = at::cat({w_hh, w_ih}, 1);
  buf.zeroed = at::zeros({R * B + G * B + 3 * n + blocks * G * R}, opts);
  buf.scratch = at::empty({4 * n + G * B + 3 * n}, opts);  // ... | dz | peephole plane
  buf.dxs = with_dxs ? at::empty({T, F, B}, opts) : Tensor();
  buf.dw_ih = at::empty({G, F}, opts);
  buf.dw_hh = at::empty({G, H}, opts);
  buf.dbias = at::empty({G}, opts);
  buf.dpeep = at::empty({3, H}, opts);
  buf.dh0 = at::empty({B, H}, opts);
  buf.dc0 = at::empty({B, H}, opts);
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

// The per-block dWcat^T of column block k (R, G), in the zeroed buffer after dU, db and dp.
template <typename T>
T* lstm_block_dw(const LstmBackwardBuffers& buf, int64_t k, int64_t H, int64_t B, int64_t R) {
  return buf.zeroed.data_ptr<T>() + R * B + 4 * H * B + 3 * H * B + k * 4 * H * R;
}

// After the last step: dWcat block sums in block order (split into dW_hh | dW_ih), db and dp
// summed over the batch, dh0 = carry + m * dhm_{-1} and dc0 = dc back to (B, H).
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

}  // namespace

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

namespace {

// ---------------------------------------------------------------------------------------------
// Stacked LSTM layers as one op: layer l's input is layer l-1's output, every layer starts
// from zero states, only the top layer's output is returned. With `workers` >= 2 threads the
// layers run as a wavefront: the layers are split into contiguous groups, one per thread, and
// a group runs step t as soon as the group below (forward; above, backward) has finished it,
// so the steps of different layers overlap in time. Each layer's arithmetic is that of the
// single-layer op, in the same order, so the results are the same to the last bit.
// ---------------------------------------------------------------------------------------------

// Waits until `progress` exceeds k: spinning briefly (the other thread is usually one step
// ahead), then yielding the core (it may be shared with other processes).
void wait_past(const std::atomic<int64_t>& progress, int64_t k) {
  for (int spins = 0; progress.load(std::memory_order_acquire) <= k; ++spins) {
#if defined(SEQCAST_HAS_MXCSR)
    if (spins < 2048) {
      _mm_pause();
      continue;
    }
#endif
    std::this_thread::yield();
  }
}

// The wavefront only pays while each thread has a core to itself. When another process holds
// the second core, the threads take turns on one (a call measured 4 times slower than on one
// thread). So each call compares its wall time with the CPU time its threads spent on steps
// (their CPU time less their waits): a call without overlap (wall time over 85% of that sum)
// is a miss. Two misses in a row (one alone can be an interrupt or a page fault) send the next
// calls to one thread, 64 of them at first, twice as many after each further miss (up to
// 16384); a call that overlaps well resets the count.
class WavefrontGate {
 public:
  bool open() {
    int64_t left = skip_.load(std::memory_order_relaxed);
    while (left > 0) {
      if (skip_.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
        skipped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    }
    return true;
  }
  void record(double wall, double working) {
    runs_.fetch_add(1, std::memory_order_relaxed);
    if (wall > 0.85 * working) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      if (in_a_row_.fetch_add(1, std::memory_order_relaxed) >= 1) {
        const int64_t next =
            std::min<int64_t>(backoff_.load(std::memory_order_relaxed) * 2, 16384);
        backoff_.store(next, std::memory_order_relaxed);
        skip_.store(next, std::memory_order_relaxed);
      }
    } else {
      in_a_row_.store(0, std::memory_order_relaxed);
      backoff_.store(32, std::memory_order_relaxed);
    }
  }
  // [calls run as a wavefront, of which too little overlap, calls sent to one thread]
  std::vector<int64_t> stats() const { return {runs_.load(), misses_.load(), skipped_.load()}; }
  void reset() {
    skip_.store(0);
    backoff_.store(32);
    in_a_row_.store(0);
    runs_.store(0);
    misses_.store(0);
    skipped_.store(0);
  }

 private:
  std::atomic<int64_t> skip_{0}, backoff_{32}, in_a_row_{0}, runs_{0}, misses_{0}, skipped_{0};
};

WavefrontGate& wavefront_gate() {
  static WavefrontGate gate;
  return gate;
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU time of the calling thread (the wall clock where there is no such clock).
double thread_cpu_seconds() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
  return wall_seconds();
}

// Runs step(l, k) for every layer l in [0, L) and k in [0, K) such that (l, k) follows
// (l - 1, k): layer-major on one thread, as a wavefront over up to `workers` threads. `fp32`:
// the threads flush denormals as FlushDenormals does.
template <typename Step>
void run_wavefront(int64_t L, int64_t K, int64_t workers, bool fp32, const Step& step) {
  const auto layer_major = [&] {
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t k = 0; k < K; ++k) step(l, k);
    }
  };
  workers = std::min(workers, L);
#if defined(_OPENMP)
  if (workers >= 2 && !omp_in_parallel() && wavefront_gate().open()) {
    std::vector<std::atomic<int64_t>> done(L);
    for (auto& d : done) d.store(0);
    std::atomic<int64_t> working_ns{0};
    std::atomic<bool> ran{true};
    const double start = wall_seconds();
#pragma omp parallel num_threads(workers)
    {
      const double cpu_start = thread_cpu_seconds();
      const int64_t w = omp_get_thread_num(), team = omp_get_num_threads();
      // thread 0 is the caller, whose mode the op has set already
      const FlushDenormals flush(fp32 && w != 0 ? at::kFloat : at::kDouble, false);
      double waited = 0;
      if (team < workers) {
        if (w == 0) layer_major();
        ran = false;
      } else {
        const int64_t first = w * L / team, last = (w + 1) * L / team;  // layers [first, last)
        for (int64_t k = 0; k < K; ++k) {
          if (first > 0 && done[first - 1].load(std::memory_order_acquire) <= k) {
            const double since = wall_seconds();
            wait_past(done[first - 1], k);
            waited += wall_seconds() - since;
          }
          for (int64_t l = first; l < last; ++l) step(l, k);
          done[last - 1].store(k + 1, std::memory_order_release);
        }
      }
      const double working = thread_cpu_seconds() - cpu_start - waited;
      working_ns.fetch_add(static_cast<int64_t>(std::max(0.0, working) * 1e9));
    }
    if (ran) wavefront_gate().record(wall_seconds() - start, working_ns.load() * 1e-9);
    return;
  }
#endif
  (void)fp32;
  layer_major();
}

// The threads worth a wavefront whose steps take `step_work` multiply-adds over all layers:
// one below ~32K (batch 8 of a 2 x LSTM(20), say), where a step takes about as long as a
// hand-off between threads.
int64_t wavefront_workers(int64_t workers, int64_t step_work) {
  return step_work >= (int64_t(1) << 15) ? workers : 1;
}

// The gate's counters (see WavefrontGate::stats) and whether this build has OpenMP (without
// it every call runs on one thread); `reset` also reopens the gate.
std::vector<int64_t> wavefront_stats(bool reset) {
  std::vector<int64_t> stats = wavefront_gate().stats();
#if defined(_OPENMP)
  stats.push_back(1);
#else
  stats.push_back(0);
#endif
  if (reset) wavefront_gate().reset();
  return stats;
}

void check_lstm_stack(const Tensor& xs, at::TensorList w_ih, at::TensorList w_hh,
                      const c10::List<std::optional<Tensor>>& bias,
                      const c10::List<std::optional<Tensor>>& peephole) {
  TORCH_CHECK(xs.dim() == 3, "lstm_stack: xs must be (time, features, batch), got ", xs.sizes());
  TORCH_CHECK(xs.scalar_type() == at::kFloat || xs.scalar_type() == at::kDouble,
              "lstm_stack: float32 or float64 only, got ", xs.scalar_type());
  TORCH_CHECK(xs.size(0) >= 1, "lstm_stack: the sequence must have at least one step");
  const int64_t L = static_cast<int64_t>(w_ih.size());
  TORCH_CHECK(L >= 1, "lstm_stack: at least one layer");
  TORCH_CHECK(static_cast<int64_t>(w_hh.size()) == L && static_cast<int64_t>(bias.size()) == L &&
                  static_cast<int64_t>(peephole.size()) == L,
              "lstm_stack: w_ih, w_hh, bias and peephole need one entry per layer");
  const auto check = [&](const Tensor& t, at::IntArrayRef shape, int64_t l, const char* what) {
    TORCH_CHECK(t.sizes() == shape, "lstm_stack: layer ", l, "'s ", what, " must have shape ",
                shape, ", got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == xs.scalar_type() && t.is_contiguous() && t.device().is_cpu(),
                "lstm_stack: layer ", l, "'s ", what, " must be a contiguous CPU ",
                xs.scalar_type(), " tensor");
  };
  int64_t features = xs.size(1);
  for (int64_t l = 0; l < L; ++l) {
    TORCH_CHECK(w_ih[l].dim() == 2 && w_ih[l].size(1) == features, "lstm_stack: layer ", l,
                " takes ", features, " features, its w_ih is ", w_ih[l].sizes());
    const int64_t H = w_hh[l].size(-1);
    check(w_ih[l], {4 * H, features}, l, "w_ih");
    check(w_hh[l], {4 * H, H}, l, "w_hh");
    const std::optional<Tensor> b = bias.get(l), p = peephole.get(l);
    if (b.has_value() && b->defined()) check(*b, {4 * H}, l, "bias");
    if (p.has_value() && p->defined()) check(*p, {3, H}, l, "peephole");
    features = H;
  }
}

}  // namespace

// Forward of the stack from zero states. Returns [out (T, H_top, B), then per layer: cs,
// gates, u] (what the backward needs).
std::vector<Tensor> lstm_stack_forward(const Tensor& xs, at::TensorList w_ih, at::TensorList w_hh,
                                       const c10::List<std::optional<Tensor>>& bias,
                                       const c10::List<std::optional<Tensor>>& peephole,
                                       int64_t workers) {
  check_lstm_stack(xs, w_ih, w_hh, bias, peephole);
  const int64_t L = static_cast<int64_t>(w_ih.size()), T = xs.size(0), B = xs.size(2);
  std::vector<LstmForwardBuffers> bufs;
  int64_t work = 0, step_work = 0;
  for (int64_t l = 0; l < L; ++l) {
    bufs.push_back(lstm_forward_buffers(w_ih[l], w_hh[l], T, B, l + 1 == L, xs.options()));
    work = std::max(work, T * 4 * w_hh[l].size(-1) * bufs.back().u.size(1));
    step_work += 4 * w_hh[l].size(-1) * bufs.back().u.size(1) * B;
  }
  const ColumnBlocks blocks(B, work);
  bufs[0].u.narrow(1, w_hh[0].size(-1), xs.size(1)).copy_(xs);
  const bool fp32 = xs.scalar_type() == at::kFloat;
  const FlushDenormals flush(xs.scalar_type(), blocks.count > 1);
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "lstm_stack_forward", [&] {
    using T_ = scalar_t;
    std::vector<LstmForwardRun<T_>> runs;
    for (int64_t l = 0; l < L; ++l) {
      const Tensor zeros = at::zeros({B, w_hh[l].size(-1)}, xs.options());
      T_* h_out;
      int64_t h_stride;
      if (l + 1 < L) {  // into rows [H', R') of the next layer's u_t
        const int64_t Hn = w_hh[l + 1].size(-1), Rn = bufs[l + 1].u.size(1);
        h_out = bufs[l + 1].u.data_ptr<T_>() + Hn * B;
        h_stride = Rn * B;
      } else {
        h_out = bufs[l].out.data_ptr<T_>();
        h_stride = w_hh[l].size(-1) * B;
      }
      runs.push_back(lstm_forward_run<T_>(bufs[l], zeros, zeros, bias.get(l), peephole.get(l),
                                          std::nullopt, h_out, h_stride));
    }
    if (blocks.count > 1) {  // large batches: column blocks within each layer
      for (int64_t l = 0; l < L; ++l) {
        blocks.run(B, [&](int64_t, int64_t b0, int64_t b1) {
          for (int64_t t = 0; t < T; ++t) runs[l].step(t, b0, b1);
        });
      }
    } else {
      run_wavefront(L, T, wavefront_workers(workers, step_work), fp32,
                    [&](int64_t l, int64_t t) { runs[l].step(t, 0, B); });
    }
  });
  std::vector<Tensor> result{bufs[L - 1].out};
  for (auto& buf : bufs) {
    result.push_back(buf.cs);
    result.push_back(buf.gates);
    result.push_back(buf.u);
  }
  return result;
}

// Backward of the stack. Returns [dxs (T, F, B), then per layer: dw_ih, dw_hh, dbias, dpeep].
std::vector<Tensor> lstm_stack_backward(const Tensor& dout, at::TensorList w_ih,
                                        at::TensorList w_hh,
                                        const c10::List<std::optional<Tensor>>& peephole,
                                        at::TensorList saved, int64_t workers) {
  const int64_t L = static_cast<int64_t>(w_ih.size());
  TORCH_CHECK(static_cast<int64_t>(saved.size()) == 3 * L,
              "lstm_stack_backward: expected cs, gates, u per layer");
  const Tensor& top_cs = saved[3 * (L - 1)];
  TORCH_CHECK(dout.sizes() == top_cs.sizes() && dout.is_contiguous() &&
                  dout.scalar_type() == top_cs.scalar_type(),
              "lstm_stack_backward: dout must be a contiguous ", top_cs.sizes(), " tensor");
  const int64_t T = top_cs.size(0), B = top_cs.size(2);
  const auto opts = top_cs.options();
  int64_t work = 0, step_work = 0;
  for (int64_t l = 0; l < L; ++l) {
    work = std::max(work, T * 4 * w_hh[l].size(-1) * saved[3 * l + 2].size(1));
    step_work += 4 * w_hh[l].size(-1) * saved[3 * l + 2].size(1) * B;
  }
  const ColumnBlocks blocks(B, work);
  std::vector<LstmBackwardBuffers> bufs;
  std::vector<Tensor> dmid(L);  // dmid[l]: dL/d(input of layer l) = dL/d(output of l - 1)
  for (int64_t l = 0; l < L; ++l) {
    bufs.push_back(lstm_backward_buffers(w_ih[l], w_hh[l], T, B, blocks.count, l == 0, opts));
    if (l > 0) dmid[l] = at::empty({T, w_ih[l].size(1), B}, opts);
  }
  const bool fp32 = top_cs.scalar_type() == at::kFloat;
  const FlushDenormals flush(top_cs.scalar_type(), blocks.count > 1);
  AT_DISPATCH_FLOATING_TYPES(top_cs.scalar_type(), "lstm_stack_backward", [&] {
    using T_ = scalar_t;
    std::vector<LstmBackwardRun<T_>> runs;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = w_hh[l].size(-1), F = w_ih[l].size(1);
      const Tensor zeros = at::zeros({B, H}, opts);
      const T_* d_above = l + 1 < L ? dmid[l + 1].data_ptr<T_>() : dout.data_ptr<T_>();
      T_* dx = l == 0 ? bufs[0].dxs.data_ptr<T_>() : dmid[l].data_ptr<T_>();
      runs.push_back(lstm_backward_run<T_>(bufs[l], zeros, zeros, zeros, peephole.get(l),
                                           std::nullopt, saved[3 * l], saved[3 * l + 1],
                                           saved[3 * l + 2], d_above, H * B, dx, F * B));
    }
    if (blocks.count > 1) {
      for (int64_t l = L - 1; l >= 0; --l) {
        blocks.run(B, [&](int64_t k, int64_t b0, int64_t b1) {
          T_* dw = lstm_block_dw<T_>(bufs[l], k, runs[l].H, B, runs[l].R);
          for (int64_t t = T - 1; t >= 0; --t) runs[l].step(t, b0, b1, dw);
        });
      }
    } else {  // the wavefront from the top layer down, from the last step back
      run_wavefront(L, T, wavefront_workers(workers, step_work), fp32, [&](int64_t i, int64_t k) {
        const int64_t l = L - 1 - i;
        runs[l].step(T - 1 - k, 0, B, lstm_block_dw<T_>(bufs[l], 0, runs[l].H, B, runs[l].R));
      });
    }
    for (int64_t l = 0; l < L; ++l) lstm_backward_finish<T_>(bufs[l], runs[l]);
  });
  std::vector<Tensor> result{bufs[0].dxs};
  for (auto& buf : bufs) {
    result.push_back(buf.dw_ih);
    result.push_back(buf.dw_hh);
    result.push_back(buf.dbias);
    result.push_back(buf.dpeep);
  }
  return result;
}

namespace {

// ---------------------------------------------------------------------------------------------
// GRU, gate order r, z, n; h_t = (1 - z) n + z h_{t-1} in both forms.
// reset_after=True:   a = hm W^T + b_hh; r = σ(x_r + a_r); z = σ(x_z + a_z);
//                     n = tanh(x_n + r a_n).   Saved: gates (B, T, 4H) = (r, z, n, a_n).
// reset_after=False:  r = σ(x_r + hm W_r^T); z = σ(x_z + hm W_z^T);
//                     n = tanh(x_n + (r hm) W_n^T).  Saved: gates (B, T, 3H) = (r, z, n) and
//                     rh (B, T, H) = r hm_{t-1}.
// ---------------------------------------------------------------------------------------------

template <typename T>
struct GruForwardStep {
  int64_t H;
  Rows<const T> x, pre, h_prev;  // xproj[:, t]; hm W^T (B, 3H) or (B, 2H); h_{t-1}
  const T* bias;                 // (3H) recurrent bias (reset_after only)
  const T* mask;                 // (B, H)
  Rows<T> gates, h, rh;          // gates[:, t], out[:, t], rh[:, t] (reset_after=False)
  T* hm;                         // (B, H): hm_{t-1} in, h_t * m out
  Rows<const T> pre_n;           // (r hm) W_n^T (B, H) (reset_after=False)
};

template <typename T>
SEQCAST_INLINE void gru_forward_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre,
                                    const T* RESTRICT bias, const T* RESTRICT hp,
                                    const T* RESTRICT m, T* RESTRICT g, T* RESTRICT h,
                                    T* RESTRICT hm) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + pre[j] + bias[j]);
    const T z = sigmoid(x[H + j] + pre[H + j] + bias[H + j]);
    const T an = pre[2 * H + j] + bias[2 * H + j];
    const T n = tanh_(x[2 * H + j] + r * an);
    const T ht = n + z * (hp[j] - n);
    g[j] = r;
    g[H + j] = z;
    g[2 * H + j] = n;
    g[3 * H + j] = an;
    h[j] = ht;
    hm[j] = ht * m[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_forward_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_forward_row<T>(H, s.x.row(b), s.pre.row(b), s.bias, s.h_prev.row(b), s.mask + b * H,
                       s.gates.row(b), s.h.row(b), s.hm + b * H);
  }
}

// reset_after=False, first half: r, z from pre = hm W_rz^T (B, 2H); rh = r * hm_{t-1}.
template <typename T>
SEQCAST_INLINE void gru_v3_gates_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre,
                                     const T* RESTRICT hm, T* RESTRICT g, T* RESTRICT rh) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + pre[j]);
    g[j] = r;
    g[H + j] = sigmoid(x[H + j] + pre[H + j]);
    rh[j] = r * hm[j];
  }
}

// reset_after=False, second half: n from pre_n = rh W_n^T (B, H), then h_t.
template <typename T>
SEQCAST_INLINE void gru_v3_state_row(int64_t H, const T* RESTRICT x, const T* RESTRICT pre_n,
                                     const T* RESTRICT hp, const T* RESTRICT m, T* RESTRICT g,
                                     T* RESTRICT h, T* RESTRICT hm) {
  for (int64_t j = 0; j < H; ++j) {
    const T n = tanh_(x[2 * H + j] + pre_n[j]);
    const T ht = n + g[H + j] * (hp[j] - n);
    g[2 * H + j] = n;
    h[j] = ht;
    hm[j] = ht * m[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_gates_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_gates_row<T>(s.H, s.x.row(b), s.pre.row(b), s.hm + b * s.H, s.gates.row(b),
                        s.rh.row(b));
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_state_step(const GruForwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_state_row<T>(H, s.x.row(b), s.pre_n.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.gates.row(b), s.h.row(b), s.hm + b * H);
  }
}

template <typename T>
struct GruBackwardStep {
  int64_t H;
  Rows<const T> dout, gates, h_prev;  // dout[:, t], gates[:, t], h_{t-1}
  const T* mask;                      // (B, H)
  const T* dhm;                       // (B, H): dL/d(hm_t) from step t+1's product(s)
  T* carry;                           // (B, H): dL/dh_t's direct part in, z * dh out
  Rows<T> dz;                         // dxproj[:, t]
  T* da;                              // (B, 3H): d(hm W^T + b_hh) of this step (reset_after)
  Rows<T> da_n;                       // da[:, 2H:] of every step, (B, T, H) (reset_after)
  Rows<const T> drh;                  // dL/d(rh_t) (B, H) (reset_after=False)
};

template <typename T>
SEQCAST_INLINE void gru_backward_row(int64_t H, const T* RESTRICT dout, const T* RESTRICT g,
                                     const T* RESTRICT hp, const T* RESTRICT m,
                                     const T* RESTRICT dhm, T* RESTRICT carry, T* RESTRICT dz,
                                     T* RESTRICT da, T* RESTRICT da_n) {
  for (int64_t j = 0; j < H; ++j) {
    const T dh = dout[j] + carry[j] + m[j] * dhm[j];
    const T r = g[j], z = g[H + j], n = g[2 * H + j], an = g[3 * H + j];
    const T dn = dh * (T(1) - z) * (T(1) - n * n);
    const T dzz = dh * (hp[j] - n) * z * (T(1) - z);
    const T dzr = dn * an * r * (T(1) - r);
    carry[j] = dh * z;
    dz[j] = dzr;
    dz[H + j] = dzz;
    dz[2 * H + j] = dn;
    da[j] = dzr;
    da[H + j] = dzz;
    da[2 * H + j] = dn * r;
    da_n[j] = dn * r;
  }
}

template <typename T>
SEQCAST_SIMD void gru_backward_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_backward_row<T>(H, s.dout.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.dhm + b * H, s.carry + b * H, s.dz.row(b), s.da + b * 3 * H,
                        s.da_n.row(b));
  }
}

// reset_after=False, first half: dz_z, dz_n (written to dz) and the direct part of dh_{t-1}.
template <typename T>
SEQCAST_INLINE void gru_v3_backward_row(int64_t H, const T* RESTRICT dout, const T* RESTRICT g,
                                        const T* RESTRICT hp, const T* RESTRICT m,
                                        const T* RESTRICT dhm, T* RESTRICT carry,
                                        T* RESTRICT dz) {
  for (int64_t j = 0; j < H; ++j) {
    const T dh = dout[j] + carry[j] + m[j] * dhm[j];
    const T z = g[H + j], n = g[2 * H + j];
    carry[j] = dh * z;
    dz[H + j] = dh * (hp[j] - n) * z * (T(1) - z);
    dz[2 * H + j] = dh * (T(1) - z) * (T(1) - n * n);
  }
}

// reset_after=False, second half: given drh = dz_n W_n, dz_r and carry += m * r * drh.
template <typename T>
SEQCAST_INLINE void gru_v3_reset_row(int64_t H, const T* RESTRICT drh, const T* RESTRICT g,
                                     const T* RESTRICT hp, const T* RESTRICT m,
                                     T* RESTRICT carry, T* RESTRICT dz) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = g[j];
    dz[j] = drh[j] * hp[j] * m[j] * r * (T(1) - r);
    carry[j] += m[j] * r * drh[j];
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_backward_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_backward_row<T>(H, s.dout.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                           s.dhm + b * H, s.carry + b * H, s.dz.row(b));
  }
}

template <typename T>
SEQCAST_SIMD void gru_v3_reset_step(const GruBackwardStep<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_v3_reset_row<T>(H, s.drh.row(b), s.gates.row(b), s.h_prev.row(b), s.mask + b * H,
                        s.carry + b * H, s.dz.row(b));
  }
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_forward(const Tensor& xproj, const Tensor& w_hh,
                                                       const Tensor& h0, const OptTensor& b_hh,
                                                       bool reset_after,
                                                       const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 3, "gru_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  TORCH_CHECK(reset_after || !b_hh.has_value() || !b_hh->defined(),
              "gru_sequence: reset_after=False has no recurrent bias; pass b_hh=None");
  const Tensor bias = or_default(b_hh, at::zeros({3 * H}, h0.options()), "b_hh");
  const Tensor mask = mask_or_ones(rmask, h0);
  const auto opts = xproj.options();
  Tensor out = empty_buffer({B, T, H}, opts);
  Tensor gates = empty_buffer({B, T, (reset_after ? 4 : 3) * H}, opts);
  Tensor rh = reset_after ? at::empty({0}, opts) : empty_buffer({B, T, H}, opts);
  Tensor pre = at::empty({B, (reset_after ? 3 : 2) * H}, opts);
  Tensor pre_n = reset_after ? at::empty({0}, opts) : at::empty({B, H}, opts);
  Tensor hm = h0 * mask;
  const Tensor w_t = reset_after ? w_hh.t() : w_hh.narrow(0, 0, 2 * H).t();
  const Tensor w_n_t = w_hh.narrow(0, 2 * H, H).t();
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, 3 * H, H));
  AT_DISPATCH_FLOATING_TYPES(xproj.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    for (int64_t t = 0; t < T; ++t) {
      at::mm_out(pre, hm, w_t);
      const GruForwardStep<T_> s{
          H,
          step_rows<const T_>(xproj, t),
          matrix_rows<const T_>(pre),
          previous_state<const T_>(h0, out, t),
          bias.data_ptr<T_>(),
          mask.data_ptr<T_>(),
          step_rows<T_>(gates, t),
          step_rows<T_>(out, t),
          reset_after ? Rows<T_>{nullptr, 0} : step_rows<T_>(rh, t),
          hm.data_ptr<T_>(),
          reset_after ? Rows<const T_>{nullptr, 0} : matrix_rows<const T_>(pre_n)};
      if (reset_after) {
        for_rows(B, 4 * H, [&](int64_t b0, int64_t b1) { gru_forward_step<T_>(s, b0, b1); });
      } else {
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_gates_step<T_>(s, b0, b1); });
        at::mm_out(pre_n, rh.select(1, t), w_n_t);
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_state_step<T_>(s, b0, b1); });
      }
    }
  });
  return {out, out.select(1, T - 1).clone(), gates, rh};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(const Tensor& dout, const Tensor& dh_n,
                                                        const Tensor& w_hh, const Tensor& h0,
                                                        bool reset_after, const OptTensor& rmask,
                                                        const Tensor& out, const Tensor& gates,
                                                        const Tensor& rh) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  const Tensor mask = mask_or_ones(rmask, h0);
  const auto opts = out.options();
  Tensor dz = empty_buffer({B, T, 3 * H}, opts);
  Tensor da = reset_after ? at::empty({B, 3 * H}, opts) : at::empty({0}, opts);
  Tensor da_n = reset_after ? empty_buffer({B, T, H}, opts) : at::empty({0}, opts);
  Tensor drh = reset_after ? at::empty({0}, opts) : at::empty({B, H}, opts);
  Tensor carry = dh_n.clone();
  Tensor dhm = at::zeros_like(h0);
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * H), w_n = w_hh.narrow(0, 2 * H, H);
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, 3 * H, H));
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    for (int64_t t = T - 1; t >= 0; --t) {
      const GruBackwardStep<T_> s{
          H,
          step_rows<const T_>(dout, t),
          step_rows<const T_>(gates, t),
          previous_state<const T_>(h0, out, t),
          mask.data_ptr<T_>(),
          dhm.data_ptr<T_>(),
          carry.data_ptr<T_>(),
          step_rows<T_>(dz, t),
          da.data_ptr<T_>(),
          reset_after ? step_rows<T_>(da_n, t) : Rows<T_>{nullptr, 0},
          reset_after ? Rows<const T_>{nullptr, 0} : matrix_rows<const T_>(drh)};
      if (reset_after) {
        for_rows(B, 6 * H, [&](int64_t b0, int64_t b1) { gru_backward_step<T_>(s, b0, b1); });
        at::mm_out(dhm, da, w_hh);
      } else {
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { gru_v3_backward_step<T_>(s, b0, b1); });
        at::mm_out(drh, dz.select(1, t).narrow(1, 2 * H, H), w_n);
        for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) { gru_v3_reset_step<T_>(s, b0, b1); });
        at::mm_out(dhm, dz.select(1, t).narrow(1, 0, 2 * H), w_rz);
      }
    }
  });
  Tensor dh0 = carry + mask * dhm;
  // dW_hh for the r and z rows: dz^T hm; for the n rows: da_n^T hm, or dz_n^T (r hm).
  const Tensor dw_rz = recurrent_weight_grad(dz, 0, 2 * H, h0, out, rmask);
  if (reset_after) {
    Tensor dw = at::cat({dw_rz, recurrent_weight_grad(da_n, 0, H, h0, out, rmask)});
    Tensor db = at::cat({dz.narrow(2, 0, 2 * H).sum({0, 1}), da_n.sum({0, 1})});
    return {dz, dw, dh0, db};
  }
  Tensor dw = at::cat({dw_rz, weight_grad(dz, 2 * H, H, rh)});
  return {dz, dw, dh0, at::zeros({3 * H}, opts)};
}

namespace {

// ---------------------------------------------------------------------------------------------
// SimpleRNN: h_t = act(xproj_t + hm_{t-1} W^T).  Saved: out only (act' from the output).
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

}  // namespace

std::tuple<Tensor, Tensor> simple_rnn_forward(const Tensor& xproj, const Tensor& w_hh,
                                              const Tensor& h0, int64_t activation,
                                              const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 1, "simple_rnn_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  const Tensor mask = mask_or_ones(rmask, h0);
  Tensor out = empty_buffer({B, T, H}, xproj.options());
  Tensor pre = at::empty({B, H}, xproj.options());
  Tensor hm = h0 * mask;
  const Tensor w_t = w_hh.t();
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, H, H));
  AT_DISPATCH_FLOATING_TYPES(xproj.scalar_type(), "simple_rnn_forward", [&] {
    using T_ = scalar_t;
    with_activation(activation, [&](auto act) {
      constexpr int A = decltype(act)::value;
      for (int64_t t = 0; t < T; ++t) {
        at::mm_out(pre, hm, w_t);
        RnnStep<T_> s{};
        s.H = H;
        s.x = step_rows<const T_>(xproj, t);
        s.pre = matrix_rows<const T_>(pre);
        s.h = step_rows<T_>(out, t);
        s.mask = mask.data_ptr<T_>();
        s.hm = hm.data_ptr<T_>();
        for_rows(B, H, [&](int64_t b0, int64_t b1) { rnn_forward_step<A, T_>(s, b0, b1); });
      }
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
  const Tensor mask = mask_or_ones(rmask, h0);
  Tensor dz = empty_buffer({B, T, H}, out.options());
  Tensor carry = dh_n.clone();
  Tensor dhm = at::zeros_like(h0);
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, H, H));
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "simple_rnn_backward", [&] {
    using T_ = scalar_t;
    with_activation(activation, [&](auto act) {
      constexpr int A = decltype(act)::value;
      for (int64_t t = T - 1; t >= 0; --t) {
        RnnStep<T_> s{};
        s.H = H;
        s.h = step_rows<T_>(out, t);
        s.mask = mask.data_ptr<T_>();
        s.dout = step_rows<const T_>(dout, t);
        s.dhm = dhm.data_ptr<T_>();
        s.carry = carry.data_ptr<T_>();
        s.dz = step_rows<T_>(dz, t);
        for_rows(B, H, [&](int64_t b0, int64_t b1) { rnn_backward_step<A, T_>(s, b0, b1); });
        at::mm_out(dhm, dz.select(1, t), w_hh);
      }
    });
  });
  Tensor dh0 = carry + mask * dhm;
  Tensor dw = recurrent_weight_grad(dz, 0, H, h0, out, rmask);
  return {dz, dw, dh0};
}

namespace {

// ---------------------------------------------------------------------------------------------
// Layer-normalised SimpleRNN:
//   s = xproj_t + hm_{t-1} W^T; ŝ = (s - mean(s)) / sqrt(var(s) + eps); h_t = act(γ ŝ + β)
// (mean and biased variance over the H features of each row).
// Saved: out, shat (B, T, H) = ŝ, rstd (B, T) = 1 / sqrt(var + eps).
// Backward per row: dy = dh act'(h); dγ += dy ŝ; dβ += dy; dŝ = γ dy;
//   ds = rstd (dŝ - mean(dŝ) - ŝ mean(dŝ ŝ)).
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

std::tuple<Tensor, Tensor, Tensor, Tensor> ln_simple_rnn_forward(
    const Tensor& xproj, const Tensor& w_hh, const Tensor& h0, const Tensor& gamma,
    const Tensor& beta, double eps, int64_t activation, const OptTensor& rmask) {
  const Dims d = check_inputs(xproj, w_hh, h0, 1, "ln_simple_rnn_sequence");
  const int64_t B = d.B, T = d.T, H = d.H;
  const Tensor zeros_h = at::zeros({H}, h0.options());
  const Tensor gamma_ = or_default(gamma, zeros_h, "gamma");
  const Tensor beta_ = or_default(beta, zeros_h, "beta");
  const Tensor mask = mask_or_ones(rmask, h0);
  Tensor out = empty_buffer({B, T, H}, xproj.options());
  Tensor shat = empty_buffer({B, T, H}, xproj.options());
  Tensor rstd = empty_buffer({B, T, 1}, xproj.options());
  Tensor pre = at::empty({B, H}, xproj.options());
  Tensor hm = h0 * mask;
  const Tensor w_t = w_hh.t();
  const FlushDenormals flush(xproj.scalar_type(), may_use_threads(B, H, H));
  AT_DISPATCH_FLOATING_TYPES(xproj.scalar_type(), "ln_simple_rnn_forward", [&] {
    using T_ = scalar_t;
    with_activation(activation, [&](auto act) {
      constexpr int A = decltype(act)::value;
      for (int64_t t = 0; t < T; ++t) {
        at::mm_out(pre, hm, w_t);
        LnRnnStep<T_> s{};
        s.H = H;
        s.eps = static_cast<T_>(eps);
        s.gamma = gamma_.data_ptr<T_>();
        s.beta = beta_.data_ptr<T_>();
        s.mask = mask.data_ptr<T_>();
        s.h = step_rows<T_>(out, t);
        s.shat = step_rows<T_>(shat, t);
        s.rstd = step_rows<T_>(rstd, t);
        s.x = step_rows<const T_>(xproj, t);
        s.pre = matrix_rows<const T_>(pre);
        s.hm = hm.data_ptr<T_>();
        for_rows(B, 3 * H, [&](int64_t b0, int64_t b1) { ln_rnn_forward_step<A, T_>(s, b0, b1); });
      }
    });
  });
  return {out, out.select(1, T - 1).clone(), shat, rstd};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> ln_simple_rnn_backward(
    const Tensor& dout, const Tensor& dh_n, const Tensor& w_hh, const Tensor& h0,
    const Tensor& gamma, int64_t activation, const OptTensor& rmask, const Tensor& out,
    const Tensor& shat, const Tensor& rstd) {
  const int64_t B = out.size(0), T = out.size(1), H = out.size(2);
  const Tensor mask = mask_or_ones(rmask, h0);
  Tensor dz = empty_buffer({B, T, H}, out.options());
  Tensor carry = dh_n.clone();
  Tensor dhm = at::zeros_like(h0);
  Tensor dgamma = at::zeros({at::get_num_threads(), H}, out.options());  // per-thread sums
  Tensor dbeta = at::zeros({at::get_num_threads(), H}, out.options());
  const FlushDenormals flush(out.scalar_type(), may_use_threads(B, H, H));
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "ln_simple_rnn_backward", [&] {
    using T_ = scalar_t;
    with_activation(activation, [&](auto act) {
      constexpr int A = decltype(act)::value;
      for (int64_t t = T - 1; t >= 0; --t) {
        LnRnnStep<T_> s{};
        s.H = H;
        s.gamma = gamma.data_ptr<T_>();
        s.mask = mask.data_ptr<T_>();
        s.h = step_rows<T_>(out, t);
        s.shat = step_rows<T_>(shat, t);
        s.rstd = step_rows<T_>(rstd, t);
        s.dout = step_rows<const T_>(dout, t);
        s.dhm = dhm.data_ptr<T_>();
        s.carry = carry.data_ptr<T_>();
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
        at::mm_out(dhm, dz.select(1, t), w_hh);
      }
    });
  });
  Tensor dh0 = carry + mask * dhm;
  Tensor dw = recurrent_weight_grad(dz, 0, H, h0, out, rmask);
  return {dz, dw, dh0, dgamma.sum(0), dbeta.sum(0)};
}

}  // namespace seqcast_rnn

TORCH_LIBRARY(seqcast_rnn, m) {
  using namespace seqcast_rnn;
  m.def(
      "lstm_layer_forward(Tensor xs, Tensor w_ih, Tensor w_hh, Tensor? bias, Tensor h0, "
      "Tensor c0, Tensor? peephole, Tensor? rmask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      &lstm_layer_forward);
  m.def(
      "lstm_layer_backward(Tensor dout, Tensor dh_n, Tensor dc_n, Tensor w_ih, Tensor w_hh, "
      "Tensor c0, Tensor? peephole, Tensor? rmask, Tensor cs, Tensor gates, Tensor u) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      &lstm_layer_backward);
  m.def(
      "lstm_stack_forward(Tensor xs, Tensor[] w_ih, Tensor[] w_hh, Tensor?[] bias, "
      "Tensor?[] peephole, int workers) -> Tensor[]",
      &lstm_stack_forward);
  m.def(
      "lstm_stack_backward(Tensor dout, Tensor[] w_ih, Tensor[] w_hh, Tensor?[] peephole, "
      "Tensor[] saved, int workers) -> Tensor[]",
      &lstm_stack_backward);
  m.def(
      "lstm_stack(Tensor xs, Tensor[] w_ih, Tensor[] w_hh, Tensor?[] bias, Tensor?[] peephole, "
      "int workers) -> Tensor",
      &lstm_stack);
  m.def(
      "gru_sequence(Tensor xproj, Tensor w_hh, Tensor h0, Tensor? b_hh, bool reset_after, "
      "Tensor? rmask) -> (Tensor, Tensor)",
      &gru_sequence);
  m.def(
      "lstm_layer(Tensor xs, Tensor w_ih, Tensor w_hh, Tensor? bias, Tensor h0, Tensor c0, "
      "Tensor? peephole, Tensor? rmask) -> (Tensor, Tensor, Tensor)",
      &lstm_layer);
  m.def(
      "simple_rnn_sequence(Tensor xproj, Tensor w_hh, Tensor h0, int activation, "
      "Tensor? rmask) -> (Tensor, Tensor)",
      &simple_rnn_sequence);
  m.def(
      "ln_simple_rnn_sequence(Tensor xproj, Tensor w_hh, Tensor h0, Tensor gamma, "
      "Tensor beta, float eps, int activation, Tensor? rmask) -> (Tensor, Tensor)",
      &ln_simple_rnn_sequence);
  m.def("wavefront_stats(bool reset) -> int[]", &wavefront_stats);
  m.def(
      "gru_forward(Tensor xproj, Tensor w_hh, Tensor h0, Tensor? b_hh, bool reset_after, "
      "Tensor? rmask) -> (Tensor, Tensor, Tensor, Tensor)",
      &gru_forward);
  m.def(
      "gru_backward(Tensor dout, Tensor dh_n, Tensor w_hh, Tensor h0, bool reset_after, "
      "Tensor? rmask, Tensor out, Tensor gates, Tensor rh) -> (Tensor, Tensor, Tensor, Tensor)",
      &gru_backward);
  m.def(
      "simple_rnn_forward(Tensor xproj, Tensor w_hh, Tensor h0, int activation, Tensor? rmask) "
      "-> (Tensor, Tensor)",
      &simple_rnn_forward);
  m.def(
      "simple_rnn_backward(Tensor dout, Tensor dh_n, Tensor w_hh, Tensor h0, int activation, "
      "Tensor? rmask, Tensor out) -> (Tensor, Tensor, Tensor)",
      &simple_rnn_backward);
  m.def(
      "ln_simple_rnn_forward(Tensor xproj, Tensor w_hh, Tensor h0, Tensor gamma, Tensor beta, "
      "float eps, int activation, Tensor? rmask) -> (Tensor, Tensor, Tensor, Tensor)",
      &ln_simple_rnn_forward);
  m.def(
      "ln_simple_rnn_backward(Tensor dout, Tensor dh_n, Tensor w_hh, Tensor h0, Tensor gamma, "
      "int activation, Tensor? rmask, Tensor out, Tensor shat, Tensor rstd) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
      &ln_simple_rnn_backward);
}
