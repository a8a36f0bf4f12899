#include "server/artifact_store.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status.h"

namespace restyle::server {

namespace {

// The first bytes of an upload kept to check its kind.
constexpr size_t kHeadBytes = 16;

// The kinds of file a worker uploads, each with the file names it may have.
bool KindFits(const std::string& kind, const std::string& file) {
  if (kind == "generator_delta") return file == "generator_delta.safetensors";
  if (kind == "result") return file == "result.json";
  if (kind == "quality") return file == "quality.json";
  if (kind == "samples") return file == "samples.png";
  if (kind == "stage1_checkpoint") return file == "stage1_checkpoint.safetensors";
  if (kind == "mapper") {
    return absl::StartsWith(file, "mapper") && absl::EndsWith(file, ".safetensors") &&
           file.find('/') == std::string::npos;
  }
  if (kind == "preview") return absl::StartsWith(file, "previews/") && absl::EndsWith(file, ".png");
  return false;
}

absl::Status CheckKind(const std::string& file, const std::string& kind) {
  if (KindFits(kind, file)) return absl::OkStatus();
  return ErrorWithReason(absl::StatusCode::kInvalidArgument, "ARTIFACT_KIND_MISMATCH",
                         absl::StrCat("an artifact of kind \"", kind, "\" cannot be \"", file,
                                      "\" (kinds: generator_delta, result, quality, samples, "
                                      "stage1_checkpoint, mapper, preview, each with its file)"),
                         {{"field", "header.kind"}});
}

// DATA_LOSS (ARTIFACT_KIND_MISMATCH) unless the upload's first bytes are
// those of its kind: safetensors (a little-endian header length, then '{'),
// PNG's signature, a JSON object. A job cannot succeed with a "generator"
// that no worker could load.
absl::Status CheckContent(const v1::Artifact& a, const std::string& head) {
  bool fits = false;
  if (absl::EndsWith(a.name(), ".safetensors")) {
    fits = head.size() >= 9 && head[8] == '{';
  } else if (absl::EndsWith(a.name(), ".png")) {
    fits = absl::StartsWith(head, "\x89PNG\r\n\x1a\n");
  } else if (absl::EndsWith(a.name(), ".json")) {
    const size_t first = head.find_first_not_of(" \t\r\n");
    fits = first != std::string::npos && head[first] == '{';
  }
  if (fits) return absl::OkStatus();
  return ErrorWithReason(absl::StatusCode::kDataLoss, "ARTIFACT_KIND_MISMATCH",
                         absl::StrCat(a.name(), ": the bytes are not a ", a.kind(),
                                      " file (its format's header is missing); nothing was kept"));
}

}  // namespace


std::string ArtifactStore::ContentTypeOf(const std::string& file) {
  if (absl::EndsWith(file, ".png")) return "image/png";
  if (absl::EndsWith(file, ".json")) return "application/json";
  return "application/octet-stream";
}

absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>> ArtifactStore::BeginUpload(
    const std::string& job_id, const std::string& worker, int attempt, const std::string& file,
    const std::string& kind, int64_t size, const std::string& sha256) {
  if (!IsSafeRelativePath(file)) {
    return InvalidField("header.file", absl::StrCat("artifact file \"", file,
                                                    "\" is not a safe relative path"));
  }
  if (size < 0 || size > kMaxArtifactBytes) {
    return InvalidField("header.size_bytes",
                        absl::StrCat("artifact size ", size, " is outside [0, ", kMaxArtifactBytes, "]"));
  }
  if (sha256.size() != 64 || !std::all_of(sha256.begin(), sha256.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c)) && !absl::ascii_isupper(c);
      })) {
    return InvalidField("header.sha256", "sha256 must be 64 lower-case hex digits");
  }
  RESTYLE_RETURN_IF_ERROR(CheckKind(file, kind));
  RESTYLE_ASSIGN_OR_RETURN(JobRow row, store_->Get(job_id));
  RESTYLE_RETURN_IF_ERROR(CheckLease(row, worker, attempt));
  RESTYLE_ASSIGN_OR_RETURN(std::vector<ArtifactRecord> stored, store_->ListArtifacts(job_id));
  if (std::count_if(stored.begin(), stored.end(), [&](const ArtifactRecord& a) {
        return a.attempt == attempt;
      }) >= kMaxArtifactsPerAttempt) {
    return ErrorWithReason(absl::StatusCode::kResourceExhausted, "TOO_MANY_ARTIFACTS",
                           absl::StrCat(row.job.name(), " attempt ", attempt, " has stored ",
                                        kMaxArtifactsPerAttempt, " files, the most one attempt may"));
  }
  auto upload = std::unique_ptr<Upload>(new Upload);
  upload->owner_ = this;
  upload->worker_ = worker;
  ArtifactRecord& r = upload->record_;
  r.job_id = job_id;
  r.attempt = attempt;
  r.path = absl::StrCat(job_id, "/attempt-", attempt, "/", file);
  r.artifact.set_name(ArtifactName(job_id, file));
  r.artifact.set_kind(kind);
  r.artifact.set_size_bytes(size);
  r.artifact.set_sha256(sha256);
  r.artifact.set_content_type(ContentTypeOf(file));
  RESTYLE_ASSIGN_OR_RETURN(upload->file_, AtomicFile::Create(PathOf(r)));
  return upload;
}

