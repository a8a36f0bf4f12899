#include "worker/engine/adapt_job/job_options.h"

#include "worker/engine/common/error.h"

namespace restyle::engine {

void SetJobSeed(JobOptions& options, uint64_t seed) {
  options.adapt.stage1.seed = seed;
  options.adapt.stage2.seed = seed + 1;
  options.sample_seed = seed + 2;
}

const char* MethodName(AdaptMethod method) {
  return method == AdaptMethod::kIpl ? "ipl" : "nada";
}

AdaptMethod ParseMethod(const std::string& name) {
  if (name == "ipl") return AdaptMethod::kIpl;
  if (name == "nada") return AdaptMethod::kNada;
  Fail(ErrorCode::kInvalidArgument, "unknown method \"" + name + "\" (ipl or nada)");
}

}  // namespace restyle::engine
