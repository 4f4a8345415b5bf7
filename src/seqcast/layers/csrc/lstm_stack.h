// Stacked LSTM layers as one op (recurrences.cpp) and as one autograd node
// (lstm_stack_autograd.cpp). Shapes and outputs are described where each is defined.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace seqcast_rnn {

std::vector<at::Tensor> lstm_stack_forward(const at::Tensor& xs, at::TensorList w_ih,
                                           at::TensorList w_hh,
                                           const c10::List<std::optional<at::Tensor>>& bias,
                                           const c10::List<std::optional<at::Tensor>>& peephole,
                                           int64_t workers);

std::vector<at::Tensor> lstm_stack_backward(const at::Tensor& dout, at::TensorList w_ih,
                                            at::TensorList w_hh,
                                            const c10::List<std::optional<at::Tensor>>& peephole,
                                            at::TensorList saved, int64_t workers);

// The forward op with autograd: lstm_stack_forward's arguments, the top layer's output.
at::Tensor lstm_stack(const at::Tensor& xs, at::TensorList w_ih, at::TensorList w_hh,
                      const c10::List<std::optional<at::Tensor>>& bias,
                      const c10::List<std::optional<at::Tensor>>& peephole, int64_t workers);

}  // namespace seqcast_rnn
