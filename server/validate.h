// Checks of public requests before the front accepts them: every field
// answered INVALID_ARGUMENT (reason INVALID_FIELD, metadata "field") with a
// message that names the field and says what it takes, an unknown source
// NOT_FOUND. A job's settings are checked with the engine's own settings
// table (common/job_spec.h), so a request that could not run is refused here
// and not failed later.
//
// Thread-safety: free functions; they read the scheduler's source catalog.
#ifndef RESTYLE_SERVER_VALIDATE_H_
#define RESTYLE_SERVER_VALIDATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "restyle/v1/restyle_service.pb.h"

namespace restyle::engine {
class Tokenizer;
}  // namespace restyle::engine

namespace restyle::server {

inline constexpr int kMaxTextBytes = 1000;
inline constexpr int kMaxPriority = 1000;
inline constexpr int kMaxImagesPerRequest = 1024;
inline constexpr int kMaxRequestIdLength = 64;

// What a request may be checked against.
struct SourceFacts {
  bool known = false;
  std::string source_text;
  int resolution = 0;
};

// The spec as it will be stored: source_generator as "generators/{id}",
// source_text defaulted from the source. `source` looks up what the front
// knows of a source generator by name; `tokenizer` checks that every text of
// the job fits CLIP (skipped when null).
absl::StatusOr<v1::JobSpec> CheckAdaptRequest(
    const v1::AdaptRequest& request,
    const std::function<SourceFacts(const std::string& name)>& source,
    const engine::Tokenizer* tokenizer);

// The seeds a Generate request asks for, in order; the generator name in
// full in `generator`.
struct GenerateAsk {
  std::string generator;
  std::vector<uint64_t> seeds;
};
absl::StatusOr<GenerateAsk> CheckGenerateRequest(const v1::GenerateRequest& request);

// page_size of a List call: 0 -> `fallback`, at most 1,000.
absl::StatusOr<int> CheckPageSize(int page_size, int fallback);

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_VALIDATE_H_
