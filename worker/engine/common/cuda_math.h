// Process-wide LibTorch settings for CUDA arithmetic, set in one place by the
// job runner, the benchmarks and the tests; and the check that CUDA work can
// run at all.
//
// Thread-safety: process-wide flags; set them before work starts.
#ifndef RESTYLE_WORKER_ENGINE_COMMON_CUDA_MATH_H_
#define RESTYLE_WORKER_ENGINE_COMMON_CUDA_MATH_H_

namespace restyle::engine {

// allow_tf32: TF32 tensor cores in cuBLAS matrix products and cuDNN
// convolutions (false: plain float32). cudnn_autotune: cuDNN times its
// algorithms once per convolution shape and keeps the fastest (its choice may
// differ between runs). Without effect on CPU work.
void SetCudaMath(bool allow_tf32, bool cudnn_autotune);

// Fails unless CUDA work can run in this process, saying why and what to do:
// UNIMPLEMENTED when the LibTorch this was built against has no CUDA support
// (Debian's is CPU-only), FAILED_PRECONDITION when it has but no device is
// visible (driver, CUDA_VISIBLE_DEVICES).
void RequireCuda();

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_COMMON_CUDA_MATH_H_
