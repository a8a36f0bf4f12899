// The files jobs produce (generator deltas, mappers, checkpoints, previews,
// samples, quality reports), under <data_dir>/artifacts/<job_id>/attempt-<n>/
// <file>. An upload is written to a temporary name, its sha256 computed as it
// streams in and compared with the one the uploader declared, then fsynced
// and renamed; only then is it recorded in the job store (fenced by the
// lease). Each attempt writes its own directory, so a worker that lost its
// lease cannot overwrite what the next attempt wrote. A job's artifact name
// ("jobs/{id}/artifacts/{file}") always maps to the last recorded upload.
//
// Thread-safety: thread-safe; an Upload object is used by one call at a time.
#ifndef RESTYLE_SERVER_ARTIFACT_STORE_H_
#define RESTYLE_SERVER_ARTIFACT_STORE_H_

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/sha256.h"
#include "server/job_store.h"

namespace restyle::server {

// The largest artifact accepted (a 1024 generator delta is ~120 MB).
inline constexpr int64_t kMaxArtifactBytes = int64_t{4} << 30;
// Bytes per streamed message, both ways.
inline constexpr size_t kArtifactChunkBytes = size_t{1} << 20;
// Files one attempt of a job may store (previews, checkpoints and results
// of a long job are a few hundred).
inline constexpr int kMaxArtifactsPerAttempt = 2000;

class ArtifactStore {
 public:
  // `root`: <data_dir>/artifacts (created).
  ArtifactStore(std::string root, JobStore* store) : root_(std::move(root)), store_(store) {}

  // A file being received.
  class Upload {
   public:
    absl::Status Append(absl::string_view bytes);
    // Checks size and digest, commits the file and records it, unless the
    // job's lease moved on (ABORTED, LEASE_LOST). DATA_LOSS (reason
    // DIGEST_MISMATCH / SIZE_MISMATCH) when the bytes are not what was
    // declared; nothing is kept then.
    absl::StatusOr<v1::Artifact> Commit();

   private:
    friend class ArtifactStore;
    Upload() = default;
    ArtifactStore* owner_ = nullptr;
    ArtifactRecord record_;
    std::string worker_;
    std::unique_ptr<AtomicFile> file_;
    Sha256 sha_;
    std::string head_;  // the first bytes, to check the file is of its kind
  };

  // Starts receiving `file` of a job leased to `worker` under `attempt`.
  // INVALID_ARGUMENT for an unsafe file name, a bad digest or size, or a
  // kind that is not one of the worker's or not this file's (reason
  // ARTIFACT_KIND_MISMATCH; Commit checks the bytes are of that kind too);
  // RESOURCE_EXHAUSTED (TOO_MANY_ARTIFACTS) past kMaxArtifactsPerAttempt;
  // ABORTED (LEASE_LOST) when the lease is not the worker's.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const std::string& job_id,
                                                      const std::string& worker, int attempt,
                                                      const std::string& file,
                                                      const std::string& kind, int64_t size,
                                                      const std::string& sha256);

  // A stored file, read in chunks.
  class Reader {
   public:
    const v1::Artifact& artifact() const { return record_.artifact; }
    // The next chunk; empty at the end. DATA_LOSS when the file is shorter
    // than recorded.
    absl::StatusOr<std::string> Next();

   private:
    friend class ArtifactStore;
    ArtifactRecord record_;
    std::ifstream in_;
    int64_t left_ = 0;
  };
  // NOT_FOUND (ARTIFACT_NOT_FOUND); DATA_LOSS when the file is gone.
  absl::StatusOr<std::unique_ptr<Reader>> Open(const std::string& name);

  // Removes the temporary files of uploads a crash interrupted that were
  // last written more than `older_than` ago (zero: all; with several
  // fronts on one directory, long enough that none is another front's
  // upload in progress). Returns how many went.
  int RemoveTemporaries(absl::Duration older_than);

  // The absolute path of a record's file.
  std::string PathOf(const ArtifactRecord& record) const { return root_ + "/" + record.path; }

  // Removes a job's records (a deleted generator); then RemoveJobFiles,
  // off the store's thread, its files.
  absl::Status DeleteJob(const std::string& job_id);
  absl::Status RemoveJobFiles(const std::string& job_id);

  // "image/png" for .png, "application/json" for .json, else octet-stream.
  static std::string ContentTypeOf(const std::string& file);

 private:
  const std::string root_;
  JobStore* const store_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_ARTIFACT_STORE_H_
