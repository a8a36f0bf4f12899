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

// ---------------------------------------------------------------- training

// x rounded to T (bfloat16: to nearest even, as LibTorch stores each op's
// result); float: unchanged.
template <typename T>
__device__ __forceinline__ float RoundTo(float x);
template <>
__device__ __forceinline__ float RoundTo<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float RoundTo<__nv_bfloat16>(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

constexpr float kSqrt2 = 1.4142135623730951f;  // LibTorch's float(sqrt(2.0))
constexpr float kSlope = 0.2f;

// ((y * d + nw * noise) + b), each step rounded like its LibTorch op; _rn
// intrinsics keep nvcc from contracting a multiply and an add into an FMA.
template <typename T>
__device__ __forceinline__ float PreActivation(float y, float d, float noise, float nw, float b) {
  const float scaled = RoundTo<T>(__fmul_rn(y, d));
  const float weighted_noise = RoundTo<T>(__fmul_rn(nw, noise));
  const float with_noise = RoundTo<T>(__fadd_rn(scaled, weighted_noise));
  return RoundTo<T>(__fadd_rn(with_noise, b));
}

// Element i of a dense (n,c,hw) tensor in either order: (b, ch, p).
template <bool kChannelsLast>
__device__ __forceinline__ void Decode(int64_t i, int64_t c, int64_t hw, int64_t* b,
                                       int64_t* ch, int64_t* p) {
  if (kChannelsLast) {
    *ch = i % c;
    const int64_t rest = i / c;
    *p = rest % hw;
    *b = rest / hw;
  } else {
    *p = i % hw;
    const int64_t rest = i / hw;
    *ch = rest % c;
    *b = rest / c;
  }
}

template <typename T, bool kChannelsLast>
__global__ void TrainForwardKernel(const T* y, T* out, const float* demod, const float* bias,
                                   const T* noise, const float* noise_weight,
                                   int64_t noise_batch, int64_t n, int64_t c, int64_t hw) {
  const int64_t total = n * c * hw;
  const float nw = *noise_weight;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t b, ch, p;
    Decode<kChannelsLast>(i, c, hw, &b, &ch, &p);
    const float t = PreActivation<T>(Load(y, i), demod[b * c + ch],
                                     Load(noise, (noise_batch == 1 ? 0 : b) * hw + p), nw,
                                     bias[ch]);
    const float activated = t > 0.f ? t : RoundTo<T>(__fmul_rn(t, kSlope));
    Store(out, i, __fmul_rn(activated, kSqrt2));
  }
}

// One element of the backward: writes grad_y, returns g' and adds to the sums.
template <typename T>
__device__ __forceinline__ void BackwardElement(const T* y, const T* grad_out, T* grad_y,
                                                float d, float b_ch, const T* noise,
                                                int64_t noise_index, float nw, int64_t i,
                                                float* sum_d, float* sum_b, float* sum_nw) {
  const float yv = Load(y, i);
  const float nz = Load(noise, noise_index);
  const float t = PreActivation<T>(yv, d, nz, nw, b_ch);
  const float g = Load(grad_out, i) * kSqrt2 * (t > 0.f ? 1.f : kSlope);
  Store(grad_y, i, g * d);
  *sum_d += g * yv;
  *sum_b += g;
  *sum_nw += g * nz;
}

// NCHW: block (split s, channel ch, sample b) sums its slice of one plane.
template <typename T>
__global__ void TrainBackwardNchwKernel(StyledTailTrainArgs a) {
  const int64_t s = blockIdx.x, ch = blockIdx.y, b = blockIdx.z;
  const int64_t chunk = (a.hw + a.splits - 1) / a.splits;
  const int64_t begin = s * chunk, end = min(a.hw, begin + chunk);
  const T* y = static_cast<const T*>(a.y);
  const T* grad_out = static_cast<const T*>(a.grad_out);
  T* grad_y = static_cast<T*>(a.grad_y);
  const T* noise = static_cast<const T*>(a.noise);
  const float d = a.demod[b * a.c + ch], bias = a.bias[ch], nw = *a.noise_weight;
  const int64_t plane = (b * a.c + ch) * a.hw;
  const int64_t noise_plane = (a.noise_batch == 1 ? 0 : b) * a.hw;
  float sum_d = 0.f, sum_b = 0.f, sum_nw = 0.f;
  for (int64_t p = begin + threadIdx.x; p < end; p += blockDim.x) {
    BackwardElement<T>(y, grad_out, grad_y, d, bias, noise, noise_plane + p, nw, plane + p,
                       &sum_d, &sum_b, &sum_nw);
  }
  // Block sum: within warps, then across the (blockDim.x / 32) warps.
  for (int offset = 16; offset > 0; offset >>= 1) {
    sum_d += __shfl_down_sync(0xffffffffu, sum_d, offset);
    sum_b += __shfl_down_sync(0xffffffffu, sum_b, offset);
    sum_nw += __shfl_down_sync(0xffffffffu, sum_nw, offset);
  }
  __shared__ float warp_sums[3][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) {
    warp_sums[0][warp] = sum_d;
    warp_sums[1][warp] = sum_b;
    warp_sums[2][warp] = sum_nw;
  }
  __syncthreads();
  if (warp == 0) {
    sum_d = lane < warps ? warp_sums[0][lane] : 0.f;
    sum_b = lane < warps ? warp_sums[1][lane] : 0.f;
    sum_nw = lane < warps ? warp_sums[2][lane] : 0.f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      sum_d += __shfl_down_sync(0xffffffffu, sum_d, offset);
      sum_b += __shfl_down_sync(0xffffffffu, sum_b, offset);
      sum_nw += __shfl_down_sync(0xffffffffu, sum_nw, offset);
    }
    if (lane == 0) {
      const int64_t k = (b * a.splits + s) * a.c + ch;
      a.partial_demod[k] = sum_d;
      a.partial_bias[k] = sum_b;
      a.partial_noise_weight[k] = sum_nw;
    }
  }
}

