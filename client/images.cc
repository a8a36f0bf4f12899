#include "client/images.h"

#include <png.h>

#include <algorithm>
#include <cstring>

#include "common/status.h"

namespace restyle::client {

absl::StatusOr<Rgb> DecodePng(const std::string& png) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, png.data(), png.size())) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "BAD_IMAGE",
                           std::string("not a PNG: ") + image.message);
  }
  image.format = PNG_FORMAT_RGB;
  Rgb out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr)) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "BAD_IMAGE",
                           std::string("PNG decoding failed: ") + image.message);
  }
  return out;
}

std::string EncodePng(const Rgb& in) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(in.width);
  image.height = static_cast<png_uint_32>(in.height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&image, nullptr, &size, 0, in.pixels.data(), 0, nullptr);
  std::string out(size, '\0');
  png_image_write_to_memory(&image, out.data(), &size, 0, in.pixels.data(), 0, nullptr);
  out.resize(size);
  return out;
}

Rgb Grid(const std::vector<const Rgb*>& tiles, int columns, int padding) {
  int w = 0, h = 0;
  for (const Rgb* t : tiles) {
    if (t != nullptr) {
      w = t->width;
      h = t->height;
      break;
    }
  }
  const int n = static_cast<int>(tiles.size());
  columns = std::max(1, std::min(columns, n));
  const int rows = (n + columns - 1) / columns;
  Rgb grid;
  grid.width = columns * (w + padding) + padding;
  grid.height = rows * (h + padding) + padding;
  grid.pixels.assign(static_cast<size_t>(grid.width) * grid.height * 3, 0);
  for (int i = 0; i < n; ++i) {
    const Rgb* t = tiles[i];
    if (t == nullptr || t->width != w || t->height != h) continue;
    const int x0 = (i % columns) * (w + padding) + padding;
    const int y0 = (i / columns) * (h + padding) + padding;
    for (int y = 0; y < h; ++y) {
      std::memcpy(&grid.pixels[(static_cast<size_t>(y0 + y) * grid.width + x0) * 3],
                  &t->pixels[static_cast<size_t>(y) * w * 3], static_cast<size_t>(w) * 3);
    }
  }
  return grid;
}

std::vector<const Rgb*> GridTiles(const std::vector<Rgb>& adapted, const std::vector<Rgb>& source,
                                  int columns) {
  std::vector<const Rgb*> tiles;
  const int n = static_cast<int>(adapted.size());
  if (source.empty()) {
    for (const Rgb& a : adapted) tiles.push_back(&a);
    return tiles;
  }
  // Row pairs: up to `columns` source images, then the same seeds adapted; a
  // short last row is padded with black tiles so pairs stay aligned.
  for (int i = 0; i < n; i += columns) {
    const int end = std::min(n, i + columns);
    for (const std::vector<Rgb>* set : {&source, &adapted}) {
      for (int j = i; j < end; ++j) tiles.push_back(&(*set)[j]);
      for (int j = end; j < i + columns; ++j) tiles.push_back(nullptr);
    }
  }
  return tiles;
}

}  // namespace restyle::client
