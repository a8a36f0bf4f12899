#include "worker/engine/io/gzip.h"

#include <array>
#include <fstream>
#include <sstream>
#include <vector>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

constexpr int kMaxBits = 15;

[[noreturn]] void Corrupt(const std::string& origin, size_t offset, const std::string& what) {
  Fail(ErrorCode::kDataLoss, "gzip data in " + origin + " is corrupt at byte " +
                                 std::to_string(offset) + ": " + what);
}

// LSB-first bit reader over a byte range, bounds-checked.
class BitReader {
 public:
  BitReader(std::string_view data, const std::string& origin) : data_(data), origin_(origin) {}

  uint32_t Bits(int n) {
    while (count_ < n) {
      if (pos_ >= data_.size()) Corrupt(origin_, pos_, "unexpected end of DEFLATE stream");
      buffer_ |= static_cast<uint64_t>(static_cast<unsigned char>(data_[pos_++])) << count_;
      count_ += 8;
    }
    uint32_t v = static_cast<uint32_t>(buffer_ & ((uint64_t{1} << n) - 1));
    buffer_ >>= n;
    count_ -= n;
    return v;
  }
  // The next `n` (<= 24) bits without consuming them; zeros past the end.
  uint32_t Peek(int n) {
    while (count_ < n && pos_ < data_.size()) {
      buffer_ |= static_cast<uint64_t>(static_cast<unsigned char>(data_[pos_++])) << count_;
      count_ += 8;
    }
    return static_cast<uint32_t>(buffer_ & ((uint64_t{1} << n) - 1));
  }
  // Consumes `n` bits already returned by Peek().
  void Skip(int n) {
    if (n > count_) Corrupt(origin_, pos_, "unexpected end of DEFLATE stream");
    buffer_ >>= n;
    count_ -= n;
  }
  void AlignToByte() {
    buffer_ >>= (count_ % 8);
    count_ -= count_ % 8;
  }
  // Byte-aligned reads after AlignToByte(): drains buffered whole bytes first.
  uint8_t Byte() { return static_cast<uint8_t>(Bits(8)); }
  size_t BytePosition() const { return pos_ - count_ / 8; }
  const std::string& origin() const { return origin_; }

 private:
  std::string_view data_;
  const std::string& origin_;
  size_t pos_ = 0;
  uint64_t buffer_ = 0;
  int count_ = 0;
};

// Canonical Huffman decoding table (counts per length + symbols by code).
class Huffman {
 public:
  // Builds the code from code lengths. Returns false for an over-subscribed
  // set, and for an incomplete one unless `allow_incomplete` or it has a
  // single code (RFC 1951 allows one distance code of one bit).
  bool Build(const uint8_t* lengths, int n, bool allow_incomplete) {
    counts_.fill(0);
    for (int i = 0; i < n; ++i) counts_[lengths[i]]++;
    counts_[0] = 0;
    int left = 1;
    for (int len = 1; len <= kMaxBits; ++len) {
      left <<= 1;
      left -= counts_[len];
      if (left < 0) return false;
    }
    std::array<int, kMaxBits + 2> offs{};
    for (int len = 1; len <= kMaxBits; ++len) offs[len + 1] = offs[len] + counts_[len];
    symbols_.assign(n, 0);
    for (int i = 0; i < n; ++i) {
      if (lengths[i] != 0) symbols_[offs[lengths[i]]++] = static_cast<uint16_t>(i);
    }
    // Fast table: every code of at most kFastBits bits, indexed by the next
    // kFastBits input bits (LSB-first, so codes are bit-reversed).
    fast_.fill(0);
    std::array<int, kMaxBits + 2> next_code{};
    for (int len = 1, code = 0; len <= kMaxBits; ++len) {
      code = (code + counts_[len - 1]) << 1;  // RFC 1951 3.2.2 (counts_[0] == 0)
      next_code[len] = code;
    }
    for (int i = 0; i < n; ++i) {
      const int len = lengths[i];
      if (len == 0) continue;
      const int code = next_code[len]++;
      if (len > kFastBits) continue;
      int reversed = 0;
      for (int b = 0; b < len; ++b) reversed |= ((code >> b) & 1) << (len - 1 - b);
      for (int r = reversed; r < (1 << kFastBits); r += 1 << len) {
        fast_[r] = static_cast<uint16_t>(i << 4 | len);
      }
    }
    int used = 0;
    for (int len = 1; len <= kMaxBits; ++len) used += counts_[len];
    return left == 0 || allow_incomplete || used == 1;
  }

  int Decode(BitReader* in) const {
    const uint16_t entry = fast_[in->Peek(kFastBits)];
    if (entry != 0) {
      in->Skip(entry & 15);
      return entry >> 4;
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= kMaxBits; ++len) {
      code |= static_cast<int>(in->Bits(1));
      int count = counts_[len];
      if (code - count < first) return symbols_[index + (code - first)];
      index += count;
      first += count;
      first <<= 1;
      code <<= 1;
    }
    Corrupt(in->origin(), in->BytePosition(), "invalid Huffman code");
  }

