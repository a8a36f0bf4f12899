#include "client/args.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/names.h"
#include "worker/engine/adapt_job/seeds.h"
#include "worker/engine_boundary.h"

namespace restyle::client {
namespace {

namespace fs = std::filesystem;

// The value as typed when it reads plainly (-0.5, nan, 1h30m), else quoted
// and escaped ("", "a b", control bytes).
std::string Shown(absl::string_view text) {
  const bool plain = !text.empty() && text.size() <= 60 &&
                     std::all_of(text.begin(), text.end(), [](char c) {
                       return absl::ascii_isgraph(static_cast<unsigned char>(c)) && c != '"';
                     });
  return plain ? std::string(text) : QuoteInput(text);
}

std::string Number(double v) { return absl::StrFormat("%g", v); }

// Parses a whole decimal number strictly: an optional '-', then digits.
bool ParseWhole(absl::string_view text, int64_t* out) {
  absl::string_view digits = absl::StartsWith(text, "-") ? text.substr(1) : text;
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return false;
  }
  return absl::SimpleAtoi(text, out);  // false on overflow
}

// How many seeds "0-3,10" names, saturating; nullopt when it does not parse.
std::optional<uint64_t> CountSeeds(absl::string_view text) {
  uint64_t n = 0;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
    uint64_t first = 0, last = 0;
    if (!absl::SimpleAtoi(ends[0], &first)) return std::nullopt;
    last = first;
    if (ends.size() == 2 && !absl::SimpleAtoi(ends[1], &last)) return std::nullopt;
    if (last < first) return std::nullopt;
    const uint64_t items = last - first == UINT64_MAX ? UINT64_MAX : last - first + 1;
    n = items > UINT64_MAX - n ? UINT64_MAX : n + items;
  }
  return n;
}

// `dir` exists, is a directory and is writable; `arg` is what the user gave.
absl::Status CheckWritableDirectory(absl::string_view flag, absl::string_view arg, const fs::path& dir,
                                    absl::string_view note = "") {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (!fs::exists(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", Shown(arg), ": directory ", dir.string(), " does not exist", note));
  }
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", Shown(arg), ": ", dir.string(), " is not a directory"));
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", Shown(arg), ": directory ", dir.string(),
                                                   " is not writable (", std::strerror(errno), ")"));
  }
  return absl::OkStatus();
}

std::string Singular(absl::string_view collection) {
  if (collection == "jobs") return "job";
  if (collection == "generators") return "generator";
  if (collection == "workers") return "worker";
  return std::string(collection);
}

// Edits (insertions, deletions, substitutions) from a to b.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

absl::StatusOr<int64_t> ParseWholeFlag(absl::string_view flag, absl::string_view text, int64_t min,
                                       int64_t max) {
  int64_t v = 0;
  if (ParseWhole(text, &v) && v >= min && v <= max) return v;
  const std::string range = max == std::numeric_limits<int64_t>::max()
                                ? absl::StrCat(">= ", min)
                                : absl::StrCat("in [", min, ", ", max, "]");
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " must be a whole number ", range, ", got ", Shown(text)));
}

absl::StatusOr<double> ParseNumberFlag(absl::string_view flag, absl::string_view text, double min,
                                       double max) {
  double v = 0;
  const std::string stripped(absl::StripAsciiWhitespace(text));
  if (stripped == text && absl::SimpleAtod(text, &v) && std::isfinite(v) && v >= min && v <= max) {
    return v;
  }
  return absl::InvalidArgumentError(absl::StrCat(flag, " must be a number in [", Number(min), ", ",
                                                 Number(max), "], got ", Shown(text)));
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text) {
  absl::Duration d = absl::ZeroDuration();
  double seconds = 0;
  bool parsed = false;
  if (absl::SimpleAtod(text, &seconds)) {
    parsed = std::isfinite(seconds) && std::abs(seconds) <= 1e12;
    if (parsed) d = absl::Seconds(seconds);
  } else {
    parsed = absl::ParseDuration(text, &d);
  }
  if (parsed && d >= absl::Milliseconds(1) && d <= kMaxFlagDuration) return d;
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " must be a duration from 1ms to 366 days (90s, 10m, 1h30m; a bare number is "
                         "seconds), got ",
                   Shown(text)));
}

