// RequireCuda: where CUDA cannot run, a clear error with the right code.
#include "worker/engine/common/cuda_math.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

TEST(RequireCuda, SaysWhyCudaCannotRunHere) {
  if (torch::cuda::is_available()) {
    EXPECT_NO_THROW(RequireCuda());
    return;
  }
  // A CPU-only LibTorch (Debian's, on CI) and a CUDA one without a visible
  // device are told apart.
  const bool cuda_build = c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA);
  try {
    RequireCuda();
    ADD_FAILURE() << "no error without a CUDA device";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), cuda_build ? ErrorCode::kFailedPrecondition : ErrorCode::kUnimplemented)
        << what;
    EXPECT_NE(what.find("CUDA requested"), std::string::npos) << what;
    EXPECT_NE(what.find(cuda_build ? "CUDA_VISIBLE_DEVICES" : "no CUDA support"),
              std::string::npos)
        << what;
  }
}

}  // namespace
}  // namespace restyle::engine
