// The seqcast_rnn operator library: every op's schema, in one place. Kept apart from the
// kernels because <torch/library.h> takes seconds to compile; this file builds beside them on
// another core. Loaded by seqcast/layers/_compiled.py as torch.ops.seqcast_rnn.

#include <torch/library.h>

#include "ops.h"

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
  m.def(
      "min_rnn_scan_forward(Tensor x, Tensor weight, Tensor bias, Tensor? h0, int kind, "
      "int chunks) -> Tensor",
      &seqcast_scan::min_rnn_scan_forward);
  m.def(
      "min_rnn_scan_backward(Tensor dout, Tensor x, Tensor weight, Tensor bias, Tensor? h0, "
      "Tensor out, int kind, int chunks, bool need_dx) -> (Tensor, Tensor, Tensor, Tensor)",
      &seqcast_scan::min_rnn_scan_backward);
}