 private:
  static constexpr int kFastBits = 9;
  std::array<int, kMaxBits + 1> counts_{};
  std::vector<uint16_t> symbols_;
  std::array<uint16_t, 1 << kFastBits> fast_{};
};

constexpr uint16_t kLengthBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLengthExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                    33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                    1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                    6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void InflateBlock(BitReader* in, const Huffman& lit, const Huffman& dist, std::string* out,
                  size_t max_output) {
  while (true) {
    int sym = lit.Decode(in);
    if (sym < 256) {
      if (out->size() >= max_output) Corrupt(in->origin(), in->BytePosition(), "output too large");
      out->push_back(static_cast<char>(sym));
    } else if (sym == 256) {
      return;
    } else {
      sym -= 257;
      if (sym >= 29) Corrupt(in->origin(), in->BytePosition(), "invalid length symbol");
      size_t len = kLengthBase[sym] + in->Bits(kLengthExtra[sym]);
      int dsym = dist.Decode(in);
      if (dsym >= 30) Corrupt(in->origin(), in->BytePosition(), "invalid distance symbol");
      size_t d = kDistBase[dsym] + in->Bits(kDistExtra[dsym]);
      if (d > out->size()) {
        Corrupt(in->origin(), in->BytePosition(), "distance " + std::to_string(d) +
                                                      " reaches before the start of the output");
      }
      if (out->size() + len > max_output) {
        Corrupt(in->origin(), in->BytePosition(), "output too large");
      }
      size_t from = out->size() - d;
      for (size_t i = 0; i < len; ++i) out->push_back((*out)[from + i]);
    }
  }
}

void InflateStored(BitReader* in, std::string* out, size_t max_output) {
  in->AlignToByte();
  uint32_t len = in->Bits(16);
  uint32_t nlen = in->Bits(16);
  if ((len ^ 0xFFFF) != nlen) Corrupt(in->origin(), in->BytePosition(), "stored block LEN/NLEN mismatch");
  if (out->size() + len > max_output) Corrupt(in->origin(), in->BytePosition(), "output too large");
  for (uint32_t i = 0; i < len; ++i) out->push_back(static_cast<char>(in->Byte()));
}

void BuildFixed(Huffman* lit, Huffman* dist) {
  uint8_t lengths[288];
  for (int i = 0; i < 144; ++i) lengths[i] = 8;
  for (int i = 144; i < 256; ++i) lengths[i] = 9;
  for (int i = 256; i < 280; ++i) lengths[i] = 7;
  for (int i = 280; i < 288; ++i) lengths[i] = 8;
  lit->Build(lengths, 288, false);
  uint8_t dl[30];
  for (uint8_t& l : dl) l = 5;
  dist->Build(dl, 30, true);
}

void BuildDynamic(BitReader* in, Huffman* lit, Huffman* dist) {
  static constexpr uint8_t kOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                         11, 4, 12, 3, 13, 2, 14, 1, 15};
  int hlit = static_cast<int>(in->Bits(5)) + 257;
  int hdist = static_cast<int>(in->Bits(5)) + 1;
  int hclen = static_cast<int>(in->Bits(4)) + 4;
  if (hlit > 286 || hdist > 30) Corrupt(in->origin(), in->BytePosition(), "too many length codes");
  uint8_t cl_lengths[19] = {0};
  for (int i = 0; i < hclen; ++i) cl_lengths[kOrder[i]] = static_cast<uint8_t>(in->Bits(3));
  Huffman cl;
  if (!cl.Build(cl_lengths, 19, false)) {
    Corrupt(in->origin(), in->BytePosition(), "invalid code-length code");
  }
  uint8_t lengths[286 + 30] = {0};
  int n = 0;
  while (n < hlit + hdist) {
    int sym = cl.Decode(in);
    if (sym < 16) {
      lengths[n++] = static_cast<uint8_t>(sym);
      continue;
    }
    uint8_t value = 0;
    int repeat;
    if (sym == 16) {
      if (n == 0) Corrupt(in->origin(), in->BytePosition(), "repeat with no previous length");
      value = lengths[n - 1];
      repeat = 3 + static_cast<int>(in->Bits(2));
    } else if (sym == 17) {
      repeat = 3 + static_cast<int>(in->Bits(3));
    } else {
      repeat = 11 + static_cast<int>(in->Bits(7));
    }
    if (n + repeat > hlit + hdist) Corrupt(in->origin(), in->BytePosition(), "too many code lengths");
    while (repeat-- > 0) lengths[n++] = value;
  }
  if (lengths[256] == 0) Corrupt(in->origin(), in->BytePosition(), "no end-of-block code");
  if (!lit->Build(lengths, hlit, false)) {
    Corrupt(in->origin(), in->BytePosition(), "invalid literal/length code");
  }
  // A block of literals only may have no distance codes at all.
  bool no_distances = true;
  for (int i = 0; i < hdist; ++i) no_distances &= lengths[hlit + i] == 0;
  if (!dist->Build(lengths + hlit, hdist, no_distances)) {
    Corrupt(in->origin(), in->BytePosition(), "invalid distance code");
  }
}

