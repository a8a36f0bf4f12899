#include "worker/engine/common/cuda_math.h"

#include <ATen/Context.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include "worker/engine/common/error.h"

namespace restyle::engine {

void SetCudaMath(bool allow_tf32, bool cudnn_autotune) {
  at::Context& context = at::globalContext();
  context.setAllowTF32CuBLAS(allow_tf32);
  context.setAllowTF32CuDNN(allow_tf32);
  context.setBenchmarkCuDNN(cudnn_autotune);
}

void RequireCuda() {
  // LibTorch's CUDA library registers CUDA's device guard when it is loaded,
  // devices or not.
  if (!c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA)) {
    Fail(ErrorCode::kUnimplemented,
         "CUDA requested, but the LibTorch this was built against has no CUDA support "
         "(Debian's libtorch is CPU-only): run on the CPU, or build against a CUDA LibTorch "
         "(the README says how)");
  }
  if (!torch::cuda::is_available()) {
    Fail(ErrorCode::kFailedPrecondition,
         "CUDA requested, but no CUDA device is visible to this process (check nvidia-smi "
         "and CUDA_VISIBLE_DEVICES)");
  }
}

}  // namespace restyle::engine
