#include "server/data_check.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"

namespace restyle::server {
namespace {

namespace fs = std::filesystem;

// The file's size and sha256, or nullopt when it cannot be read.
std::optional<std::pair<int64_t, std::string>> Digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  Sha256 sha;
  std::string buffer(1 << 20, '\0');
  int64_t size = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    sha.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    size += n;
  }
  if (in.bad()) return std::nullopt;
  return std::make_pair(size, sha.HexDigest());
}

}  // namespace

absl::StatusOr<DataCheckReport> CheckDataDir(JobStore& store, const std::string& artifact_root) {
  DataCheckReport report;
  std::string token;
  do {
    RESTYLE_ASSIGN_OR_RETURN(JobPage page, store.List({}, 500, token));
    for (const JobRow& row : page.rows) {
      ++report.jobs;
      const std::string id(absl::StripPrefix(row.job.name(), "jobs/"));
      RESTYLE_ASSIGN_OR_RETURN(std::vector<ArtifactRecord> records, store.ListArtifacts(id));
      std::set<std::string> final_kinds;
      for (const ArtifactRecord& r : records) {
        ++report.artifacts;
        const std::string path = artifact_root + "/" + r.path;
        const auto digest = Digest(path);
        if (!digest) {
          report.problems.push_back(absl::StrCat(r.artifact.name(), ": its file ", path, " is missing"));
          continue;
        }
        report.bytes += digest->first;
        if (digest->first != r.artifact.size_bytes()) {
          report.problems.push_back(absl::StrCat(r.artifact.name(), ": ", digest->first,
                                                 " bytes on disk, ", r.artifact.size_bytes(),
                                                 " recorded"));
        } else if (digest->second != r.artifact.sha256()) {
          report.problems.push_back(absl::StrCat(r.artifact.name(), ": sha256 ", digest->second,
                                                 " on disk, ", r.artifact.sha256(), " recorded"));
        }
        if (r.attempt == row.job.attempt()) final_kinds.insert(r.artifact.kind());
      }
      if (row.job.state() != v1::JOB_STATE_SUCCEEDED) continue;
      ++report.succeeded;
      RESTYLE_ASSIGN_OR_RETURN(Events events, store.ReadEvents(id, 0, 1 << 30));
      int succeeded_events = 0;
      for (const v1::JobEvent& e : events) {
        succeeded_events += e.has_job() && e.job().state() == v1::JOB_STATE_SUCCEEDED;
      }
      if (succeeded_events != 1) {
        report.problems.push_back(
            absl::StrCat(row.job.name(), ": ", succeeded_events, " SUCCEEDED events (one expected)"));
      }
      if (records.empty()) continue;  // its generator was deleted, with its files
      for (const char* kind : {"generator_delta", "result"}) {
        if (!final_kinds.count(kind)) {
          report.problems.push_back(absl::StrCat(row.job.name(), ": succeeded in attempt ",
                                                 row.job.attempt(), " without its ", kind));
        }
      }
    }
    token = page.next_page_token;
  } while (!token.empty());

  std::error_code ec;
  if (fs::exists(artifact_root, ec)) {
    for (auto it = fs::recursive_directory_iterator(artifact_root, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_regular_file() && IsAtomicTemporary(it->path().filename().string())) {
        ++report.leftover_temporaries;
      }
    }
  }
  return report;
}

}  // namespace restyle::server
