// Streams a stored artifact to a client in chunks: the first message has the
// Artifact (name, size, sha256), every message up to kArtifactChunkBytes of
// data. The next chunk is read (on the I/O executor) only once the client
// has taken the previous ones, so a slow client holds two chunks at most.
// Shared by the public API and the worker protocol, whose download messages
// have the same two fields.
//
// Thread-safety: the stream object is shared by the I/O thread and gRPC's.
#ifndef RESTYLE_SERVER_ARTIFACT_STREAM_H_
#define RESTYLE_SERVER_ARTIFACT_STREAM_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/status.h"
#include "server/artifact_store.h"
#include "server/executor.h"
#include "server/reactors.h"

namespace restyle::server {

template <typename Msg>
grpc::ServerWriteReactor<Msg>* StreamArtifact(grpc::CallbackServerContext* context,
                                              ArtifactStore* artifacts, Executor* io,
                                              const std::string& name,
                                              const absl::Status& admitted) {
  auto stream = ServerStream<Msg>::Create(
      context, 4,
      ErrorWithReason(absl::StatusCode::kResourceExhausted, "CLIENT_TOO_SLOW", "client too slow"));
  if (!admitted.ok()) {
    stream->Finish(admitted);
    return stream->reactor();
  }
  // Owned by the stream's OnWritten callback, which the stream drops when
  // the call is done (so the cycle through `stream` ends there).
  struct Sender {
    std::shared_ptr<ServerStream<Msg>> stream;
    std::unique_ptr<ArtifactStore::Reader> reader;
    bool first = true;
    // Reads and sends the next chunk; at the end, finishes.
    void Next() {
      absl::StatusOr<std::string> chunk = reader->Next();
      if (!chunk.ok()) {
        stream->Finish(chunk.status());
        return;
      }
      if (chunk->empty() && !first) {
        stream->Finish(absl::OkStatus());
        return;
      }
      Msg msg;
      if (first) *msg.mutable_artifact() = reader->artifact();
      first = false;
      msg.set_data(std::move(*chunk));
      stream->Write(std::move(msg));
    }
  };
  auto sender = std::make_shared<Sender>();
  sender->stream = stream;
  stream->OnWritten([io, sender](size_t queued) {
    if (queued == 0) io->Schedule([sender] { sender->Next(); });
  });
  io->Schedule([sender, artifacts, name] {
    absl::StatusOr<std::unique_ptr<ArtifactStore::Reader>> reader = artifacts->Open(name);
    if (!reader.ok()) {
      sender->stream->Finish(reader.status());
      return;
    }
    sender->reader = *std::move(reader);
    sender->Next();
  });
  return stream->reactor();
}

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_ARTIFACT_STREAM_H_