absl::StatusOr<std::vector<uint64_t>> ParseSeedsFlag(absl::string_view flag, const std::string& text,
                                                     size_t max_count) {
  std::vector<uint64_t> seeds;
  const absl::Status status =
      worker::RunTorchFree("", [&] { seeds = engine::ParseSeeds(text, max_count); });
  if (status.ok()) return seeds;
  if (std::optional<uint64_t> n = CountSeeds(text); n && *n > max_count) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", Shown(text), " asks for ", *n,
                                                   " images; one call draws at most ", max_count,
                                                   " (e.g. ", flag, " 0-", max_count - 1, ")"));
  }
  // The engine's messages start with "seeds: ", which the flag replaces.
  absl::string_view message = status.message();
  absl::ConsumePrefix(&message, "seeds: ");
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", message));
}

absl::Status CheckOutputFile(absl::string_view flag, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a file name"));
  const fs::path p(path);
  std::error_code ec;
  if (!p.has_filename() || fs::is_directory(p, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", Shown(path), " is a directory: give the file's name (e.g. ",
                     (p.has_filename() ? p : p.parent_path()).string(), "/images.png)"));
  }
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  return CheckWritableDirectory(flag, path, dir);
}

absl::Status CheckOutputDirectory(absl::string_view flag, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a directory"));
  fs::path p(path);
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();  // "out/" is "out"
  std::error_code ec;
  if (fs::exists(p, ec)) return CheckWritableDirectory(flag, path, p);
  const fs::path parent = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  return CheckWritableDirectory(flag, path, parent,
                                absl::StrCat(" (", flag, " creates its last directory only)"));
}

absl::StatusOr<std::string> ResourceName(absl::string_view arg, absl::string_view collection) {
  const std::string singular = Singular(collection);
  const std::string forms = absl::StrCat("(", collection, "/ID or ID)");
  if (arg.empty()) return absl::InvalidArgumentError(absl::StrCat("a ", singular, " is required ", forms));
  const std::string prefix = absl::StrCat(collection, "/");
  if (!absl::StrContains(arg, '/')) return absl::StrCat(prefix, arg);
  const size_t slash = arg.find('/');
  const absl::string_view other = arg.substr(0, slash);
  const absl::string_view id = arg.substr(slash + 1);
  const std::string quoted = QuoteInput(arg);
  if (!absl::StrContains(id, '/') && !id.empty()) {
    if (other == collection) return std::string(arg);
    if (other == "jobs" && collection == "generators") {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " names a job, not a generator: use generators/",
                                                     id, " (the adapted generator of job ", id, ")"));
    }
    if (other == "generators" && collection == "jobs") {
      return absl::InvalidArgumentError(absl::StrCat(
          quoted, " names a generator, not a job: use jobs/", id, " (the job that made generators/", id,
          ", if it is an adapted one; restyle generator generators/", id, " shows the generator)"));
    }
    if (other == "jobs" || other == "generators" || other == "workers") {
      return absl::InvalidArgumentError(
          absl::StrCat(quoted, " names a ", Singular(other), ", not a ", singular, " ", forms));
    }
  }
  if (other == "jobs" && absl::StrContains(id, "/artifacts/")) {
    const std::string job = std::string(id.substr(0, id.find('/')));
    return absl::InvalidArgumentError(
        absl::StrCat(quoted, " names a file of job ", job, ", not a ", singular, ": use ",
                     collection == "jobs" ? "jobs/" : "generators/", job,
                     collection == "jobs" ? "" : absl::StrCat(" (the adapted generator of job ", job, ")")));
  }
  return absl::InvalidArgumentError(absl::StrCat(quoted, " is not a ", singular, " name ", forms));
}

std::optional<std::string> FirstWord(const std::vector<std::string>& args,
                                     const std::vector<std::string>& value_options) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1 < args.size() ? std::optional<std::string>(args[i + 1]) : std::nullopt;
    if (a.size() < 2 || a[0] != '-') return a;  // "-" alone is a word too
    if (absl::StrContains(a, '=')) continue;    // --server=host:port
    if (std::find(value_options.begin(), value_options.end(), a) != value_options.end()) ++i;
  }
  return std::nullopt;
}

std::string UnknownCommandMessage(absl::string_view command, const std::vector<std::string>& commands) {
  std::vector<std::string> near;
  const std::string lower = absl::AsciiStrToLower(command);
  for (const std::string& c : commands) {
    if (EditDistance(lower, c) <= 2 || (lower.size() >= 3 && absl::StartsWith(c, lower))) {
      near.push_back(c);
    }
  }
  std::string message = absl::StrCat("unknown command ", QuoteInput(command));
  if (!near.empty()) {
    absl::StrAppend(&message, "\n\nDid you mean ", near.size() == 1 ? "this" : "one of these", "?\n\t",
                    absl::StrJoin(near, "\n\t"), "\n");
  }
  absl::StrAppend(&message, "\nCommands: ", absl::StrJoin(commands, ", "));
  return message;
}

}  // namespace restyle::client
