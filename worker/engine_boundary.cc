#include "worker/engine_boundary.h"

#include <c10/util/Exception.h>

#include <new>

#include "absl/strings/str_cat.h"
#include "worker/engine/common/error.h"

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

absl::Status RunEngine(absl::string_view what, const std::function<void()>& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const engine::Error& e) {
    return absl::Status(ToStatusCode(e.code()), absl::StrCat(what, ": ", e.what()));
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of device memory: ", e.what_without_backtrace()));
  } catch (const c10::IndexError& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const c10::ValueError& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what, ": LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace restyle::worker
