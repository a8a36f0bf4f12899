#include "worker/engine/io/safetensors.h"

#include <torch/nn/module.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

static_assert(sizeof(void*) == 8, "64-bit hosts only");

// The header may not be larger than this (the format's own limit).
constexpr uint64_t kMaxHeaderBytes = 100u * 1024u * 1024u;

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* FindDtype(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

bool IsLittleEndianHost() {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

[[noreturn]] void Corrupt(const std::string& origin, const std::string& what) {
  Fail(ErrorCode::kDataLoss, "safetensors file " + origin + ": " + what);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// One header entry after validation.
struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

struct Header {
  std::vector<Entry> entries;
  Metadata metadata;
  uint64_t data_start;  // offset of the data section in the file
};

// Reads a non-negative JSON integer, rejecting floats, negatives and bools.
bool AsUint(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

// For a file whose first bytes are not a safetensors header: what those bytes
// say the file is, and what to do, as a sentence to append ("" when they say
// nothing, e.g. a safetensors file cut short).
std::string OtherFormatHint(std::string_view head) {
  const auto starts = [&](std::string_view magic) { return head.substr(0, magic.size()) == magic; };
  const std::string convert =
      "; official checkpoints are converted once with tools/convert_stylegan2.py or "
      "tools/convert_clip.py (docs/conversion.md)";
  if (starts("PK\x03\x04")) {
    return ". It is a zip archive, as PyTorch .pt/.pth checkpoints and TorchScript files are" +
           convert;
  }
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x80 && head[1] >= 2 &&
      head[1] <= 5) {
    return ". It is a Python pickle, as older PyTorch checkpoints are" + convert;
  }
  if (starts("\x1f\x8b")) return ". It is gzip-compressed: decompress it first";
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && first < 8 && (head[first] == '{' || head[first] == '[')) {
    return ". It is JSON text, not a safetensors file (a model's .json description? pass the "
           ".safetensors file)";
  }
  return "";
}

// Parses and validates the header. `file_size` is the size of the whole file.
Header ParseHeader(std::string_view prefix, uint64_t file_size, const std::string& origin) {
  if (file_size < 8) {
    Corrupt(origin, "truncated: " + std::to_string(file_size) +
                        " bytes, smaller than the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(prefix[i]);
  }
  if (header_len > kMaxHeaderBytes) {
    Corrupt(origin, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                        std::to_string(kMaxHeaderBytes) + " bytes" + OtherFormatHint(prefix));
  }
  if (header_len > file_size - 8) {
    Corrupt(origin, "truncated: header length " + std::to_string(header_len) + " but only " +
                        std::to_string(file_size - 8) + " bytes follow" +
                        OtherFormatHint(prefix));
  }
  if (prefix.size() < 8 + header_len) {
    Fail(ErrorCode::kInternal, "safetensors " + origin + ": header not fully read");
  }
  nlohmann::json json =
      nlohmann::json::parse(prefix.substr(8, header_len), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) Corrupt(origin, "header is not valid JSON" + OtherFormatHint(prefix));
  if (!json.is_object()) Corrupt(origin, "header is not a JSON object");

  Header header;
  header.data_start = 8 + header_len;
  const uint64_t data_size = file_size - header.data_start;

  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) Corrupt(origin, "__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          Corrupt(origin, "__metadata__ entry '" + m.key() + "' is not a string");
        }
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object()) Corrupt(origin, where + ": entry is not an object");
    auto dtype_it = value.find("dtype");
    auto shape_it = value.find("shape");
    auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      Corrupt(origin, where + ": missing or non-string 'dtype'");
    }
    if (shape_it == value.end() || !shape_it->is_array()) {
      Corrupt(origin, where + ": missing or non-array 'shape'");
    }
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      Corrupt(origin, where + ": 'data_offsets' must be [begin, end]");
    }
    Entry entry;
    entry.name = name;
    entry.dtype = FindDtype(dtype_it->get<std::string>());
    if (entry.dtype == nullptr) {
      Corrupt(origin, where + ": unknown dtype '" + dtype_it->get<std::string>() + "'");
    }
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : *shape_it) {
      uint64_t d = 0;
      if (!AsUint(dim, &d) || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Corrupt(origin, where + ": shape entries must be non-negative integers");
      }
      entry.shape.push_back(static_cast<int64_t>(d));
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) overflow = true;
      numel *= d;
    }
    if (!AsUint((*offsets_it)[0], &entry.begin) || !AsUint((*offsets_it)[1], &entry.end)) {
      Corrupt(origin, where + ": data_offsets must be non-negative integers");
    }
    if (entry.begin > entry.end) {
      Corrupt(origin, where + ": data_offsets begin " + std::to_string(entry.begin) +
                          " > end " + std::to_string(entry.end));
    }
    if (entry.end > data_size) {
      Corrupt(origin, where + ": data_offsets end " + std::to_string(entry.end) +
                          " is past the data section (" + std::to_string(data_size) +
                          " bytes; file truncated?)");
    }
    if (overflow || numel > std::numeric_limits<uint64_t>::max() / entry.dtype->size) {
      Corrupt(origin, where + ": shape " + ShapeString(entry.shape) + " is too large");
    }
    const uint64_t expected = numel * entry.dtype->size;
    if (expected != entry.end - entry.begin) {
      Corrupt(origin, where + ": shape " + ShapeString(entry.shape) + " of " +
                          entry.dtype->name + " needs " + std::to_string(expected) +
                          " bytes but data_offsets span " +
                          std::to_string(entry.end - entry.begin));
    }
    header.entries.push_back(std::move(entry));
  }

  // Offsets must tile the data section exactly: no overlap, no holes.
  std::vector<const Entry*> by_offset;
  for (const auto& e : header.entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < cursor) {
      Corrupt(origin, "tensor '" + e->name + "' overlaps tensor '" + previous->name + "'");
    }
    if (e->begin > cursor) {
      Corrupt(origin, "bytes [" + std::to_string(cursor) + ", " + std::to_string(e->begin) +
                          ") of the data section belong to no tensor (before '" + e->name + "')");
    }
    cursor = e->end;
    previous = e;
  }
  if (cursor != data_size) {
    Corrupt(origin, "data section has " + std::to_string(data_size - cursor) +
                        " trailing bytes that belong to no tensor");
  }
  return header;
}

