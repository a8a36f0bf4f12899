// Parameter updates of the trainers: Adam exactly as torch 1.13's
// torch.optim.Adam (single-tensor path), and the EMA of a generator.
//
// Adam (per parameter, step t counted per parameter):
//   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p -= (lr / (1 - beta1^t)) * m / denom
// computed with the same ATen calls in the same order as torch 1.13, so one
// step matches the reference to float rounding. Each call covers all stepped
// parameters at once (ATen's _foreach_* ops: one multi-tensor kernel per call
// on CUDA; on the CPU the per-tensor call itself, so bit-identical there).
//
// Which parameters are stepped: torch < 2.0 zero_grad() zero-fills every
// .grad that exists, so a parameter that ever received a gradient is stepped
// by every later step (with a zero gradient when it got none: value
// unchanged when beta1 = 0, but its step count and v advance). Adam models
// that with a per-parameter "gradient allocated" flag: set when a step sees a
// defined .grad, or explicitly by MarkGradAllocated (for gradients the
// reference computes and we do not, e.g. the generator weights during layer
// selection). With `torch1_zero_grad` false, parameters without a defined
// .grad are skipped (torch >= 2.0).
//
// Thread-safety: not thread-safe; owned by one training job.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_OPTIM_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_OPTIM_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace restyle::engine {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool torch1_zero_grad = true;  // see the file comment
};

class Adam {
 public:
  // `params`: (name, parameter) pairs, e.g. module.named_parameters(). The
  // tensors are held by reference (shared storage) and updated in place.
  Adam(std::vector<std::pair<std::string, torch::Tensor>> params,
       const AdamOptions& options);

  // Steps every parameter with a defined .grad, and (torch1_zero_grad) every
  // parameter whose gradient is allocated, with a zero gradient. Runs under
  // NoGradGuard. Does not clear gradients.
  void Step();

  // Clears the .grad of every parameter (set to undefined). The allocation
  // flags are kept, so with torch1_zero_grad the next Step behaves like
  // torch 1.13 after zero_grad().
  void ZeroGrad();

  // Marks the named parameters as holding an allocated (zero) gradient.
  // Throws Error(kInvalidArgument) for an unknown name.
  void MarkGradAllocated(const std::vector<std::string>& names);
  // Marks every parameter whose name does not start with one of
  // `excluded_prefixes`.
  void MarkAllGradAllocatedExcept(
      const std::vector<std::string>& excluded_prefixes);

  // Per-parameter state (step 0 and undefined tensors before the first step).
  int64_t StepCount(const std::string& name) const;
  torch::Tensor ExpAvg(const std::string& name) const;
  torch::Tensor ExpAvgSq(const std::string& name) const;
  bool GradAllocated(const std::string& name) const;

  const AdamOptions& options() const { return options_; }
  void set_lr(double lr) { options_.lr = lr; }

 private:
  struct Slot {
    std::string name;
    torch::Tensor param;
    torch::Tensor exp_avg;
    torch::Tensor exp_avg_sq;
    int64_t step = 0;
    bool grad_allocated = false;
  };
  const Slot& Find(const std::string& name) const;

  std::vector<Slot> slots_;
  AdamOptions options_;
};

// ema = ema * decay + current * (1 - decay) for EVERY state_dict entry
// (parameters and buffers, e.g. noise buffers) of `ema`, matched by name in
// `current`; computed as the reference does (two products, then the sum), so
// even equal entries drift by float rounding like the reference. Throws
// Error(kInvalidArgument) when names or shapes differ.
void EmaUpdate(torch::nn::Module& ema, const torch::nn::Module& current,
               double decay);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_OPTIM_H_
