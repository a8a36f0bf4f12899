#include "worker/engine/common/cuda_math.h"

#include <ATen/Context.h>

namespace restyle::engine {

void SetCudaMath(bool allow_tf32, bool cudnn_autotune) {
  at::Context& context = at::globalContext();
  context.setAllowTF32CuBLAS(allow_tf32);
  context.setAllowTF32CuDNN(allow_tf32);
  context.setBenchmarkCuDNN(cudnn_autotune);
}

}  // namespace restyle::engine
