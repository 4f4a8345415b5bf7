// The shared plumbing of plumbing.h: argument checks, the denormal mode, the buffer cache and
// the recurrent weight gradient.

#include "plumbing.h"

#include <ATen/ops/from_blob.h>
#include <c10/util/accumulate.h>

#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#define SEQCAST_BUFFER_CACHE 1
#endif

namespace seqcast_rnn {

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
  return or_default(rmask, lite::ones_like(h0), "rmask");
}

// ---------------------------------------------------------------------------------------------
// FlushDenormals
// ---------------------------------------------------------------------------------------------

namespace {

#if defined(SEQCAST_HAS_MXCSR)
constexpr unsigned kFlushToZero = 0x8040u;  // FTZ | DAZ

// The mode an intra-op thread had before an op's FlushDenormals set it (one op at a time per
// thread: the team of an op is not shared with another op while it runs).
thread_local unsigned team_saved = 0;
#endif

}  // namespace

FlushDenormals::FlushDenormals(at::ScalarType dtype, bool all_threads)
    : active_(dtype == at::kFloat), all_threads_(all_threads) {
  if (!active_) return;
#if defined(SEQCAST_HAS_MXCSR)
  saved_ = _mm_getcsr();
  _mm_setcsr(saved_ | kFlushToZero);
#endif
  if (all_threads_) set_team(true);
}

FlushDenormals::~FlushDenormals() {
  if (!active_) return;
#if defined(SEQCAST_HAS_MXCSR)
  _mm_setcsr(saved_);
#endif
  if (all_threads_) set_team(false);
}

// Each other thread of torch's intra-op team once (thread 0 is the caller).
void FlushDenormals::set_team(bool enter) const {
#if defined(SEQCAST_HAS_MXCSR)
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    if (at::get_thread_num() == 0) return;
    if (enter) team_saved = _mm_getcsr();
    _mm_setcsr(enter ? team_saved | kFlushToZero : team_saved);
  });
#else
  (void)enter;
#endif
}

// ---------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------

bool may_use_threads(int64_t B, int64_t gate_width, int64_t H) {
  return at::get_num_threads() > 1 &&
         (B * gate_width >= 2 * kMinElementsPerThread || B * gate_width * H >= (1 << 20));
}

int64_t thread_slot(int64_t slots) {
  return std::min<int64_t>(at::get_thread_num(), slots - 1);
}

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------

// Whole-sequence buffers (saved activations, dxproj) are the only large memory the kernels
// touch. Fresh from the system they cost more than the arithmetic: each call would fault in
// and zero ~100 MB page by page (measured: a sixth of a large GRU's time, with erratic spikes
// when other processes load the memory bus). So large buffers are mapped here on transparent
// huge pages (where the system allows, THP "madvise" mode), and a freed buffer is kept, up to
// kKeptBytes, for the next call that asks for the same size. A kept buffer is marked
// MADV_FREE: the system may still take its pages back under memory pressure. (Linux only;
// elsewhere buffers come from at::empty.)
#if defined(SEQCAST_BUFFER_CACHE)
namespace {

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

}  // namespace
#endif

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
  return lite::empty(sizes, options);
}

Tensor concat(const Tensor& a, const Tensor& b, int64_t dim) {
  std::vector<int64_t> sizes = a.sizes().vec();
  sizes[dim] += b.size(dim);
  Tensor out = lite::empty(sizes, a.options());
  out.narrow(dim, 0, a.size(dim)).copy_(a);
  out.narrow(dim, a.size(dim), b.size(dim)).copy_(b);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight gradients
// ---------------------------------------------------------------------------------------------

Tensor weight_grad(const Tensor& dz, int64_t col0, int64_t cols, const Tensor& input) {
  const Tensor dz_rows = dz.reshape({-1, dz.size(2)}).narrow(1, col0, cols);
  return lite::mm(dz_rows.t(), input.reshape({-1, input.size(2)}));
}

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
  Tensor dw = lite::mm(dz_rows.narrow(0, 1, B * T - 1).t(), out_rows.narrow(0, 0, B * T - 1));
  const Tensor dz_first = dz.select(1, 0).narrow(1, col0, cols);  // (B, cols)
  dw.addmm_(dz_first.t(), h0);
  if (B > 1) {
    dw.addmm_(dz_first.narrow(0, 1, B - 1).t(), out.select(1, T - 1).narrow(0, 0, B - 1), 1, -1);
  }
  return dw;
}

}  // namespace seqcast_rnn
