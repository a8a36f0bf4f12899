#include "common/names.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace restyle {

std::string QuoteInput(absl::string_view text) {
  constexpr size_t kShown = 60;
  if (text.size() <= kShown) return absl::StrCat("\"", absl::CHexEscape(text), "\"");
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kShown)), "...\" (", text.size(), " bytes)");
}

bool IsValidId(absl::string_view id, bool relaxed) {
  if (id.empty() || id.size() > 63) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    const bool strict_ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    const bool relaxed_ok = (c >= 'A' && c <= 'Z') || c == '_' || c == '.';
    if (!strict_ok && !(relaxed && relaxed_ok)) return false;
  }
  return true;
}

absl::StatusOr<std::string> ParseName(absl::string_view name, absl::string_view collection,
                                      absl::string_view field, bool relaxed) {
  if (name.empty()) {
    return InvalidField(field, absl::StrCat(field, " is required (\"", collection, "/ID\")"));
  }
  absl::string_view id = name;
  const std::string prefix = absl::StrCat(collection, "/");
  if (absl::StartsWith(name, prefix)) {
    id.remove_prefix(prefix.size());
  } else if (absl::StrContains(name, '/')) {
    return InvalidField(field, absl::StrCat(field, " must name one of ", collection,
                                            " (\"", collection, "/ID\"), got ", QuoteInput(name)));
  }
  if (!IsValidId(id, relaxed)) {
    return InvalidField(field, absl::StrCat(field, ": ", QuoteInput(id), " is not a valid id (1-63 ",
                                            relaxed ? "letters, digits, '-', '_' and '.'"
                                                    : "lower-case letters, digits and '-'",
                                            ")"));
  }
  return std::string(id);
}

std::string MakeName(absl::string_view collection, absl::string_view id) {
  return absl::StrCat(collection, "/", id);
}

std::string ArtifactName(absl::string_view job_id, absl::string_view file) {
  return absl::StrCat(kJobs, "/", job_id, "/artifacts/", file);
}

bool IsSafeRelativePath(absl::string_view file) {
  if (file.empty() || file.size() > 200) return false;
  for (absl::string_view part : absl::StrSplit(file, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
        return false;
      }
    }
  }
  return true;
}

absl::StatusOr<std::pair<std::string, std::string>> ParseArtifactName(absl::string_view name,
                                                                       absl::string_view field) {
  const std::string prefix = absl::StrCat(kJobs, "/");
  constexpr absl::string_view kMiddle = "/artifacts/";
  const size_t middle = name.find(kMiddle);
  if (!absl::StartsWith(name, prefix) || middle == absl::string_view::npos) {
    return InvalidField(field, absl::StrCat(field, " must be \"jobs/ID/artifacts/FILE\", got ",
                                            QuoteInput(name)));
  }
  const absl::string_view id = name.substr(prefix.size(), middle - prefix.size());
  const absl::string_view file = name.substr(middle + kMiddle.size());
  if (!IsValidId(id) || !IsSafeRelativePath(file)) {
    return InvalidField(field, absl::StrCat(field, ": ", QuoteInput(name), " is not an artifact name"));
  }
  return std::make_pair(std::string(id), std::string(file));
}

}  // namespace restyle
