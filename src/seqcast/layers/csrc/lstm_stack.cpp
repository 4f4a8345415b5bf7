// Stacked LSTM layers as one op: layer l's input is layer l-1's output, every layer starts
// from zero states, only the top layer's output is returned. With `workers` >= 2 threads the
// layers run as a wavefront: the layers are split into contiguous groups, one per thread, and
// a group runs step t as soon as the group below (forward; above, backward) has finished it,
// so the steps of different layers overlap in time. Each layer's arithmetic is that of the
// single-layer op (the same steps of lstm.cpp, in the same order), so the results are the
// same to the last bit.

#include <ATen/Dispatch.h>
#include <ATen/core/List.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <optional>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "lstm.h"
#include "ops.h"

namespace seqcast_rnn {
namespace {

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
      const Tensor zeros = lite::zeros({B, w_hh[l].size(-1)}, xs.options());
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
    if (l > 0) dmid[l] = lite::empty({T, w_ih[l].size(1), B}, opts);
  }
  const bool fp32 = top_cs.scalar_type() == at::kFloat;
  const FlushDenormals flush(top_cs.scalar_type(), blocks.count > 1);
  AT_DISPATCH_FLOATING_TYPES(top_cs.scalar_type(), "lstm_stack_backward", [&] {
    using T_ = scalar_t;
    std::vector<LstmBackwardRun<T_>> runs;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = w_hh[l].size(-1), F = w_ih[l].size(1);
      const Tensor zeros = lite::zeros({B, H}, opts);
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

}  // namespace seqcast_rnn
