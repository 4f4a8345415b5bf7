// The ATen functions the kernel files call that are not Tensor methods, defined as ATen's own
// headers define them (ATen/ops/mm.h, ...) but on the operator entry points of
// ATen/ops/*_ops.h. The public headers each pull in ATen/Context.h and more: about 3 s of
// parsing in every file that includes one, paid by the user on first use, where these need
// nothing beyond ATen/core/Tensor.h. Same calls, same results. (at::cat is plumbing.h's concat.)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm_ops.h>
#include <ATen/ops/empty_ops.h>
#include <ATen/ops/mm_ops.h>
#include <ATen/ops/ones_like_ops.h>
#include <ATen/ops/zeros_like_ops.h>
#include <ATen/ops/zeros_ops.h>

namespace seqcast_rnn::lite {

inline at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  return at::_ops::mm::call(self, mat2);
}

inline at::Tensor& mm_out(at::Tensor& out, const at::Tensor& self, const at::Tensor& mat2) {
  return at::_ops::mm_out::call(self, mat2, out);
}

inline at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2) {
  return at::_ops::addmm::call(self, mat1, mat2, 1, 1);
}

inline at::Tensor empty(at::IntArrayRef size, at::TensorOptions options) {
  return at::_ops::empty_memory_format::call(
      c10::fromIntArrayRefSlow(size), c10::optTypeMetaToScalarType(options.dtype_opt()),
      options.layout_opt(), options.device_opt(), options.pinned_memory_opt(),
      c10::impl::check_tensor_options_and_extract_memory_format(options, std::nullopt));
}

inline at::Tensor zeros(at::IntArrayRef size, at::TensorOptions options) {
  return at::_ops::zeros::call(c10::fromIntArrayRefSlow(size),
                               c10::optTypeMetaToScalarType(options.dtype_opt()),
                               options.layout_opt(), options.device_opt(),
                               options.pinned_memory_opt());
}

inline at::Tensor zeros_like(const at::Tensor& self) {
  const at::TensorOptions options;
  return at::_ops::zeros_like::call(
      self, c10::optTypeMetaToScalarType(options.dtype_opt()), options.layout_opt(),
      options.device_opt(), options.pinned_memory_opt(),
      c10::impl::check_tensor_options_and_extract_memory_format(options, std::nullopt));
}

inline at::Tensor ones_like(const at::Tensor& self) {
  const at::TensorOptions options;
  return at::_ops::ones_like::call(
      self, c10::optTypeMetaToScalarType(options.dtype_opt()), options.layout_opt(),
      options.device_opt(), options.pinned_memory_opt(),
      c10::impl::check_tensor_options_and_extract_memory_format(options, std::nullopt));
}

}  // namespace seqcast_rnn::lite
