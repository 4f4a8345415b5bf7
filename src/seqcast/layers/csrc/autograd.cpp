// Autograd nodes written in C++ for the recurrence ops (ops.h): the LSTM layer and stack, the
// GRU, the SimpleRNN and the layer-normalised SimpleRNN. A Python
// torch.autograd.Function around an op pair costs ~150 us a training step (its apply, the
// Python backward and the engine's hand-offs to Python) against ~700 us for the two LSTM
// layers' ops themselves at batch 32, 20 units. Kept apart from the kernels: the autograd
// headers add seconds to a build, and a separate file builds beside them on another core.
// Every backward pass refuses create_graph=True, as a Python once_differentiable function
// would: the kernels' gradients are not themselves differentiable, so a graph of them would
// be silently wrong.

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include "ops.h"

namespace seqcast_rnn {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_not_differentiable(const char* op, const char* instead) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op,
              ": its backward pass is not differentiable (create_graph=True, or a double "
              "backward); ", instead, " for higher derivatives");
}

// A gradient the engine gave as undefined (an output the loss does not use) as zeros.
Tensor grad_or_zeros(const Tensor& grad, const Tensor& like) {
  return grad.defined() ? grad.contiguous() : at::zeros_like(like);
}

// Inputs: xs, every layer's w_ih, every w_hh, the biases and peepholes that exist (autograd
// takes no undefined tensors in a list) and which layers have them; backward gives one
// gradient per input, in that order (none for the flags and `workers`).
struct LstmStackFunction : public torch::autograd::Function<LstmStackFunction> {
  using Flags = std::vector<bool>;

  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& xs,
                        at::TensorList w_ih, at::TensorList w_hh, at::TensorList biases,
                        at::TensorList peepholes, const Flags& has_bias, const Flags& has_peephole,
                        int64_t workers) {
    std::vector<Tensor> out = lstm_stack_forward(xs, w_ih, w_hh, per_layer(biases, has_bias),
                                                 per_layer(peepholes, has_peephole), workers);
    std::vector<Tensor> saved(w_ih.begin(), w_ih.end());
    saved.insert(saved.end(), w_hh.begin(), w_hh.end());
    saved.insert(saved.end(), peepholes.begin(), peepholes.end());
    saved.insert(saved.end(), out.begin() + 1, out.end());  // cs, gates, u per layer
    ctx->save_for_backward(saved);
    ctx->saved_data["layers"] = static_cast<int64_t>(w_ih.size());
    ctx->saved_data["has_bias"] = flag_list(has_bias);
    ctx->saved_data["has_peephole"] = flag_list(has_peephole);
    ctx->saved_data["workers"] = workers;
    return out[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    check_not_differentiable("lstm_stack", "give the LSTM layers implementation='loop'");
    const int64_t L = ctx->saved_data["layers"].toInt();
    const Flags has_bias = flags(ctx->saved_data["has_bias"]);
    const Flags has_peephole = flags(ctx->saved_data["has_peephole"]);
    const int64_t peepholes = std::count(has_peephole.begin(), has_peephole.end(), true);
    const std::vector<Tensor> saved = ctx->get_saved_variables();
    const at::TensorList all(saved);
    const at::TensorList w_ih = all.slice(0, L), w_hh = all.slice(L, L);
    const at::TensorList states = all.slice(2 * L + peepholes);
    const Tensor dout =
        grads[0].defined() ? grads[0].contiguous() : at::zeros_like(states[3 * L - 3]);
    const std::vector<Tensor> d =
        lstm_stack_backward(dout, w_ih, w_hh, per_layer(all.slice(2 * L, peepholes), has_peephole),
                            states, ctx->saved_data["workers"].toInt());
    // d: dxs, then per layer dw_ih, dw_hh, dbias, dpeep
    torch::autograd::variable_list result{d[0]};
    for (int64_t l = 0; l < L; ++l) result.push_back(d[1 + 4 * l]);
    for (int64_t l = 0; l < L; ++l) result.push_back(d[2 + 4 * l]);
    for (int64_t l = 0; l < L; ++l) {
      if (has_bias[l]) result.push_back(d[3 + 4 * l]);
    }
    for (int64_t l = 0; l < L; ++l) {
      if (has_peephole[l]) result.push_back(d[4 + 4 * l]);
    }
    result.resize(result.size() + 3);  // has_bias, has_peephole, workers
    return result;
  }

  static c10::List<bool> flag_list(const Flags& values) {
    c10::List<bool> list;
    for (const bool v : values) list.push_back(v);
    return list;
  }
  static Flags flags(const c10::IValue& saved) {
    Flags values;
    for (const bool v : saved.toBoolList()) values.push_back(v);
    return values;
  }

  // The optional per-layer list of the kernels from the tensors of the layers that have one.
  static c10::List<std::optional<Tensor>> per_layer(at::TensorList present, const Flags& has) {
    c10::List<std::optional<Tensor>> list;
    size_t next = 0;
    for (const bool h : has) {
      list.push_back(h ? std::optional<Tensor>(present[next++]) : std::nullopt);
    }
    return list;
  }
};


