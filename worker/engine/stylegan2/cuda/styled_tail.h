// The elementwise tail of a StyledConv without autograd, as one CUDA kernel:
//
//   y = leaky_relu(y * gain[b,c] + bias[c] + noise[b|0,h,w] * noise_weight, 0.2)
//
// in place, for float32 or bfloat16 activations in NCHW or channels-last
// order (arithmetic in float32, one rounding at the end). Replaces three
// LibTorch passes over the activations (addcmul, add, leaky_relu) with one.
// Plain types only: this header is included by code compiled without the
// CUDA toolkit's headers.
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_CUDA_STYLED_TAIL_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_CUDA_STYLED_TAIL_H_

#include <cstdint>

namespace restyle::engine::cuda {

struct StyledTailArgs {
  void* y = nullptr;                  // (n,c,h,w) activations, modified in place
  bool bfloat16 = false;              // y and noise dtype: bfloat16, else float32
  bool channels_last = false;         // y's memory order: NHWC, else NCHW (both dense)
  const float* gain = nullptr;        // (n,c); null: 1
  const float* bias = nullptr;        // (c); null: 0
  const void* noise = nullptr;        // (noise_batch,1,h,w) dense, y's dtype; null: none
  const float* noise_weight = nullptr;  // one value on the device (required with noise)
  int64_t noise_batch = 1;            // 1 (broadcast) or n
  int64_t n = 0, c = 0, hw = 0;
};

// Launches the kernel on `stream` (a cudaStream_t). Returns an empty string,
// or the CUDA error's text.
const char* LaunchStyledTail(const StyledTailArgs& args, void* stream);

}  // namespace restyle::engine::cuda

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_CUDA_STYLED_TAIL_H_
