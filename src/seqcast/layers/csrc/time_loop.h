// The time loop of the batch-first recurrences (gru.cpp, simple_rnn.cpp), written once.
//
// Conventions (contiguous, float32 or float64, on the CPU):
//   xproj (B, T, G*H)  input projection of every step, input bias included
//   w_hh  (G*H, H)     torch's layout: the recurrent product is hm @ w_hh^T
//   rmask (B, H)       optional recurrent-dropout mask: hm = h * rmask feeds the recurrent
//                      product; the carried state is never masked (None = a mask of ones)
//   h0 (B, H)
//
// Every step does one matrix product with w_hh (ATen -> BLAS, into a preallocated buffer; at
// these sizes BLAS measured faster than plain loops) and one pass of plain C++ over the step's
// batch rows (the op's own, given to the loop as a function of t). The backward loop stores
// the pre-activation gradient of every step in dxproj (xproj enters linearly), and dw_hh is one
// matrix product over all B*T rows after the loop (recurrent_weight_grad).
//
// The "carry" buffer of a backward pass holds the part of dL/dh_{t-1} that does not go through
// the recurrent product (dh_T at the start, z*dh for the GRU); "dhm" holds dL/d(hm_{t-1}) from
// the step's recurrent product. The gradient reaching h_{t-1} is dout_{t-1} + carry + m * dhm.
#pragma once


#include "plumbing.h"

namespace seqcast_rnn {

// The forward loop's state: hm = h_{t-1} * m (h0 * m before the first step; each step's pass
// writes h_t * m into it) and pre = hm W^T of the current step, (B, pre_width).
struct ForwardLoop {
  Tensor mask, hm, pre;

  ForwardLoop(const Tensor& h0, const OptTensor& rmask, int64_t pre_width)
      : mask(mask_or_ones(rmask, h0)),
        hm(h0.mul(mask)),
        pre(lite::empty({h0.size(0), pre_width}, h0.options())) {}

  // For t = 0 .. T-1: pre = hm w_t, then step(t), the op's pass over the rows of step t.
  template <typename Step>
  void run(int64_t T, const Tensor& w_t, const Step& step) {
    for (int64_t t = 0; t < T; ++t) {
      lite::mm_out(pre, hm, w_t);
      step(t);
    }
  }
};

// The backward loop's state: carry (dh_T at first) and dhm = dL/d(hm_t) from step t+1.
struct BackwardLoop {
  Tensor mask, carry, dhm;

  BackwardLoop(const Tensor& h0, const Tensor& dh_n, const OptTensor& rmask)
      : mask(mask_or_ones(rmask, h0)), carry(dh_n.clone()), dhm(lite::zeros_like(h0)) {}

  // For t = T-1 .. 0: step(t) runs the op's pass and returns the gradient (B, rows of w) that
  // the recurrent product takes back to the previous state: dhm = step(t) w.
  template <typename Step>
  void run(int64_t T, const Tensor& w, const Step& step) {
    for (int64_t t = T - 1; t >= 0; --t) lite::mm_out(dhm, step(t), w);
  }

  // dL/dh0 once the loop has run.
  Tensor dh0() const { return carry.add(mask.mul(dhm)); }
};

}  // namespace seqcast_rnn
