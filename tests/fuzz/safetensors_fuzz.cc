// libFuzzer: the safetensors reader on arbitrary bytes (weights come only
// as safetensors; a hostile or truncated file must be an engine::Error with
// its reason, never a crash, a huge allocation or an out-of-bounds read).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "worker/engine/common/error.h"
#include "worker/engine/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    restyle::engine::SafetensorsContents contents = restyle::engine::ParseSafetensors(bytes, "fuzz input");
    for (const auto& [name, tensor] : contents.tensors) (void)tensor.sum();
  } catch (const restyle::engine::Error&) {
  }
  return 0;
}
