// The one place where engine exceptions become absl::Status.
//
// The engine (worker/engine/) throws restyle::engine::Error, and LibTorch
// throws c10::Error; neither may cross a thread or an RPC. Every call from the
// worker into the engine goes through RunEngine(), which runs the callable on
// the calling thread and maps what it throws:
//
//   engine::Error(code)      -> the absl::StatusCode of the same name
//   c10::Error (TORCH_CHECK) -> INTERNAL, or INVALID_ARGUMENT for index/value
//                               errors raised on caller-provided tensors
//   c10::OutOfMemoryError / std::bad_alloc -> RESOURCE_EXHAUSTED
//   any other std::exception -> INTERNAL
//
// The message keeps the engine's text, prefixed by `what` (e.g. "loading
// generator gen-123") so a person can tell which step failed. Thread-safe.
#ifndef RESTYLE_WORKER_ENGINE_BOUNDARY_H_
#define RESTYLE_WORKER_ENGINE_BOUNDARY_H_

#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace restyle::worker {

// Runs `fn` and converts any exception to a Status (see the file comment).
absl::Status RunEngine(absl::string_view what, const std::function<void()>& fn);

// Same for a callable returning a value.
template <typename F, typename T = std::invoke_result_t<F>>
absl::StatusOr<T> CallEngine(absl::string_view what, F&& fn) {
  absl::StatusOr<T> result = absl::UnknownError("engine call did not run");
  absl::Status status = RunEngine(what, [&] { result = std::forward<F>(fn)(); });
  if (!status.ok()) return status;
  return result;
}

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_ENGINE_BOUNDARY_H_
