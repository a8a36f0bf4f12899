#include "worker/engine/common/error.h"

namespace restyle::engine {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kNotFound: return "NOT_FOUND";
    case ErrorCode::kDataLoss: return "DATA_LOSS";
    case ErrorCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case ErrorCode::kCancelled: return "CANCELLED";
    case ErrorCode::kUnimplemented: return "UNIMPLEMENTED";
    case ErrorCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case ErrorCode::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

void Fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

void FailWithReason(ErrorCode code, const std::string& reason, const std::string& message) {
  throw Error(code, reason, message);
}

}  // namespace restyle::engine
