// The elementwise tail of a StyledConv without autograd, in place where it
// can be: y = leaky_relu(y * gain + bias + noise * noise_weight, 0.2).
//
// With the engine's CUDA kernels built (-DRESTYLE_CUDA_KERNELS=ON and a CUDA
// compiler) and enabled, a CUDA float32 or bfloat16 tensor in NCHW or
// channels-last order takes one kernel (cuda/styled_tail.h): one pass over
// the activations instead of three. Everything else takes LibTorch's ops
// (addcmul, add_, leaky_relu_), the arithmetic every CPU build runs.
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_FUSED_TAIL_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_FUSED_TAIL_H_

#include <torch/types.h>

namespace restyle::engine {

// Whether this build has the engine's CUDA kernels.
bool CudaKernelsBuilt();
// Process-wide switch (default on) for A/B measurements (restyle-bench
// --no-cuda-kernels); thread-safe.
void SetCudaKernelsEnabled(bool enabled);
bool CudaKernelsEnabled();

// y (N,C,H,W); gain (N,C) with bias (C), or both undefined (already applied);
// noise (N or 1,1,H,W) and noise_weight (1), or both undefined; every operand
// in y's dtype. Returns the result in y's dtype (y itself, or a new tensor on
// LibTorch's path).
torch::Tensor StyledTail(torch::Tensor y, const torch::Tensor& gain, const torch::Tensor& bias,
                         const torch::Tensor& noise, const torch::Tensor& noise_weight);

// The StyledConv tail under autograd (training), in the reference's order
// and rounding:
//   leaky_relu((y * demod[:,:,None,None] + noise_weight * noise)
//              + bias[None,:,None,None], 0.2) * sqrt(2)
// y (N,C,H,W), NCHW or channels-last; demod (N,C); noise (N or 1,1,H,W);
// noise_weight (1); bias (C); all in y's dtype. Differentiable in y, demod,
// noise_weight and bias (not in noise). With the engine's CUDA kernels
// (StyledTailTrainUsesKernels) the forward is one pass over the activations
// and the backward one more (recomputing the pre-activation instead of
// keeping it), where LibTorch's ops take five passes forward and about
// seven backward and keep three intermediates; the forward is bit-identical
// to LibTorch's ops, the backward's sums are added in another order.
// Elsewhere: LibTorch's ops forward, the same formulas as the kernel
// backward (what the CPU tests check).
torch::Tensor StyledTailTrain(const torch::Tensor& y, const torch::Tensor& demod,
                              const torch::Tensor& noise, const torch::Tensor& noise_weight,
                              const torch::Tensor& bias);
// Whether StyledTailTrain runs the CUDA kernels for activations like y (a
// build with them, enabled, a dense float32 or bfloat16 CUDA tensor).
bool StyledTailTrainUsesKernels(const torch::Tensor& y);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_FUSED_TAIL_H_
