#include "worker/engine/image/png.h"

#include <png.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

void WriteToString(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), length);
}

void NoFlush(png_structp) {}

[[noreturn]] void PngError(png_structp png, png_const_charp message) {
  auto* what = static_cast<std::string*>(png_get_error_ptr(png));
  *what = message;
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}

struct ReadCursor {
  const std::string* bytes;
  size_t offset;
};

void ReadFromString(png_structp png, png_bytep data, png_size_t length) {
  auto* cursor = static_cast<ReadCursor*>(png_get_io_ptr(png));
  if (cursor->offset + length > cursor->bytes->size()) png_error(png, "truncated PNG data");
  std::memcpy(data, cursor->bytes->data() + cursor->offset, length);
  cursor->offset += length;
}

static_assert(kPngFilterSub == PNG_FILTER_SUB);

}  // namespace

std::string EncodePng(const torch::Tensor& rgb, const PngOptions& options) {
  CheckArgument(options.compression_level >= 0 && options.compression_level <= 9,
                "EncodePng: compression level " + std::to_string(options.compression_level) +
                    " is not in 0-9");
  CheckArgument(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8,
                "EncodePng: expected an (H,W,3) uint8 tensor, got " + c10::str(rgb.sizes()) +
                    " " + std::string(c10::toString(rgb.scalar_type())));
  auto img = rgb.to(torch::kCPU).contiguous();
  const auto h = static_cast<png_uint_32>(img.size(0));
  const auto w = static_cast<png_uint_32>(img.size(1));
  CheckArgument(h > 0 && w > 0, "EncodePng: empty image");
  std::string out, error;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, PngError, PngWarning);
  if (png == nullptr) Fail(ErrorCode::kInternal, "EncodePng: png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows(h);
  auto* base = img.data_ptr<uint8_t>();
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = base + static_cast<size_t>(y) * w * 3;
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    Fail(ErrorCode::kInternal, "EncodePng: libpng: " + error);
  }
  png_set_write_fn(png, &out, WriteToString, NoFlush);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, options.compression_level);
  if (options.filters != 0) png_set_filter(png, PNG_FILTER_TYPE_BASE, options.filters);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void WritePng(const std::string& path, const torch::Tensor& rgb) {
  const std::string bytes = EncodePng(rgb);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) Fail(ErrorCode::kNotFound, "WritePng: cannot create " + path);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) Fail(ErrorCode::kDataLoss, "WritePng: failed writing " + path);
}

torch::Tensor DecodePng(const std::string& bytes) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8)) {
    Fail(ErrorCode::kDataLoss, "DecodePng: not a PNG (bad signature)");
  }
  std::string error;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, PngError, PngWarning);
  if (png == nullptr) Fail(ErrorCode::kInternal, "DecodePng: png_create_read_struct failed");
  png_infop info = png_create_info_struct(png);
  torch::Tensor out;
  std::vector<png_bytep> rows;
  ReadCursor cursor{&bytes, 0};
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    Fail(ErrorCode::kDataLoss, "DecodePng: libpng: " + error);
  }
  png_set_read_fn(png, &cursor, ReadFromString);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (png_get_bit_depth(png, info) != 8 || png_get_color_type(png, info) != PNG_COLOR_TYPE_RGB) {
    png_destroy_read_struct(&png, &info, nullptr);
    Fail(ErrorCode::kDataLoss, "DecodePng: only 8-bit RGB PNGs are supported");
  }
  out = torch::empty({static_cast<int64_t>(h), static_cast<int64_t>(w), 3}, torch::kUInt8);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = out.data_ptr<uint8_t>() + size_t(y) * w * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

}  // namespace restyle::engine
