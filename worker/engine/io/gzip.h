// A small, dependency-free gzip (RFC 1952) / DEFLATE (RFC 1951) decoder.
//
// The engine may depend on LibTorch and the C++ standard library only, so it
// cannot link zlib; this decoder is enough to read data files such as CLIP's
// bpe_simple_vocab_16e6.txt.gz. It handles stored, fixed-Huffman and
// dynamic-Huffman blocks, the optional gzip header fields (FEXTRA, FNAME,
// FCOMMENT, FHCRC) and concatenated members (as `gzip -d` does), and checks
// each member's CRC-32 and ISIZE. Every read is bounds-checked: corrupt or
// truncated input gives an Error(kDataLoss) naming `origin` and the byte
// offset, never undefined behaviour. Speed is modest (tens of MB/s); it is
// meant for small data files, not bulk streams.
//
// All functions are pure and thread-safe.
#ifndef RESTYLE_WORKER_ENGINE_IO_GZIP_H_
#define RESTYLE_WORKER_ENGINE_IO_GZIP_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace restyle::engine {

// Decompresses the gzip stream `data`. `origin` (a path or a description)
// appears in error messages. Throws Error(kDataLoss) on a bad magic number,
// an unsupported method, a malformed DEFLATE stream, truncation, trailing
// garbage, a CRC-32 or length mismatch, or output beyond `max_output` bytes.
std::string Gunzip(std::string_view data, const std::string& origin,
                   size_t max_output = size_t{1} << 30);

// Decompresses a raw DEFLATE stream (no gzip header or trailer). Stops at the
// final block; `*consumed` (if not null) receives the number of input bytes
// used, rounded up to whole bytes. Throws Error(kDataLoss) like Gunzip().
std::string Inflate(std::string_view data, const std::string& origin,
                    size_t* consumed = nullptr, size_t max_output = size_t{1} << 30);

// Reads the file at `path` and gunzips it. Throws Error(kNotFound) when it
// cannot be opened and Error(kDataLoss) as Gunzip().
std::string GunzipFile(const std::string& path);

// CRC-32 (ISO-HDLC, the gzip/zlib polynomial) of `data`, continuing `crc`.
uint32_t Crc32(std::string_view data, uint32_t crc = 0);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_IO_GZIP_H_