torch::Tensor MakeTensor(const Entry& entry, const char* data) {
  torch::Tensor t = torch::empty(entry.shape, torch::TensorOptions().dtype(entry.dtype->type));
  if (entry.end > entry.begin) {
    std::memcpy(t.data_ptr(), data + entry.begin, entry.end - entry.begin);
  }
  return t;
}

std::string ReadFileOrThrow(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Fail(ErrorCode::kNotFound, "cannot open " + path + ": " + std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) Fail(ErrorCode::kDataLoss, "error reading " + path);
  return buffer.str();
}

void AppendLittleEndian64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

SafetensorsContents ParseSafetensors(std::string_view bytes, const std::string& origin) {
  if (!IsLittleEndianHost()) {
    Fail(ErrorCode::kUnimplemented, "safetensors: big-endian hosts are not supported");
  }
  Header header = ParseHeader(bytes, bytes.size(), origin);
  SafetensorsContents contents;
  contents.metadata = std::move(header.metadata);
  const char* data = bytes.data() + header.data_start;
  for (const auto& entry : header.entries) {
    contents.tensors.emplace(entry.name, MakeTensor(entry, data));
  }
  return contents;
}

SafetensorsContents ReadSafetensors(const std::string& path) {
  const std::string bytes = ReadFileOrThrow(path);
  return ParseSafetensors(bytes, path);
}

