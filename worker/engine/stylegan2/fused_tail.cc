#include "worker/engine/stylegan2/fused_tail.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <atomic>
#include <string>
#include <tuple>

#include "worker/engine/common/error.h"

#if RESTYLE_HAVE_CUDA_KERNELS
#include <c10/cuda/CUDAStream.h>

#include "worker/engine/stylegan2/cuda/styled_tail.h"
#endif

namespace restyle::engine {
namespace {

std::atomic<bool> g_cuda_kernels_enabled{true};

#if RESTYLE_HAVE_CUDA_KERNELS
// Whether the kernels take activations like y: enabled, a dense NCHW or
// channels-last float32 or bfloat16 CUDA tensor.
bool KernelsTake(const torch::Tensor& y) {
  return g_cuda_kernels_enabled.load() && y.is_cuda() && y.dim() == 4 &&
         (y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16) &&
         (y.is_contiguous() || y.is_contiguous(at::MemoryFormat::ChannelsLast));
}

// The kernel's path; false when y does not qualify (LibTorch's path then).
bool StyledTailCuda(const torch::Tensor& y, const torch::Tensor& gain, const torch::Tensor& bias,
                    const torch::Tensor& noise, const torch::Tensor& noise_weight) {
  if (!KernelsTake(y)) return false;
  const bool nchw = y.is_contiguous();
  const int64_t n = y.size(0), c = y.size(1), hw = y.size(2) * y.size(3);
  torch::Tensor g, b, nz, nw;
  if (gain.defined()) {
    g = gain.to(at::kFloat).contiguous();
    b = bias.to(at::kFloat).contiguous();
    CheckArgument(g.numel() == n * c && b.numel() == c, "StyledTail: gain (N,C) and bias (C)");
  }
  cuda::StyledTailArgs args;
  if (noise.defined()) {
    nz = noise.to(y.scalar_type()).contiguous();
    nw = noise_weight.to(at::kFloat).contiguous();
    CheckArgument(nz.numel() == hw || nz.numel() == n * hw, "StyledTail: noise (N or 1,1,H,W)");
    args.noise = nz.data_ptr();
    args.noise_weight = nw.data_ptr<float>();
    args.noise_batch = nz.numel() / hw;
  }
  args.y = y.data_ptr();
  args.bfloat16 = y.scalar_type() == at::kBFloat16;
  args.channels_last = !nchw;
  args.gain = g.defined() ? g.data_ptr<float>() : nullptr;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  args.n = n;
  args.c = c;
  args.hw = hw;
  const char* error =
      cuda::LaunchStyledTail(args, c10::cuda::getCurrentCUDAStream(y.get_device()).stream());
  if (*error != '\0') Fail(ErrorCode::kInternal, std::string("StyledTail kernel: ") + error);
  return true;
}
#endif

constexpr double kSqrt2 = 1.4142135623730951;

// ------------------------------------------------- StyledTailTrain, LibTorch

torch::Tensor PreActivation(const torch::Tensor& y, const torch::Tensor& demod,
                            const torch::Tensor& noise, const torch::Tensor& noise_weight,
                            const torch::Tensor& bias) {
  const int64_t n = y.size(0), c = y.size(1);
  return (y * demod.view({n, c, 1, 1}) + noise_weight * noise) + bias.view({1, c, 1, 1});
}

// (grad_y, grad_demod, grad_noise_weight, grad_bias).
using TailGrads = std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor>;

TailGrads TrainBackwardAten(const torch::Tensor& grad, const torch::Tensor& y,
                            const torch::Tensor& demod, const torch::Tensor& noise,
                            const torch::Tensor& noise_weight, const torch::Tensor& bias) {
  const int64_t n = y.size(0), c = y.size(1);
  const torch::Tensor t = PreActivation(y, demod, noise, noise_weight, bias);
  const torch::Tensor g = at::leaky_relu_backward(grad * kSqrt2, t, 0.2, false);
  return {g * demod.view({n, c, 1, 1}),
          (g * y).sum({2, 3}, false, at::kFloat).to(demod.scalar_type()),
          (g * noise).sum(at::kFloat).view({1}).to(noise_weight.scalar_type()),
          g.sum({0, 2, 3}, false, at::kFloat).to(bias.scalar_type())};
}

#if RESTYLE_HAVE_CUDA_KERNELS
// ----------------------------------------------------- StyledTailTrain, CUDA

cuda::StyledTailTrainArgs TrainArgs(const torch::Tensor& y, const torch::Tensor& demod,
                                    const torch::Tensor& noise,
                                    const torch::Tensor& noise_weight, const torch::Tensor& bias,
                                    std::vector<torch::Tensor>* keep) {
  const int64_t n = y.size(0), c = y.size(1), hw = y.size(2) * y.size(3);
  auto d = demod.to(at::kFloat).contiguous();
  auto b = bias.to(at::kFloat).contiguous();
  auto nw = noise_weight.to(at::kFloat).contiguous();
  auto nz = noise.to(y.scalar_type()).contiguous();
  CheckArgument(d.numel() == n * c && b.numel() == c && nw.numel() == 1 &&
                    (nz.numel() == hw || nz.numel() == n * hw),
                "StyledTailTrain: demod (N,C), bias (C), noise_weight (1), noise (N or 1,1,H,W)");
  *keep = {d, b, nw, nz};
  cuda::StyledTailTrainArgs a;
  a.y = y.data_ptr();
  a.bfloat16 = y.scalar_type() == at::kBFloat16;
  a.channels_last = !y.is_contiguous();
  a.demod = d.data_ptr<float>();
  a.bias = b.data_ptr<float>();
  a.noise_weight = nw.data_ptr<float>();
  a.noise = nz.data_ptr();
  a.noise_batch = nz.numel() / hw;
  a.n = n;
  a.c = c;
  a.hw = hw;
  return a;
}

void CheckLaunch(const char* error, const char* what) {
  if (*error != '\0') Fail(ErrorCode::kInternal, std::string(what) + " kernel: " + error);
}

torch::Tensor TrainForwardCuda(const torch::Tensor& y, const torch::Tensor& demod,
                               const torch::Tensor& noise, const torch::Tensor& noise_weight,
                               const torch::Tensor& bias) {
  std::vector<torch::Tensor> keep;
  cuda::StyledTailTrainArgs a = TrainArgs(y, demod, noise, noise_weight, bias, &keep);
  torch::Tensor out = at::empty_like(y);
  a.out = out.data_ptr();
  CheckLaunch(cuda::LaunchStyledTailTrainForward(
                  a, c10::cuda::getCurrentCUDAStream(y.get_device()).stream()),
              "StyledTailTrain forward");
  return out;
}

TailGrads TrainBackwardCuda(const torch::Tensor& grad_in, const torch::Tensor& y,
                            const torch::Tensor& demod, const torch::Tensor& noise,
                            const torch::Tensor& noise_weight, const torch::Tensor& bias) {
  std::vector<torch::Tensor> keep;
  cuda::StyledTailTrainArgs a = TrainArgs(y, demod, noise, noise_weight, bias, &keep);
  const torch::Tensor grad = grad_in.to(y.scalar_type())
                                 .contiguous(a.channels_last ? at::MemoryFormat::ChannelsLast
                                                             : at::MemoryFormat::Contiguous);
  torch::Tensor grad_y = at::empty_like(y);
  a.splits = cuda::StyledTailTrainSplits(a.n, a.c, a.hw, a.channels_last);
  const auto f32 = y.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
  torch::Tensor pd = at::empty({a.n, a.splits, a.c}, f32);
  torch::Tensor pb = at::empty({a.n, a.splits, a.c}, f32);
  torch::Tensor pnw = at::empty({a.n, a.splits, a.c}, f32);
  a.grad_out = grad.data_ptr();
  a.grad_y = grad_y.data_ptr();
  a.partial_demod = pd.data_ptr<float>();
  a.partial_bias = pb.data_ptr<float>();
  a.partial_noise_weight = pnw.data_ptr<float>();
  CheckLaunch(cuda::LaunchStyledTailTrainBackward(
                  a, c10::cuda::getCurrentCUDAStream(y.get_device()).stream()),
              "StyledTailTrain backward");
  return {grad_y, pd.sum(1).to(demod.scalar_type()),
          pnw.sum().view({1}).to(noise_weight.scalar_type()),
          pb.sum(at::IntArrayRef{0, 1}).to(bias.scalar_type())};
}
#endif

class StyledTailTrainFunction : public torch::autograd::Function<StyledTailTrainFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& y,
                               const torch::Tensor& demod, const torch::Tensor& noise,
                               const torch::Tensor& noise_weight, const torch::Tensor& bias) {
    ctx->save_for_backward({y, demod, noise, noise_weight, bias});
    // The kernels take operands of one dtype (under autocast they can differ:
    // LibTorch's ops then promote, and so does this function).
    const bool kernels = StyledTailTrainUsesKernels(y) &&
                         demod.scalar_type() == y.scalar_type() &&
                         noise_weight.scalar_type() == y.scalar_type() &&
                         bias.scalar_type() == y.scalar_type();
    ctx->saved_data["kernels"] = kernels;
#if RESTYLE_HAVE_CUDA_KERNELS
    if (kernels) return TrainForwardCuda(y, demod, noise, noise_weight, bias);
#endif
    return at::leaky_relu(PreActivation(y, demod, noise, noise_weight, bias), 0.2) * kSqrt2;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &y = saved[0], &demod = saved[1], &noise = saved[2],
                        &noise_weight = saved[3], &bias = saved[4];
    TailGrads g;
#if RESTYLE_HAVE_CUDA_KERNELS
    if (ctx->saved_data["kernels"].toBool()) {
      g = TrainBackwardCuda(grads[0], y, demod, noise, noise_weight, bias);
    } else
#endif
    {
      g = TrainBackwardAten(grads[0], y, demod, noise, noise_weight, bias);
    }
    auto [grad_y, grad_demod, grad_noise_weight, grad_bias] = std::move(g);
    return {grad_y, grad_demod, torch::Tensor(), grad_noise_weight, grad_bias};
  }
};

}  // namespace