// NHWC: block (split s, tile of 32 channels, sample b), threads (32 channels
// x 8 rows of positions): neighbouring threads read neighbouring channels.
constexpr int kTileChannels = 32;
constexpr int kTileRows = 8;

template <typename T>
__global__ void TrainBackwardNhwcKernel(StyledTailTrainArgs a) {
  const int64_t s = blockIdx.x, b = blockIdx.z;
  const int64_t ch = blockIdx.y * kTileChannels + threadIdx.x;
  const int64_t chunk = (a.hw + a.splits - 1) / a.splits;
  const int64_t begin = s * chunk, end = min(a.hw, begin + chunk);
  float sum_d = 0.f, sum_b = 0.f, sum_nw = 0.f;
  if (ch < a.c) {
    const T* y = static_cast<const T*>(a.y);
    const T* grad_out = static_cast<const T*>(a.grad_out);
    T* grad_y = static_cast<T*>(a.grad_y);
    const T* noise = static_cast<const T*>(a.noise);
    const float d = a.demod[b * a.c + ch], bias = a.bias[ch], nw = *a.noise_weight;
    const int64_t noise_plane = (a.noise_batch == 1 ? 0 : b) * a.hw;
    for (int64_t p = begin + threadIdx.y; p < end; p += kTileRows) {
      BackwardElement<T>(y, grad_out, grad_y, d, bias, noise, noise_plane + p, nw,
                         (b * a.hw + p) * a.c + ch, &sum_d, &sum_b, &sum_nw);
    }
  }
  __shared__ float rows[3][kTileRows][kTileChannels];
  rows[0][threadIdx.y][threadIdx.x] = sum_d;
  rows[1][threadIdx.y][threadIdx.x] = sum_b;
  rows[2][threadIdx.y][threadIdx.x] = sum_nw;
  __syncthreads();
  if (threadIdx.y == 0 && ch < a.c) {
    for (int r = 1; r < kTileRows; ++r) {
      sum_d += rows[0][r][threadIdx.x];
      sum_b += rows[1][r][threadIdx.x];
      sum_nw += rows[2][r][threadIdx.x];
    }
    const int64_t k = (b * a.splits + s) * a.c + ch;
    a.partial_demod[k] = sum_d;
    a.partial_bias[k] = sum_b;
    a.partial_noise_weight[k] = sum_nw;
  }
}

constexpr int64_t kTargetBlocks = 1024;  // several waves on a 132-SM card

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
cudaError_t LaunchTrainForward(const StyledTailTrainArgs& a, cudaStream_t stream) {
  const int64_t total = a.n * a.c * a.hw;
  if (total == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>(CeilDiv(total, kThreads), 65535 * 8);
  const T* y = static_cast<const T*>(a.y);
  T* out = static_cast<T*>(a.out);
  const T* noise = static_cast<const T*>(a.noise);
  if (a.channels_last) {
    TrainForwardKernel<T, true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        y, out, a.demod, a.bias, noise, a.noise_weight, a.noise_batch, a.n, a.c, a.hw);
  } else {
    TrainForwardKernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        y, out, a.demod, a.bias, noise, a.noise_weight, a.noise_batch, a.n, a.c, a.hw);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchTrainBackward(const StyledTailTrainArgs& a, cudaStream_t stream) {
  if (a.n * a.c * a.hw == 0) return cudaSuccess;
  if (a.channels_last) {
    const dim3 grid(static_cast<unsigned>(a.splits),
                    static_cast<unsigned>(CeilDiv(a.c, kTileChannels)),
                    static_cast<unsigned>(a.n));
    TrainBackwardNhwcKernel<T><<<grid, dim3(kTileChannels, kTileRows), 0, stream>>>(a);
  } else {
    const dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(a.c),
                    static_cast<unsigned>(a.n));
    TrainBackwardNchwKernel<T><<<grid, 256, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace

int64_t StyledTailTrainSplits(int64_t n, int64_t c, int64_t hw, bool channels_last) {
  const int64_t groups = std::max<int64_t>(1, channels_last ? n * CeilDiv(c, kTileChannels) : n * c);
  // Enough blocks to fill the card, each with at least a few positions per thread.
  const int64_t most = std::max<int64_t>(1, CeilDiv(hw, channels_last ? 64 : 1024));
  return std::min<int64_t>(std::max<int64_t>(1, CeilDiv(kTargetBlocks, groups)),
                           std::min<int64_t>(most, 65535));
}

const char* LaunchStyledTailTrainForward(const StyledTailTrainArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const cudaError_t err = args.bfloat16 ? LaunchTrainForward<__nv_bfloat16>(args, s)
                                        : LaunchTrainForward<float>(args, s);
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

const char* LaunchStyledTailTrainBackward(const StyledTailTrainArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const cudaError_t err = args.bfloat16 ? LaunchTrainBackward<__nv_bfloat16>(args, s)
                                        : LaunchTrainBackward<float>(args, s);
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

const char* LaunchStyledTail(const StyledTailArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const cudaError_t err =
      args.bfloat16 ? Launch<__nv_bfloat16>(args, s) : Launch<float>(args, s);
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace restyle::engine::cuda
