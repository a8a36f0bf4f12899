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

// The StyledConv tail under autograd, in the reference's order and rounding
// (every step rounded to the activations' dtype, as LibTorch's separate ops
// round each result; no fused multiply-adds):
//
//   t = ((y * demod[b,c] + noise_weight * noise[b|0,h,w]) + bias[c])
//   out = (t > 0 ? t : t * 0.2) * sqrt(2)
//
// Forward: one pass (y -> out). Backward: one pass that recomputes t (the
// same arithmetic, so the leaky ReLU's side is the forward's), writes
// grad_y = g' * demod with g' = grad_out * sqrt(2) * (t > 0 ? 1 : 0.2), and
// sums g' * y per (b,c), g' per c and g' * noise per (b,c) into float32
// partial sums over `splits` slices of h*w (the caller adds the slices up).
struct StyledTailTrainArgs {
  const void* y = nullptr;            // (n,c,h,w), dense NCHW or NHWC
  bool bfloat16 = false;              // y, out, grads, noise: bfloat16, else float32
  bool channels_last = false;
  const float* demod = nullptr;       // (n,c), values of the activations' dtype
  const float* bias = nullptr;        // (c)
  const void* noise = nullptr;        // (noise_batch,1,h,w) dense, y's dtype
  const float* noise_weight = nullptr;  // one value on the device
  int64_t noise_batch = 1;
  int64_t n = 0, c = 0, hw = 0;
  // Forward:
  void* out = nullptr;                // like y
  // Backward:
  const void* grad_out = nullptr;     // like y
  void* grad_y = nullptr;             // like y
  float* partial_demod = nullptr;     // (n, splits, c)
  float* partial_bias = nullptr;      // (n, splits, c)
  float* partial_noise_weight = nullptr;  // (n, splits, c)
  int64_t splits = 1;                 // from StyledTailTrainSplits
};

// The number of h*w slices the backward uses for these sizes (>= 1).
int64_t StyledTailTrainSplits(int64_t n, int64_t c, int64_t hw, bool channels_last);

const char* LaunchStyledTailTrainForward(const StyledTailTrainArgs& args, void* stream);
const char* LaunchStyledTailTrainBackward(const StyledTailTrainArgs& args, void* stream);

}  // namespace restyle::engine::cuda

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_CUDA_STYLED_TAIL_H_
