#include "worker/engine/adapt/optim.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_addcdiv.h>
#include <ATen/ops/_foreach_addcmul.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_sqrt.h>

#include <cmath>
#include <map>

#include "worker/engine/common/error.h"

namespace restyle::engine {

Adam::Adam(std::vector<std::pair<std::string, torch::Tensor>> params,
           const AdamOptions& options)
    : options_(options) {
  slots_.reserve(params.size());
  for (auto& [name, param] : params) {
    Slot slot;
    slot.name = name;
    slot.param = param;
    slots_.push_back(std::move(slot));
  }
}

void Adam::Step() {
  torch::NoGradGuard no_grad;
  const double beta1 = options_.beta1;
  const double beta2 = options_.beta2;
  // torch 1.13 _single_tensor_adam's calls in its order, each applied to all
  // stepped parameters at once (_foreach_*: one multi-tensor kernel per call
  // on CUDA instead of one kernel per parameter and call; per tensor the same
  // ATen call elsewhere). Parameters are independent, so the result is the
  // per-parameter loop's.
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  std::vector<at::Scalar> bias_correction2_sqrts, neg_step_sizes;
  for (Slot& s : slots_) {
    torch::Tensor grad = s.param.grad();
    if (grad.defined()) {
      s.grad_allocated = true;
    } else if (options_.torch1_zero_grad && s.grad_allocated) {
      grad = torch::zeros_like(s.param);
    } else {
      continue;
    }
    if (!s.exp_avg.defined()) {
      s.exp_avg = torch::zeros_like(s.param, at::MemoryFormat::Preserve);
      s.exp_avg_sq = torch::zeros_like(s.param, at::MemoryFormat::Preserve);
    }
    s.step += 1;
    const double step = static_cast<double>(s.step);
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    params.push_back(s.param);
    grads.push_back(grad);
    exp_avgs.push_back(s.exp_avg);
    exp_avg_sqs.push_back(s.exp_avg_sq);
    bias_correction2_sqrts.emplace_back(std::sqrt(bias_correction2));
    neg_step_sizes.emplace_back(-(options_.lr / bias_correction1));
  }
  if (params.empty()) return;
  at::_foreach_mul_(exp_avgs, beta1);                    // exp_avg.mul_(beta1)
  at::_foreach_add_(exp_avgs, grads, 1 - beta1);         //   .add_(grad, 1 - beta1)
  at::_foreach_mul_(exp_avg_sqs, beta2);                 // exp_avg_sq.mul_(beta2)
  at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2);
  std::vector<torch::Tensor> denoms = at::_foreach_sqrt(exp_avg_sqs);
  at::_foreach_div_(denoms, bias_correction2_sqrts);     // (sqrt(v) / sqrt(bc2))
  at::_foreach_add_(denoms, options_.eps);               //   .add_(eps)
  at::_foreach_addcdiv_(params, exp_avgs, denoms, neg_step_sizes);
}

void Adam::ZeroGrad() {
  for (Slot& s : slots_) {
    if (s.param.grad().defined()) s.param.mutable_grad().reset();
  }
}

void Adam::MarkGradAllocated(const std::vector<std::string>& names) {
  for (const std::string& name : names)
    const_cast<Slot&>(Find(name)).grad_allocated = true;
}

void Adam::MarkAllGradAllocatedExcept(
    const std::vector<std::string>& excluded_prefixes) {
  for (Slot& s : slots_) {
    bool excluded = false;
    for (const std::string& prefix : excluded_prefixes) {
      if (s.name.compare(0, prefix.size(), prefix) == 0) excluded = true;
    }
    if (!excluded) s.grad_allocated = true;
  }
}

const Adam::Slot& Adam::Find(const std::string& name) const {
  for (const Slot& s : slots_) {
    if (s.name == name) return s;
  }
  Fail(ErrorCode::kInvalidArgument, "Adam: no parameter named '" + name + "'");
}

int64_t Adam::StepCount(const std::string& name) const {
  return Find(name).step;
}
torch::Tensor Adam::ExpAvg(const std::string& name) const {
  return Find(name).exp_avg;
}
torch::Tensor Adam::ExpAvgSq(const std::string& name) const {
  return Find(name).exp_avg_sq;
}
bool Adam::GradAllocated(const std::string& name) const {
  return Find(name).grad_allocated;
}

void EmaUpdate(torch::nn::Module& ema, const torch::nn::Module& current,
               double decay) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> source;
  for (const auto& item : current.named_parameters())
    source[item.key()] = item.value();
  for (const auto& item : current.named_buffers())
    source[item.key()] = item.value();
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (const auto& item : ema.named_parameters())
    targets.emplace_back(item.key(), item.value());
  for (const auto& item : ema.named_buffers())
    targets.emplace_back(item.key(), item.value());
  CheckArgument(targets.size() == source.size(),
                "EmaUpdate: the models have different state_dict sizes");
  std::vector<torch::Tensor> averaged, current_values;
  for (auto& [name, t] : targets) {
    auto it = source.find(name);
    CheckArgument(it != source.end(),
                  "EmaUpdate: '" + name + "' missing in the current model");
    CheckArgument(it->second.sizes() == t.sizes(),
                  "EmaUpdate: shape mismatch for '" + name + "'");
    if (!t.is_floating_point()) {
      t.copy_(it->second);
      continue;
    }
    averaged.push_back(t);
    current_values.push_back(it->second);
  }
  if (averaged.empty()) return;
  // Reference: target.copy_(target * decay + source * (1 - decay)): both
  // products rounded, then their sum; the same with one multi-tensor call
  // per step (see Adam::Step).
  std::vector<torch::Tensor> scaled = at::_foreach_mul(current_values, 1 - decay);
  at::_foreach_mul_(averaged, decay);
  at::_foreach_add_(averaged, scaled);
}

}  // namespace restyle::engine
