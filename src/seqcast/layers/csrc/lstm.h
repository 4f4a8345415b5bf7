// What the LSTM's two files share: lstm.cpp runs a layer's steps (the matrix products and the
// elementwise pass), sets up and finishes a layer's pass and defines the single-layer ops;
// lstm_stack.cpp runs several layers' steps as one op.
//
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
// The templates below are instantiated for float and double in the file that defines them,
// so a step is compiled once and the layer and the stack run the very same code.
#pragma once

#include "plumbing.h"

namespace seqcast_rnn {

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

  void step(int64_t t, int64_t b0, int64_t b1) const;  // columns [b0, b1) of step t
};

// One LSTM layer's backward pass, step by step from the last. Step t takes dL/dh_t from above
// (dout + t * dout_stride, (H, B)) and from step t+1 (dU rows [0, H) and the carry), and
// gives dz_t, dU = Wcat^T dz_t (its rows [H, R), dL/dx_t, go to dx + t * dx_stride) and
// dWcat += dz_t u_t^T (kept transposed, as dWcat^T += u_t dz_t^T, in `dw`).
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

  void step(int64_t t, int64_t b0, int64_t b1, T* dw) const;
};

extern template struct LstmForwardRun<float>;
extern template struct LstmForwardRun<double>;
extern template struct LstmBackwardRun<float>;
extern template struct LstmBackwardRun<double>;

// The tensors of one layer's forward pass: out (T, H, B) (may stay empty inside a stack),
// cs, gates and u, saved for the backward pass, h_n and c_n (B, H); plus the scratch.
struct LstmForwardBuffers {
  Tensor wcat, u, out, cs, gates, scratch, h_n, c_n;
};

LstmForwardBuffers lstm_forward_buffers(const Tensor& w_ih, const Tensor& w_hh, int64_t T,
                                        int64_t B, bool with_out, const at::TensorOptions& opts);

// Fills u_0's state rows (hm_0 = h0 * m) and the transposed c0 and mask; returns the run with
// its h_t going to (h_out, h_stride).
template <typename T>
LstmForwardRun<T> lstm_forward_run(LstmForwardBuffers& buf, const Tensor& h0, const Tensor& c0,
                                   const OptTensor& bias, const OptTensor& peephole,
                                   const OptTensor& rmask, T* h_out, int64_t h_stride);

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
                                          const at::TensorOptions& opts);

template <typename T>
LstmBackwardRun<T> lstm_backward_run(LstmBackwardBuffers& buf, const Tensor& dh_n,
                                     const Tensor& dc_n, const Tensor& c0,
                                     const OptTensor& peephole, const OptTensor& rmask,
                                     const Tensor& cs, const Tensor& gates, const Tensor& u,
                                     const T* dout, int64_t dout_stride, T* dx,
                                     int64_t dx_stride);

// The per-block dWcat^T of column block k (R, G), in the zeroed buffer after dU, db and dp.
template <typename T>
T* lstm_block_dw(const LstmBackwardBuffers& buf, int64_t k, int64_t H, int64_t B, int64_t R) {
  return buf.zeroed.data_ptr<T>() + R * B + 4 * H * B + 3 * H * B + k * 4 * H * R;
}

// After the last step: dWcat block sums in block order (split into dW_hh | dW_ih), db and dp
// summed over the batch, dh0 = carry + m * dhm_{-1} and dc0 = dc back to (B, H).
template <typename T>
void lstm_backward_finish(LstmBackwardBuffers& buf, const LstmBackwardRun<T>& run);

}  // namespace seqcast_rnn
