#include "worker/engine_boundary.h"

#include <c10/util/Exception.h>

#include <new>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace restyle::worker {
namespace {

std::string Prefixed(absl::string_view what, absl::string_view message) {
  return what.empty() ? std::string(message) : absl::StrCat(what, ": ", message);
}

}  // namespace

absl::Status RunEngine(absl::string_view what, const std::function<void()>& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const engine::Error& e) {
    return StatusFromEngineError(e, what);
  } catch (const c10::OutOfMemoryError& e) {
    return ErrorWithReason(
        absl::StatusCode::kResourceExhausted, "OUT_OF_MEMORY",
        Prefixed(what, absl::StrCat("out of device memory: ", e.what_without_backtrace())));
  } catch (const c10::IndexError& e) {
    return absl::InvalidArgumentError(Prefixed(what, e.what_without_backtrace()));
  } catch (const c10::ValueError& e) {
    return absl::InvalidArgumentError(Prefixed(what, e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        Prefixed(what, absl::StrCat("LibTorch error: ", e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    return ErrorWithReason(absl::StatusCode::kResourceExhausted, "OUT_OF_MEMORY",
                           Prefixed(what, "out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(Prefixed(what, e.what()));
  }
}

}  // namespace restyle::worker
