// Every op of the seqcast_rnn library, as register.cpp registers them: the recurrence op pairs
// (lstm.cpp, lstm_stack.cpp, gru.cpp, simple_rnn.cpp), their autograd nodes written in
// C++ (autograd.cpp) and the MinGRU/MinLSTM scan (scan_forward.cpp, scan_backward.cpp). Shapes and outputs are described
// where each is defined.
#pragma once

// c10::List is declared by ATen/core/Tensor.h; only the files that take one apart include
// ATen/core/List.h (a second and a half of parsing in each file that includes it).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

namespace seqcast_rnn {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_layer_forward(const at::Tensor& xs, const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const std::optional<at::Tensor>& bias, const at::Tensor& h0,
                   const at::Tensor& c0, const std::optional<at::Tensor>& peephole,
                   const std::optional<at::Tensor>& rmask);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_layer_backward(const at::Tensor& dout, const at::Tensor& dh_n, const at::Tensor& dc_n,
                    const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& c0,
                    const std::optional<at::Tensor>& peephole,
                    const std::optional<at::Tensor>& rmask, const at::Tensor& cs,
                    const at::Tensor& gates, const at::Tensor& u);

std::tuple<at::Tensor, at::Tensor> simple_rnn_forward(const at::Tensor& xproj,
                                                      const at::Tensor& w_hh,
                                                      const at::Tensor& h0, int64_t activation,
                                                      const std::optional<at::Tensor>& rmask);

std::tuple<at::Tensor, at::Tensor, at::Tensor> simple_rnn_backward(
    const at::Tensor& dout, const at::Tensor& dh_n, const at::Tensor& w_hh, const at::Tensor& h0,
    int64_t activation, const std::optional<at::Tensor>& rmask, const at::Tensor& out);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ln_simple_rnn_forward(
    const at::Tensor& xproj, const at::Tensor& w_hh, const at::Tensor& h0,
    const at::Tensor& gamma, const at::Tensor& beta, double eps, int64_t activation,
    const std::optional<at::Tensor>& rmask);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ln_simple_rnn_backward(
    const at::Tensor& dout, const at::Tensor& dh_n, const at::Tensor& w_hh, const at::Tensor& h0,
    const at::Tensor& gamma, int64_t activation, const std::optional<at::Tensor>& rmask,
    const at::Tensor& out, const at::Tensor& shat, const at::Tensor& rstd);

std::vector<at::Tensor> lstm_stack_forward(const at::Tensor& xs, at::TensorList w_ih,
                                           at::TensorList w_hh,
                                           const c10::List<std::optional<at::Tensor>>& bias,
                                           const c10::List<std::optional<at::Tensor>>& peephole,
                                           int64_t workers);

std::vector<at::Tensor> lstm_stack_backward(const at::Tensor& dout, at::TensorList w_ih,
                                            at::TensorList w_hh,
                                            const c10::List<std::optional<at::Tensor>>& peephole,
                                            at::TensorList saved, int64_t workers);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_forward(
    const at::Tensor& xproj, const at::Tensor& w_hh, const at::Tensor& h0,
    const std::optional<at::Tensor>& b_hh, bool reset_after,
    const std::optional<at::Tensor>& rmask);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_backward(
    const at::Tensor& dout, const at::Tensor& dh_n, const at::Tensor& w_hh, const at::Tensor& h0,
    bool reset_after, const std::optional<at::Tensor>& rmask, const at::Tensor& out,
    const at::Tensor& gates, const at::Tensor& rh);

// The wavefront's counters: [calls run as a wavefront, of which too little overlap, calls sent
// to one thread, whether this build has OpenMP]; `reset` zeroes them and reopens the wavefront.
std::vector<int64_t> wavefront_stats(bool reset);

// With autograd: lstm_stack_forward's arguments, the top layer's output.
at::Tensor lstm_stack(const at::Tensor& xs, at::TensorList w_ih, at::TensorList w_hh,
                      const c10::List<std::optional<at::Tensor>>& bias,
                      const c10::List<std::optional<at::Tensor>>& peephole, int64_t workers);

// With autograd: gru_forward's arguments, (out, h_T).
std::tuple<at::Tensor, at::Tensor> gru_sequence(const at::Tensor& xproj, const at::Tensor& w_hh,
                                                const at::Tensor& h0,
                                                const std::optional<at::Tensor>& b_hh,
                                                bool reset_after,
                                                const std::optional<at::Tensor>& rmask);

// With autograd: lstm_layer_forward's arguments, (out, h_T, c_T).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_layer(
    const at::Tensor& xs, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const std::optional<at::Tensor>& bias, const at::Tensor& h0, const at::Tensor& c0,
    const std::optional<at::Tensor>& peephole, const std::optional<at::Tensor>& rmask);

// With autograd: simple_rnn_forward's arguments, (out, h_T).
std::tuple<at::Tensor, at::Tensor> simple_rnn_sequence(const at::Tensor& xproj,
                                                       const at::Tensor& w_hh,
                                                       const at::Tensor& h0, int64_t activation,
                                                       const std::optional<at::Tensor>& rmask);

// With autograd: ln_simple_rnn_forward's arguments, (out, h_T).
std::tuple<at::Tensor, at::Tensor> ln_simple_rnn_sequence(
    const at::Tensor& xproj, const at::Tensor& w_hh, const at::Tensor& h0,
    const at::Tensor& gamma, const at::Tensor& beta, double eps, int64_t activation,
    const std::optional<at::Tensor>& rmask);

}  // namespace seqcast_rnn

namespace seqcast_scan {

at::Tensor min_rnn_scan_forward(const at::Tensor& x, const at::Tensor& weight,
                                const at::Tensor& bias, const std::optional<at::Tensor>& h0,
                                int64_t kind, int64_t chunks);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> min_rnn_scan_backward(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const std::optional<at::Tensor>& h0, const at::Tensor& out, int64_t kind, int64_t chunks,
    bool need_dx);

}  // namespace seqcast_scan
