// The part of the engine boundary without LibTorch (engine_boundary.h):
// engine::Error -> Status, and RunTorchFree.
#include <exception>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine_boundary.h"

namespace restyle::worker {
namespace {

absl::StatusCode ToStatusCode(engine::ErrorCode code) {
  switch (code) {
    case engine::ErrorCode::kInvalidArgument: return absl::StatusCode::kInvalidArgument;
    case engine::ErrorCode::kNotFound: return absl::StatusCode::kNotFound;
    case engine::ErrorCode::kDataLoss: return absl::StatusCode::kDataLoss;
    case engine::ErrorCode::kFailedPrecondition: return absl::StatusCode::kFailedPrecondition;
    case engine::ErrorCode::kCancelled: return absl::StatusCode::kCancelled;
    case engine::ErrorCode::kUnimplemented: return absl::StatusCode::kUnimplemented;
    case engine::ErrorCode::kResourceExhausted: return absl::StatusCode::kResourceExhausted;
    case engine::ErrorCode::kInternal: return absl::StatusCode::kInternal;
  }
  return absl::StatusCode::kInternal;
}

}  // namespace

absl::Status StatusFromEngineError(const engine::Error& error, absl::string_view what) {
  const std::string message =
      what.empty() ? std::string(error.what()) : absl::StrCat(what, ": ", error.what());
  if (error.reason().empty()) return absl::Status(ToStatusCode(error.code()), message);
  return ErrorWithReason(ToStatusCode(error.code()), error.reason(), message);
}

absl::Status RunTorchFree(absl::string_view what, const std::function<void()>& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const engine::Error& e) {
    return StatusFromEngineError(e, what);
  } catch (const std::bad_alloc&) {
    return ErrorWithReason(absl::StatusCode::kResourceExhausted, "OUT_OF_MEMORY",
                           absl::StrCat(what, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace restyle::worker
