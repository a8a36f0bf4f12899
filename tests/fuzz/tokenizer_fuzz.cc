// libFuzzer: CLIP's BPE tokenizer on arbitrary bytes. Malformed text is an
// engine::Error; anything else (a crash, a sanitizer report, another
// exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<restyle::engine::Tokenizer> tokenizer =
      restyle::engine::Tokenizer::FromFile(restyle::engine::DefaultVocabPath());
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<int64_t> ids = tokenizer->Encode(text);
    (void)tokenizer->Decode(ids);
    (void)tokenizer->Tokenize(text, 77, /*truncate=*/true);
  } catch (const restyle::engine::Error&) {
  }
  return 0;
}
