#include "worker/engine_boundary.h"

#include <c10/util/Exception.h>

#include <string>

namespace restyle::worker {

absl::Status RunEngine(absl::string_view what, const std::function<void()>& fn) {
  // LibTorch's errors as engine errors; RunTorchFree maps those (and the
  // rest) to a Status.
  return RunTorchFree(what, [&] {
    try {
      fn();
    } catch (const c10::OutOfMemoryError& e) {
      throw engine::Error(engine::ErrorCode::kResourceExhausted, "OUT_OF_MEMORY",
                          std::string("out of device memory: ") + e.what_without_backtrace());
    } catch (const c10::IndexError& e) {
      throw engine::Error(engine::ErrorCode::kInvalidArgument, e.what_without_backtrace());
    } catch (const c10::ValueError& e) {
      throw engine::Error(engine::ErrorCode::kInvalidArgument, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      throw engine::Error(engine::ErrorCode::kInternal,
                          std::string("LibTorch error: ") + e.what_without_backtrace());
    }
  });
}

}  // namespace restyle::worker
