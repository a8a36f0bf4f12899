// PNG images for the CLI's `generate --grid` (libpng, no LibTorch): decode
// the images the server sent, tile them the way restyle-generate does (up to
// 8 columns, 2 black pixels of padding; with the source, a row of source
// images above each row of adapted ones) and encode the grid.
//
// Thread-safety: pure functions.
#ifndef RESTYLE_CLIENT_IMAGES_H_
#define RESTYLE_CLIENT_IMAGES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace restyle::client {

// 8-bit RGB, rows top to bottom.
struct Rgb {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};

// DATA_LOSS when the bytes are not a PNG libpng reads (any PNG becomes RGB).
absl::StatusOr<Rgb> DecodePng(const std::string& png);
std::string EncodePng(const Rgb& image);

// Tiles of one size in `columns` columns with `padding` black pixels around
// each (a null tile is black).
Rgb Grid(const std::vector<const Rgb*>& tiles, int columns, int padding = 2);

// The tiles of a grid of `adapted` images, with the `source` images of the
// same seeds in a row above each row when given (restyle-generate's layout).
std::vector<const Rgb*> GridTiles(const std::vector<Rgb>& adapted, const std::vector<Rgb>& source,
                                  int columns);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_IMAGES_H_
