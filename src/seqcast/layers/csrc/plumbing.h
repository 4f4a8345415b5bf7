// What every recurrence kernel file shares (lstm*.cpp, gru.cpp, simple_rnn.cpp; scan.h uses
// FlushDenormals): argument checks, the denormal mode, whole-sequence buffers, the loops over a
// step's batch rows and the recurrent weight gradient. Defined in plumbing.cpp, except the
// templates below.
//
// The kernel files include the ATen core and the operator entry points they call (aten_ops.h)
// rather than <ATen/ATen.h>: parsing all of ATen costs several seconds per file, and the files
// are compiled on first use, while the user waits.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "aten_ops.h"
#include "common.h"

namespace seqcast_rnn {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

struct Dims {
  int64_t B, T, H;
};

// The batch-first ops' common checks (xproj (B, T, gates*H), w_hh (gates*H, H), h0 (B, H)).
Dims check_inputs(const Tensor& xproj, const Tensor& w_hh, const Tensor& h0, int64_t gates,
                  const char* name);

// `t` if given (checked to match `fallback` in shape and dtype), else `fallback`.
Tensor or_default(const OptTensor& t, const Tensor& fallback, const char* what);

Tensor mask_or_ones(const OptTensor& rmask, const Tensor& h0);

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

// ---------------------------------------------------------------------------------------------
// Denormals
// ---------------------------------------------------------------------------------------------

// Float32 ops run with denormals flushed to zero (FTZ/DAZ), restored on exit: the vanishing
// gradients of a long sequence (say a loss on the last state only) otherwise reach denormal
// floats, whose arithmetic is ~100 times slower (measured: a 6x slower backward at T=500).
// Values below 1.2e-38 become 0. With `all_threads` (an op large enough to use torch's intra-op
// threads, where BLAS runs its products too) the mode is set on each of them as well, each
// thread restoring its own on exit. Float64 ops run unchanged. The calling thread's mode is
// kept in the object, so one may be nested in another on the same thread (the scan's time chunks, scan.h
// run inline when there is one thread).
class FlushDenormals {
 public:
  explicit FlushDenormals(at::ScalarType dtype, bool all_threads = false);
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  void set_team(bool enter) const;
  bool active_, all_threads_;
  unsigned saved_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------

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
bool may_use_threads(int64_t B, int64_t gate_width, int64_t H);

// The partial-sum slot of the running thread, among `slots` = at::get_num_threads() made
// before the loop. (Run inline inside an outer parallel region, the thread number may be any;
// then this call is the only user of its slots.)
int64_t thread_slot(int64_t slots);

// ---------------------------------------------------------------------------------------------
// Buffers and rows
// ---------------------------------------------------------------------------------------------

// An uninitialised tensor for a whole-sequence buffer (large ones reused, see plumbing.cpp).
Tensor empty_buffer(at::IntArrayRef sizes, const at::TensorOptions& options);

// The values of at::cat({a, b}, dim) as one new contiguous tensor, by two copies: at::cat's
// declaration needs ATen's tensor-list types, another second and a half of parsing.
Tensor concat(const Tensor& a, const Tensor& b, int64_t dim = 0);

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

// ---------------------------------------------------------------------------------------------
// Weight gradients
// ---------------------------------------------------------------------------------------------

// dW = sum over all (b, t) of dz[b, t]^T @ input[b, t]: dz (B, T, >= col0 + cols) narrowed to
// columns [col0, col0 + cols), input (B, T, H). One matrix product over all B*T rows.
Tensor weight_grad(const Tensor& dz, int64_t col0, int64_t cols, const Tensor& input);

// dW_hh = sum over all (b, t) of dz[b, t]^T @ hm_{t-1}[b], hm_{t-1} = (h0 or out[:, t-1]) * m.
Tensor recurrent_weight_grad(const Tensor& dz, int64_t col0, int64_t cols, const Tensor& h0,
                             const Tensor& out, const OptTensor& rmask);

}  // namespace seqcast_rnn
