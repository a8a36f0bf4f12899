// The one place where engine exceptions become absl::Status.
//
// The engine (worker/engine/) throws restyle::engine::Error, and LibTorch
// throws c10::Error; neither may cross a thread or an RPC. Every call from the
// service into the engine goes through RunEngine() (the worker's calls, which
// run LibTorch) or RunTorchFree() (engine code without LibTorch: the settings
// table and the tokenizer, which the front calls), which run the callable on
// the calling thread and map what it throws:
//
//   engine::Error(code)      -> the absl::StatusCode of the same name, with
//                               the error's reason (NON_FINITE_LOSS,
//                               OUT_OF_MEMORY) as its ErrorDetail (common/status.h)
//   c10::Error (TORCH_CHECK) -> INTERNAL, or INVALID_ARGUMENT for index/value
//                               errors raised on caller-provided tensors
//   c10::OutOfMemoryError / std::bad_alloc -> RESOURCE_EXHAUSTED, reason
//                               OUT_OF_MEMORY
//   any other std::exception -> INTERNAL
//
// The message keeps the engine's text, prefixed by `what` (e.g. "loading
// generator gen-123") unless `what` is empty, so a person can tell which step
// failed. Thread-safe.
#ifndef RESTYLE_WORKER_ENGINE_BOUNDARY_H_
#define RESTYLE_WORKER_ENGINE_BOUNDARY_H_

#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/common/error.h"

namespace restyle::worker {

// Runs `fn` and converts any exception to a Status (see the file comment).
// Library restyle_engine_boundary (links LibTorch).
absl::Status RunEngine(absl::string_view what, const std::function<void()>& fn);

// Same for a callable returning a value.
template <typename F, typename T = std::invoke_result_t<F>>
absl::StatusOr<T> CallEngine(absl::string_view what, F&& fn) {
  absl::StatusOr<T> result = absl::UnknownError("engine call did not run");
  absl::Status status = RunEngine(what, [&] { result = std::forward<F>(fn)(); });
  if (!status.ok()) return status;
  return result;
}

// RunEngine for engine code that does not use LibTorch (engine::Error and
// std::exception only; RunEngine turns LibTorch's errors into engine::Error
// and calls it). Library restyle_engine_status (no LibTorch).
absl::Status RunTorchFree(absl::string_view what, const std::function<void()>& fn);

// The Status of an engine::Error: its code, its reason, `what: ` + message.
absl::Status StatusFromEngineError(const engine::Error& error, absl::string_view what);

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_ENGINE_BOUNDARY_H_