std::optional<Tensor> optional_of(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

Tensor defined_or_empty(const std::optional<Tensor>& t) {
  return t.has_value() ? *t : Tensor();
}

// One LSTM layer (lstm_layer_forward / lstm_layer_backward). Inputs: xs, w_ih, w_hh, bias
// (optional), h0, c0, peephole (optional), rmask (optional); outputs out, h_T, c_T.
struct LstmLayerFunction : public torch::autograd::Function<LstmLayerFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& xs, const Tensor& w_ih,
                               const Tensor& w_hh, const std::optional<Tensor>& bias,
                               const Tensor& h0, const Tensor& c0,
                               const std::optional<Tensor>& peephole,
                               const std::optional<Tensor>& rmask) {
    auto [out, h_n, c_n, cs, gates, u] =
        lstm_layer_forward(xs, w_ih, w_hh, bias, h0, c0, peephole, rmask);
    ctx->save_for_backward({w_ih, w_hh, h0, c0, defined_or_empty(peephole),
                            defined_or_empty(rmask), cs, gates, u});
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return {out, h_n, c_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_not_differentiable("lstm_layer", "give the LSTM layer implementation='loop'");
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_ih = s[0], &w_hh = s[1], &h0 = s[2], &c0 = s[3], &peephole = s[4];
    const Tensor &cs = s[6];  // (T, H, B), the shape of out
    auto [dxs, dw_ih, dw_hh, dbias, dh0, dc0, dpeep] = lstm_layer_backward(
        grad_or_zeros(grads[0], cs), grad_or_zeros(grads[1], h0), grad_or_zeros(grads[2], c0),
        w_ih, w_hh, c0, optional_of(peephole), optional_of(s[5]), cs, s[7], s[8]);
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {dxs, dw_ih, dw_hh, has_bias ? dbias : Tensor(), dh0, dc0,
            peephole.defined() ? dpeep : Tensor(), Tensor()};
  }
};

// The SimpleRNN over a sequence. Inputs: xproj, w_hh, h0, activation, rmask (optional);
// outputs out, h_T.
struct SimpleRnnFunction : public torch::autograd::Function<SimpleRnnFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& xproj, const Tensor& w_hh,
                               const Tensor& h0, int64_t activation,
                               const std::optional<Tensor>& rmask) {
    auto [out, h_n] = simple_rnn_forward(xproj, w_hh, h0, activation, rmask);
    ctx->save_for_backward({w_hh, h0, defined_or_empty(rmask), out});
    ctx->saved_data["activation"] = activation;
    return {out, h_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_not_differentiable("simple_rnn_sequence", "give the layer implementation='loop'");
    const variable_list s = ctx->get_saved_variables();
    auto [dx, dw, dh0] = simple_rnn_backward(
        grad_or_zeros(grads[0], s[3]), grad_or_zeros(grads[1], s[1]), s[0], s[1],
        ctx->saved_data["activation"].toInt(), optional_of(s[2]), s[3]);
    return {dx, dw, dh0, Tensor(), Tensor()};
  }
};

// The layer-normalised SimpleRNN over a sequence. Inputs: xproj, w_hh, h0, gamma, beta, eps,
// activation, rmask (optional); outputs out, h_T.
struct LnSimpleRnnFunction : public torch::autograd::Function<LnSimpleRnnFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& xproj, const Tensor& w_hh,
                               const Tensor& h0, const Tensor& gamma, const Tensor& beta,
                               double eps, int64_t activation,
                               const std::optional<Tensor>& rmask) {
    auto [out, h_n, shat, rstd] =
        ln_simple_rnn_forward(xproj, w_hh, h0, gamma, beta, eps, activation, rmask);
    ctx->save_for_backward({w_hh, h0, gamma, defined_or_empty(rmask), out, shat, rstd});
    ctx->saved_data["activation"] = activation;
    return {out, h_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_not_differentiable("ln_simple_rnn_sequence", "give the layer implementation='loop'");
    const variable_list s = ctx->get_saved_variables();
    auto [dx, dw, dh0, dgamma, dbeta] = ln_simple_rnn_backward(
        grad_or_zeros(grads[0], s[4]), grad_or_zeros(grads[1], s[1]), s[0], s[1], s[2],
        ctx->saved_data["activation"].toInt(), optional_of(s[3]), s[4], s[5], s[6]);
    return {dx, dw, dh0, dgamma, dbeta, Tensor(), Tensor(), Tensor()};
  }
};

