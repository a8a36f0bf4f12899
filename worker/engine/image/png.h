// PNG encoding of 8-bit RGB images with libpng. A separate target
// (restyle_image) built only when libpng is found: the engine proper depends
// on LibTorch and header-only libraries alone.
//
// Thread-safety: reentrant.
#ifndef RESTYLE_WORKER_ENGINE_IMAGE_PNG_H_
#define RESTYLE_WORKER_ENGINE_IMAGE_PNG_H_

#include <torch/types.h>

#include <string>

namespace restyle::engine {

// libpng's PNG_FILTER_SUB bit, for PngOptions::filters: the fastest filter to
// choose and, on generated images, within 3% of the adaptive choice's size
// (docs/benchmarks.md#png).
inline constexpr int kPngFilterSub = 0x10;

struct PngOptions {
  // zlib's level: 0 (stored) to 9 (smallest, slowest).
  int compression_level = 6;
  // The row filters libpng may choose from (PNG_FILTER_* bits; 0: libpng's
  // default, every filter).
  int filters = 0;
};

// Encodes an (H,W,3) uint8 tensor (any layout; copied to contiguous CPU) as a
// PNG byte string. Error(kInvalidArgument) for other shapes or dtypes, or a
// compression level outside 0-9.
std::string EncodePng(const torch::Tensor& rgb, const PngOptions& options = {});

// Writes EncodePng(rgb) to `path` (Error(kNotFound) if it cannot be created).
void WritePng(const std::string& path, const torch::Tensor& rgb);

// Decodes an 8-bit RGB PNG (as written by EncodePng) into (H,W,3) uint8.
// Error(kDataLoss) if the bytes are not such a PNG.
torch::Tensor DecodePng(const std::string& bytes);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_IMAGE_PNG_H_
