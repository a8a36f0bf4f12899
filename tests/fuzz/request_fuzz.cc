// libFuzzer: the front's request checks on arbitrary Adapt and Generate
// requests (the bytes parsed as the protobuf message; unparseable bytes are
// gRPC's to refuse): CheckAdaptRequest (names, texts through the tokenizer,
// every setting through JobOptionsFromSpec, the proto-to-options
// conversion) and CheckGenerateRequest return a Status; they never crash,
// and what they accept converts to engine options again.
#include <cstddef>
#include <cstdint>
#include <memory>

#include <google/protobuf/stubs/logging.h>

#include "common/job_spec.h"
#include "restyle/v1/restyle_service.pb.h"
#include "server/validate.h"
#include "worker/engine/clip/tokenizer.h"

namespace {

restyle::server::SourceFacts Demo(const std::string& name) {
  restyle::server::SourceFacts facts;
  facts.known = name == "generators/demo";
  facts.source_text = "photo";
  facts.resolution = 32;
  return facts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<restyle::engine::Tokenizer> tokenizer =
      restyle::engine::Tokenizer::FromFile(restyle::engine::DefaultVocabPath());
  // Protobuf logs every invalid UTF-8 string it refuses: not ours to print.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  if (size == 0) return 0;
  // The first byte picks the message.
  if (data[0] % 2 == 0) {
    restyle::v1::AdaptRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    absl::StatusOr<restyle::v1::JobSpec> spec = restyle::server::CheckAdaptRequest(request, Demo, tokenizer.get());
    if (spec.ok() && !restyle::JobOptionsFromSpec(*spec).ok()) __builtin_trap();  // accepted, then refused
  } else {
    restyle::v1::GenerateRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    (void)restyle::server::CheckGenerateRequest(request);
  }
  return 0;
}