Metadata ReadSafetensorsMetadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) Fail(ErrorCode::kNotFound, "cannot open " + path + ": " + std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  std::string prefix(std::min<uint64_t>(file_size, 8), '\0');
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  if (file_size >= 8) {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(prefix[i]);
    if (header_len <= kMaxHeaderBytes && header_len <= file_size - 8) {
      prefix.resize(8 + header_len);
      in.read(prefix.data() + 8, static_cast<std::streamsize>(header_len));
    }
  }
  return ParseHeader(prefix, file_size, path).metadata;
}

std::string SerializeSafetensors(const TensorMap& tensors, const Metadata& metadata) {
  if (!IsLittleEndianHost()) {
    Fail(ErrorCode::kUnimplemented, "safetensors: big-endian hosts are not supported");
  }
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<torch::Tensor> cpu;
  cpu.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    CheckArgument(tensor.defined(), "safetensors: tensor '" + name + "' is undefined");
    const DtypeInfo* dtype = FindDtype(tensor.scalar_type());
    CheckArgument(dtype != nullptr, "safetensors: tensor '" + name + "' has unsupported dtype " +
                                        std::string(c10::toString(tensor.scalar_type())));
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype->size;
    header[name] = {{"dtype", dtype->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(std::move(t));
  }
  std::string json = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  while (json.size() % 8 != 0) json.push_back(' ');
  std::string out;
  out.reserve(8 + json.size() + offset);
  AppendLittleEndian64(&out, json.size());
  out += json;
  for (const auto& t : cpu) {
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return out;
}

void WriteSafetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata) {
  const std::string bytes = SerializeSafetensors(tensors, metadata);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      Fail(ErrorCode::kFailedPrecondition,
           "cannot write " + tmp + ": " + std::strerror(errno));
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      Fail(ErrorCode::kFailedPrecondition, "error writing " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    Fail(ErrorCode::kFailedPrecondition, "cannot rename " + tmp + " to " + path + ": " + reason);
  }
}

void LoadStateDict(torch::nn::Module& module, const TensorMap& tensors, const std::string& origin,
                   const LoadStateDictOptions& options) {
  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  auto load_one = [&](const std::string& name, torch::Tensor& target) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (!options.allow_missing) missing.push_back(name);
      return;
    }
    used.insert(name);
    const torch::Tensor& source = it->second;
    if (source.sizes() != target.sizes()) {
      mismatched.push_back(name + " (file " + ShapeString(source.sizes().vec()) + ", model " +
                           ShapeString(target.sizes().vec()) + ")");
      return;
    }
    target.copy_(source);
  };
  for (auto& item : module.named_parameters(/*recurse=*/true)) load_one(item.key(), item.value());
  for (auto& item : module.named_buffers(/*recurse=*/true)) load_one(item.key(), item.value());

  std::vector<std::string> unexpected;
  for (const auto& [name, tensor] : tensors) {
    if (used.count(name)) continue;
    if (std::find(options.ignore_unexpected.begin(), options.ignore_unexpected.end(), name) !=
        options.ignore_unexpected.end()) {
      continue;
    }
    unexpected.push_back(name);
  }
  if (missing.empty() && unexpected.empty() && mismatched.empty()) return;

  std::ostringstream msg;
  msg << origin << ": weights do not match the model (" << missing.size() << " missing, "
      << unexpected.size() << " unexpected, " << mismatched.size() << " mis-shaped)";
  auto list = [&msg](const char* label, const std::vector<std::string>& names) {
    if (names.empty()) return;
    msg << "; " << label << ": ";
    for (size_t i = 0; i < names.size(); ++i) msg << (i ? ", " : "") << names[i];
  };
  list("missing", missing);
  list("unexpected", unexpected);
  list("mis-shaped", mismatched);
  Fail(ErrorCode::kInvalidArgument, msg.str());
}

TensorMap StateDict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    out.emplace(item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    out.emplace(item.key(), item.value().detach());
  }
  return out;
}

}  // namespace restyle::engine
