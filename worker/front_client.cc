#include "worker/front_client.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/channel.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/sha256.h"
#include "common/status.h"

namespace restyle::worker {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

// Transfers get a minute per 100 MB on top of a base.
absl::Duration TransferTimeout(int64_t bytes) {
  return absl::Seconds(60) + absl::Seconds(60) * (static_cast<double>(bytes) / 1e8);
}

}  // namespace

absl::StatusOr<std::unique_ptr<FrontClient>> FrontClient::Create(const ConnectionOptions& options) {
  RESTYLE_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ChannelCredentials> creds,
      ChannelCredentials(options.tls_ca_file, options.tls_cert_file, options.tls_key_file));
  grpc::ChannelArguments args = ChannelArguments(absl::Seconds(20), 8 << 20);
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);  // a moved front is found again
  auto channel = grpc::CreateCustomChannel(options.address, creds, args);
  return std::unique_ptr<FrontClient>(new FrontClient(channel, options.token));
}

std::unique_ptr<grpc::ClientContext> FrontClient::Context(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  absl::MutexLock lock(&mu_);
  if (!session_.empty()) context->AddMetadata("restyle-worker-session", session_);
  return context;
}

void FrontClient::SetSession(std::string session) {
  absl::MutexLock lock(&mu_);
  session_ = std::move(session);
}

absl::Status FrontClient::Call(absl::Duration timeout,
                               const std::function<grpc::Status(grpc::ClientContext*)>& call) const {
  std::unique_ptr<grpc::ClientContext> context = Context(timeout);
  return FromGrpcStatus(call(context.get()));
}

absl::StatusOr<restyle::v1::Artifact> FrontClient::Upload(wv1::UploadArtifactRequest::Header header,
                                                          const std::string& path) {
  RESTYLE_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(path));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  const int64_t size = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  header.set_size_bytes(size);
  header.set_sha256(sha);
  std::unique_ptr<grpc::ClientContext> context = Context(TransferTimeout(size));
  wv1::UploadArtifactResponse response;
  std::unique_ptr<grpc::ClientWriter<wv1::UploadArtifactRequest>> writer =
      stub_->UploadArtifact(context.get(), &response);
  wv1::UploadArtifactRequest message;
  *message.mutable_header() = header;
  bool ok = writer->Write(message);
  std::string buffer(kChunkBytes, '\0');
  while (ok && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    message.set_data(buffer.data(), static_cast<size_t>(n));
    ok = writer->Write(message);
  }
  if (ok) writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  if (!status.ok()) return Annotate(status, absl::StrCat("uploading ", header.file()));
  return response.artifact();
}

absl::Status FrontClient::Download(const std::string& worker, const restyle::v1::Artifact& artifact,
                                   const std::string& path) {
  std::unique_ptr<grpc::ClientContext> context = Context(TransferTimeout(artifact.size_bytes()));
  wv1::DownloadArtifactRequest request;
  request.set_worker(worker);
  request.set_name(artifact.name());
  std::unique_ptr<grpc::ClientReader<wv1::DownloadArtifactResponse>> reader =
      stub_->DownloadArtifact(context.get(), request);
  RESTYLE_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> file, AtomicFile::Create(path));
  Sha256 sha;
  wv1::DownloadArtifactResponse message;
  absl::Status write = absl::OkStatus();
  while (reader->Read(&message)) {
    if (!write.ok()) continue;
    sha.Update(message.data());
    write = file->Append(message.data());
  }
  RESTYLE_RETURN_IF_ERROR(Annotate(FromGrpcStatus(reader->Finish()),
                                   absl::StrCat("downloading ", artifact.name())));
  RESTYLE_RETURN_IF_ERROR(write);
  const std::string digest = sha.HexDigest();
  if (file->size() != artifact.size_bytes() || digest != artifact.sha256()) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
                           absl::StrCat(artifact.name(), ": received ", file->size(),
                                        " bytes with sha256 ", digest, ", expected ",
                                        artifact.size_bytes(), " bytes with ", artifact.sha256()));
  }
  return file->Commit();
}

}  // namespace restyle::worker
