#include "worker/engine/stylegan2/fused_tail.h"

#include <ATen/ATen.h>

#include <atomic>
#include <string>

#include "worker/engine/common/error.h"

#if RESTYLE_HAVE_CUDA_KERNELS
#include <c10/cuda/CUDAStream.h>

#include "worker/engine/stylegan2/cuda/styled_tail.h"
#endif

namespace restyle::engine {
namespace {

std::atomic<bool> g_cuda_kernels_enabled{true};

#if RESTYLE_HAVE_CUDA_KERNELS
// The kernel's path; false when y does not qualify (LibTorch's path then).
bool StyledTailCuda(const torch::Tensor& y, const torch::Tensor& gain, const torch::Tensor& bias,
                    const torch::Tensor& noise, const torch::Tensor& noise_weight) {
  if (!g_cuda_kernels_enabled.load() || !y.is_cuda() || y.dim() != 4 ||
      (y.scalar_type() != at::kFloat && y.scalar_type() != at::kBFloat16)) {
    return false;
  }
  const bool nchw = y.is_contiguous();
  if (!nchw && !y.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
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

}  // namespace

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
