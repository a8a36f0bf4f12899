// Resource names of the API (AIP-122): "jobs/{job_id}",
// "generators/{generator_id}", "workers/{worker_id}",
// "jobs/{job_id}/artifacts/{file}". Requests may give a bare id where a
// name is expected; the service answers with full names.
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_COMMON_NAMES_H_
#define RESTYLE_COMMON_NAMES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace restyle {

inline constexpr char kJobs[] = "jobs";
inline constexpr char kGenerators[] = "generators";
inline constexpr char kWorkers[] = "workers";

// True for 1-63 characters of [a-z0-9-] (and [A-Z_.] when `relaxed`, for
// ids that come from model manifests and workers) starting with a letter or
// digit.
bool IsValidId(absl::string_view id, bool relaxed = false);

// A client's text for an error message: quoted, C-escaped (invalid UTF-8,
// NUL and control bytes as \xNN), cut after 60 bytes with its length, so
// an error never repeats a huge or unprintable input.
std::string QuoteInput(absl::string_view text);

// "jobs/abc" or "abc" (collection "jobs") -> "abc". INVALID_ARGUMENT (reason
// INVALID_FIELD, naming `field`) for an empty name, another collection or an
// id that is not valid.
absl::StatusOr<std::string> ParseName(absl::string_view name, absl::string_view collection,
                                      absl::string_view field, bool relaxed = false);

// collection + "/" + id.
std::string MakeName(absl::string_view collection, absl::string_view id);

// "jobs/{job}/artifacts/{file}" for a file name under the job ("samples.png",
// "previews/step_000020.png").
std::string ArtifactName(absl::string_view job_id, absl::string_view file);

// The job id and file of an artifact name; INVALID_ARGUMENT naming `field` for
// anything else, including files that climb out of the job (".." parts).
absl::StatusOr<std::pair<std::string, std::string>> ParseArtifactName(absl::string_view name,
                                                                       absl::string_view field);

// True for a relative file path of [A-Za-z0-9._-] parts separated by "/",
// none of them "." or "..", at most 200 characters.
bool IsSafeRelativePath(absl::string_view file);

}  // namespace restyle

#endif  // RESTYLE_COMMON_NAMES_H_