uint32_t ReadLe32(std::string_view d, size_t pos) {
  return static_cast<uint32_t>(static_cast<unsigned char>(d[pos])) |
         static_cast<uint32_t>(static_cast<unsigned char>(d[pos + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(d[pos + 2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(d[pos + 3])) << 24;
}

}  // namespace

uint32_t Crc32(std::string_view data, uint32_t crc) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (char ch : data) crc = kTable[(crc ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string Inflate(std::string_view data, const std::string& origin, size_t* consumed,
                    size_t max_output) {
  BitReader in(data, origin);
  std::string out;
  bool last = false;
  while (!last) {
    last = in.Bits(1) != 0;
    uint32_t type = in.Bits(2);
    if (type == 0) {
      InflateStored(&in, &out, max_output);
    } else if (type == 1) {
      Huffman lit, dist;
      BuildFixed(&lit, &dist);
      InflateBlock(&in, lit, dist, &out, max_output);
    } else if (type == 2) {
      Huffman lit, dist;
      BuildDynamic(&in, &lit, &dist);
      InflateBlock(&in, lit, dist, &out, max_output);
    } else {
      Corrupt(origin, in.BytePosition(), "invalid block type 3");
    }
  }
  in.AlignToByte();
  if (consumed != nullptr) *consumed = in.BytePosition();
  return out;
}

std::string Gunzip(std::string_view data, const std::string& origin, size_t max_output) {
  std::string out;
  size_t pos = 0;
  do {
    const size_t start = pos;
    auto need = [&](size_t n, const char* what) {
      if (data.size() - pos < n) Corrupt(origin, pos, std::string("truncated ") + what);
    };
    need(10, "gzip header");
    if (static_cast<unsigned char>(data[pos]) != 0x1F ||
        static_cast<unsigned char>(data[pos + 1]) != 0x8B) {
      if (start > 0) Corrupt(origin, pos, "trailing garbage after gzip member");
      Fail(ErrorCode::kDataLoss, origin + " is not a gzip file (bad magic number)");
    }
    if (data[pos + 2] != 8) Corrupt(origin, pos + 2, "unsupported compression method");
    const uint8_t flags = static_cast<uint8_t>(data[pos + 3]);
    if (flags & 0xE0) Corrupt(origin, pos + 3, "reserved header flags set");
    pos += 10;
    if (flags & 0x04) {  // FEXTRA
      need(2, "FEXTRA length");
      size_t xlen = static_cast<unsigned char>(data[pos]) |
                    static_cast<size_t>(static_cast<unsigned char>(data[pos + 1])) << 8;
      pos += 2;
      need(xlen, "FEXTRA field");
      pos += xlen;
    }
    for (uint8_t f : {uint8_t{0x08}, uint8_t{0x10}}) {  // FNAME, FCOMMENT
      if (flags & f) {
        size_t z = data.find('\0', pos);
        if (z == std::string_view::npos) Corrupt(origin, pos, "unterminated header string");
        pos = z + 1;
      }
    }
    if (flags & 0x02) {  // FHCRC
      need(2, "header CRC");
      uint32_t want = static_cast<unsigned char>(data[pos]) |
                      static_cast<uint32_t>(static_cast<unsigned char>(data[pos + 1])) << 8;
      if ((Crc32(data.substr(start, pos - start)) & 0xFFFF) != want) {
        Corrupt(origin, pos, "header CRC mismatch");
      }
      pos += 2;
    }
    size_t used = 0;
    std::string member = Inflate(data.substr(pos), origin + " (member at byte " +
                                                       std::to_string(start) + ")",
                                 &used, max_output - out.size());
    pos += used;
    need(8, "gzip trailer");
    const uint32_t crc = ReadLe32(data, pos);
    const uint32_t isize = ReadLe32(data, pos + 4);
    if (Crc32(member) != crc) Corrupt(origin, pos, "CRC-32 mismatch");
    if (static_cast<uint32_t>(member.size()) != isize) Corrupt(origin, pos + 4, "length (ISIZE) mismatch");
    pos += 8;
    out += member;
  } while (pos < data.size());
  return out;
}

std::string GunzipFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(ErrorCode::kNotFound, "cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) Fail(ErrorCode::kDataLoss, "error reading " + path);
  return Gunzip(ss.str(), path);
}

}  // namespace restyle::engine