// The GRU over a sequence (gru_forward / gru_backward). Inputs: xproj, w_hh, h0, b_hh
// (optional), reset_after, rmask (optional); outputs out, h_T.
struct GruSequenceFunction : public torch::autograd::Function<GruSequenceFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& xproj, const Tensor& w_hh,
                               const Tensor& h0, const std::optional<Tensor>& b_hh,
                               bool reset_after, const std::optional<Tensor>& rmask) {
    auto [out, h_n, gates, rh] = gru_forward(xproj, w_hh, h0, b_hh, reset_after, rmask);
    ctx->save_for_backward({w_hh, h0, defined_or_empty(rmask), out, gates, rh});
    ctx->saved_data["reset_after"] = reset_after;
    ctx->saved_data["has_bias"] = b_hh.has_value() && b_hh->defined();
    return {out, h_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_not_differentiable("gru_sequence", "give the GRU layer implementation='loop'");
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &w_hh = saved[0], &h0 = saved[1], &mask = saved[2], &out = saved[3];
    const std::optional<Tensor> rmask = optional_of(mask);
    auto [dx, dw, dh0, db] =
        gru_backward(grad_or_zeros(grads[0], out), grad_or_zeros(grads[1], h0), w_hh, h0,
                     ctx->saved_data["reset_after"].toBool(), rmask, out, saved[4], saved[5]);
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {dx, dw, dh0, has_bias ? db : Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor lstm_stack(const Tensor& xs, at::TensorList w_ih, at::TensorList w_hh,
                  const c10::List<std::optional<Tensor>>& bias,
                  const c10::List<std::optional<Tensor>>& peephole, int64_t workers) {
  const auto split = [](const c10::List<std::optional<Tensor>>& list,
                        std::vector<Tensor>& present, LstmStackFunction::Flags& has) {
    for (const std::optional<Tensor> t : list) {
      has.push_back(t.has_value() && t->defined());
      if (has.back()) present.push_back(*t);
    }
  };
  std::vector<Tensor> biases, peepholes;
  LstmStackFunction::Flags has_bias, has_peephole;
  split(bias, biases, has_bias);
  split(peephole, peepholes, has_peephole);
  return LstmStackFunction::apply(xs, w_ih, w_hh, at::TensorList(biases),
                                  at::TensorList(peepholes), has_bias, has_peephole, workers);
}

std::tuple<Tensor, Tensor> gru_sequence(const Tensor& xproj, const Tensor& w_hh, const Tensor& h0,
                                        const std::optional<Tensor>& b_hh, bool reset_after,
                                        const std::optional<Tensor>& rmask) {
  const variable_list out =
      GruSequenceFunction::apply(xproj, w_hh, h0, b_hh, reset_after, rmask);
  return {out[0], out[1]};
}

std::tuple<Tensor, Tensor, Tensor> lstm_layer(const Tensor& xs, const Tensor& w_ih,
                                              const Tensor& w_hh,
                                              const std::optional<Tensor>& bias,
                                              const Tensor& h0, const Tensor& c0,
                                              const std::optional<Tensor>& peephole,
                                              const std::optional<Tensor>& rmask) {
  const variable_list out =
      LstmLayerFunction::apply(xs, w_ih, w_hh, bias, h0, c0, peephole, rmask);
  return {out[0], out[1], out[2]};
}

std::tuple<Tensor, Tensor> simple_rnn_sequence(const Tensor& xproj, const Tensor& w_hh,
                                               const Tensor& h0, int64_t activation,
                                               const std::optional<Tensor>& rmask) {
  const variable_list out = SimpleRnnFunction::apply(xproj, w_hh, h0, activation, rmask);
  return {out[0], out[1]};
}

std::tuple<Tensor, Tensor> ln_simple_rnn_sequence(const Tensor& xproj, const Tensor& w_hh,
                                                  const Tensor& h0, const Tensor& gamma,
                                                  const Tensor& beta, double eps,
                                                  int64_t activation,
                                                  const std::optional<Tensor>& rmask) {
  const variable_list out =
      LnSimpleRnnFunction::apply(xproj, w_hh, h0, gamma, beta, eps, activation, rmask);
  return {out[0], out[1]};
}

}  // namespace seqcast_rnn