absl::Status ArtifactStore::Upload::Append(absl::string_view bytes) {
  if (file_->size() + static_cast<int64_t>(bytes.size()) > record_.artifact.size_bytes()) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "SIZE_MISMATCH",
                           absl::StrCat(record_.artifact.name(), ": more bytes than the declared ",
                                        record_.artifact.size_bytes()));
  }
  sha_.Update(bytes);
  if (head_.size() < kHeadBytes) {
    head_.append(bytes.data(), std::min(bytes.size(), kHeadBytes - head_.size()));
  }
  return file_->Append(bytes);
}

absl::StatusOr<v1::Artifact> ArtifactStore::Upload::Commit() {
  const v1::Artifact& a = record_.artifact;
  if (file_->size() != a.size_bytes()) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "SIZE_MISMATCH",
                           absl::StrCat(a.name(), ": received ", file_->size(), " bytes of ",
                                        a.size_bytes()));
  }
  const std::string digest = sha_.HexDigest();
  if (digest != a.sha256()) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
                           absl::StrCat(a.name(), ": received bytes have sha256 ", digest,
                                        ", the uploader declared ", a.sha256()));
  }
  RESTYLE_RETURN_IF_ERROR(CheckContent(a, head_));
  RESTYLE_RETURN_IF_ERROR(file_->Commit());
  RESTYLE_RETURN_IF_ERROR(owner_->store_->PutArtifact(record_, worker_));
  return a;
}

absl::StatusOr<std::unique_ptr<ArtifactStore::Reader>> ArtifactStore::Open(const std::string& name) {
  RESTYLE_ASSIGN_OR_RETURN(ArtifactRecord record, store_->GetArtifact(name));
  auto reader = std::make_unique<Reader>();
  reader->in_.open(PathOf(record), std::ios::binary);
  if (!reader->in_) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "ARTIFACT_MISSING",
                           absl::StrCat(name, " is recorded but its file ", PathOf(record),
                                        " cannot be read"));
  }
  reader->left_ = record.artifact.size_bytes();
  reader->record_ = std::move(record);
  return reader;
}

absl::StatusOr<std::string> ArtifactStore::Reader::Next() {
  if (left_ == 0) return std::string();
  std::string chunk(static_cast<size_t>(std::min<int64_t>(left_, kArtifactChunkBytes)), '\0');
  in_.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  if (in_.gcount() != static_cast<std::streamsize>(chunk.size())) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "ARTIFACT_MISSING",
                           absl::StrCat(record_.artifact.name(), " is shorter on disk than recorded"));
  }
  left_ -= static_cast<int64_t>(chunk.size());
  return chunk;
}

absl::Status ArtifactStore::DeleteJob(const std::string& job_id) {
  return store_->DeleteArtifacts(job_id);
}

absl::Status ArtifactStore::RemoveJobFiles(const std::string& job_id) {
  std::error_code ec;
  std::filesystem::remove_all(root_ + "/" + job_id, ec);
  if (ec) return absl::InternalError(absl::StrCat("removing artifacts of ", job_id, ": ", ec.message()));
  return absl::OkStatus();
}

int ArtifactStore::RemoveTemporaries(absl::Duration older_than) {
  namespace fs = std::filesystem;
  const auto cutoff = fs::file_time_type::clock::now() - absl::ToChronoNanoseconds(older_than);
  int removed = 0;
  std::error_code ec;
  if (!fs::exists(root_, ec)) return 0;
  std::vector<fs::path> doomed;
  for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code time_ec;
    if (it->is_regular_file() && IsAtomicTemporary(it->path().filename().string()) &&
        (older_than <= absl::ZeroDuration() || it->last_write_time(time_ec) < cutoff)) {
      doomed.push_back(it->path());
    }
  }
  for (const fs::path& p : doomed) removed += fs::remove(p, ec) ? 1 : 0;
  return removed;
}

}  // namespace restyle::server
