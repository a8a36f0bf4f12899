#include "worker/engine/adapt/optim.h"

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
    // torch 1.13 _single_tensor_adam, same calls in the same order.
    s.step += 1;
    s.exp_avg.mul_(beta1).add_(grad, 1 - beta1);
    s.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    const double step = static_cast<double>(s.step);
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    const double step_size = options_.lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    torch::Tensor denom =
        (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
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
    // Reference: target.copy_(target * decay + source * (1 - decay)).
    t.copy_(t * decay + it->second * (1 - decay));
  }
}

}  // namespace restyle::engine
