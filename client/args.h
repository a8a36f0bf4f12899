// The command line's values, checked before any call: numbers in their
// ranges (NaN and infinities refused), durations, lists of seeds, output
// paths in directories that exist, resource names of the right collection,
// and what to say about an unknown command. Each error is INVALID_ARGUMENT
// with a message that names the flag, the value given and what the flag
// takes, e.g.
//
//   --truncation must be a number in [0, 1], got nan
//   --grid /nonexistent/dir/g.png: directory /nonexistent/dir does not exist
//   "jobs/k3v9" names a job, not a generator: use generators/k3v9 (the
//   adapted generator of job k3v9)
//
// Thread-safety: free functions (the path checks read the file system).
#ifndef RESTYLE_CLIENT_ARGS_H_
#define RESTYLE_CLIENT_ARGS_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace restyle::client {

// The longest duration a flag takes (the front keeps max_queue_time and
// max_run_time to a year, server/validate.cc).
inline constexpr absl::Duration kMaxFlagDuration = absl::Hours(366 * 24);

// A whole decimal number in [min, max] (no sign but '-', no fraction, no
// exponent): "--priority must be a whole number in [-1000, 1000], got 1.5".
// With max the type's largest, the range reads ">= min".
absl::StatusOr<int64_t> ParseWholeFlag(absl::string_view flag, absl::string_view text, int64_t min,
                                       int64_t max = std::numeric_limits<int64_t>::max());

// A finite decimal number in [min, max]: "--truncation must be a number in
// [0, 1], got nan".
absl::StatusOr<double> ParseNumberFlag(absl::string_view flag, absl::string_view text, double min,
                                       double max);

// A duration from 1ms to kMaxFlagDuration: a number of seconds ("90",
// "1.5") or absl's form ("90s", "10m", "1h30m"); "inf", NaN and negative
// ones are refused.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text);

// Seeds as people write them ("0-15", "3", "1,5,9"; the engine's
// ParseSeeds), at most `max_count` of them: `--seeds 0-99999 asks for 100000
// images; one call draws at most 1024`.
absl::StatusOr<std::vector<uint64_t>> ParseSeedsFlag(absl::string_view flag, const std::string& text,
                                                     size_t max_count);

// A file the command will write: not a directory, in a directory that exists
// and is writable ("--grid /x/g.png: directory /x does not exist"). Nothing
// is created.
absl::Status CheckOutputFile(absl::string_view flag, const std::string& path);

// A directory the command will write files into: an existing, writable
// directory, or a new one (one level, like mkdir) whose parent exists and is
// writable. Nothing is created.
absl::Status CheckOutputDirectory(absl::string_view flag, const std::string& path);

// The resource name ("jobs/ID") of an argument given as a name or a bare id
// in `collection` ("jobs", "generators"). The id itself is the server's to
// check; a name of another collection is refused with what to give instead:
// "jobs/ID" where a generator is expected says to use "generators/ID" (the
// job's adapted generator), and the reverse likewise.
absl::StatusOr<std::string> ResourceName(absl::string_view arg, absl::string_view collection);

// The first argument that is neither an option nor the value of one (the
// command the user typed), or nullopt. `value_options` are the top-level
// options that take a value ("--server", "-o"); "--opt=value" and "-ovalue"
// forms take none after them; "--" ends the options.
std::optional<std::string> FirstWord(const std::vector<std::string>& args,
                                     const std::vector<std::string>& value_options);

// What to say about `command`, which is not one of `commands`:
//   unknown command "genrate"
//   Did you mean this?
//           generate
//   Commands: adapt, watch, ...
// (the suggestions: commands within two edits, or starting with it).
std::string UnknownCommandMessage(absl::string_view command, const std::vector<std::string>& commands);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_ARGS_H_