bool StyledTailTrainUsesKernels(const torch::Tensor& y) {
#if RESTYLE_HAVE_CUDA_KERNELS
  return KernelsTake(y);
#else
  (void)y;
  return false;
#endif
}

torch::Tensor StyledTailTrain(const torch::Tensor& y, const torch::Tensor& demod,
                              const torch::Tensor& noise, const torch::Tensor& noise_weight,
                              const torch::Tensor& bias) {
  CheckArgument(y.dim() == 4 && demod.dim() == 2 && demod.size(0) == y.size(0) &&
                    demod.size(1) == y.size(1) && bias.numel() == y.size(1) &&
                    noise_weight.numel() == 1 && noise.dim() == 4 && noise.size(1) == 1,
                "StyledTailTrain: y (N,C,H,W), demod (N,C), noise (N or 1,1,H,W), "
                "noise_weight (1), bias (C)");
  return StyledTailTrainFunction::apply(y, demod, noise, noise_weight, bias);
}

bool CudaKernelsBuilt() {
#if RESTYLE_HAVE_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

void SetCudaKernelsEnabled(bool enabled) { g_cuda_kernels_enabled.store(enabled); }
bool CudaKernelsEnabled() { return g_cuda_kernels_enabled.load(); }

torch::Tensor StyledTail(torch::Tensor y, const torch::Tensor& gain, const torch::Tensor& bias,
                         const torch::Tensor& noise, const torch::Tensor& noise_weight) {
#if RESTYLE_HAVE_CUDA_KERNELS
  if (StyledTailCuda(y, gain, bias, noise, noise_weight)) return y;
#endif
  if (gain.defined()) {
    const int64_t n = y.size(0), c = y.size(1);
    y = at::addcmul(bias.view({1, c, 1, 1}), y, gain.view({n, c, 1, 1}));
  }
  if (noise.defined()) y.add_(noise * noise_weight);
  return at::leaky_relu_(y, 0.2);
}

}  // namespace restyle::engine
