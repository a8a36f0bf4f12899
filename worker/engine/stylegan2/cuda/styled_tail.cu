// See styled_tail.h.
#include "worker/engine/stylegan2/cuda/styled_tail.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace restyle::engine::cuda {
namespace {

__device__ __forceinline__ float Load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void Store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16(v);
}

template <typename T, bool kChannelsLast>
__global__ void StyledTailKernel(T* y, const float* gain, const float* bias, const T* noise,
                                 const float* noise_weight, int64_t noise_batch, int64_t n,
                                 int64_t c, int64_t hw) {
  const int64_t total = n * c * hw;
  const float nw = noise != nullptr ? *noise_weight : 0.f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t b, ch, p;
    if (kChannelsLast) {  // (b, p, ch)
      ch = i % c;
      const int64_t rest = i / c;
      p = rest % hw;
      b = rest / hw;
    } else {  // (b, ch, p)
      p = i % hw;
      const int64_t rest = i / hw;
      ch = rest % c;
      b = rest / c;
    }
    float v = Load(y, i);
    if (gain != nullptr) v *= gain[b * c + ch];
    if (bias != nullptr) v += bias[ch];
    if (noise != nullptr) v += Load(noise, (noise_batch == 1 ? 0 : b) * hw + p) * nw;
    Store(y, i, v > 0.f ? v : v * 0.2f);
  }
}

template <typename T>
cudaError_t Launch(const StyledTailArgs& a, cudaStream_t stream) {
  const int64_t total = a.n * a.c * a.hw;
  if (total == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 65535 * 8);
  T* y = static_cast<T*>(a.y);
  const T* noise = static_cast<const T*>(a.noise);
  if (a.channels_last) {
    StyledTailKernel<T, true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        y, a.gain, a.bias, noise, a.noise_weight, a.noise_batch, a.n, a.c, a.hw);
  } else {
    StyledTailKernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        y, a.gain, a.bias, noise, a.noise_weight, a.noise_batch, a.n, a.c, a.hw);
  }
  return cudaGetLastError();
}

}  // namespace

const char* LaunchStyledTail(const StyledTailArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const cudaError_t err =
      args.bfloat16 ? Launch<__nv_bfloat16>(args, s) : Launch<float>(args, s);
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace restyle::engine::cuda
