// Reading and writing the safetensors format, and strict state-dict loading.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}} with an optional
// "__metadata__" object of string values, then the raw little-endian data;
// offsets are relative to the end of the header.
//
// The reader is strict: a truncated file, a header that is not JSON or not of
// that shape, an unknown dtype, offsets that are out of range, overlap or
// leave holes, and a byte size that does not match the shape are each an
// Error(kDataLoss) naming the file and the tensor. It never reads out of
// bounds and never crashes on bad input.
//
// Thread-safety: all functions are reentrant; they share no state.
#ifndef RESTYLE_WORKER_ENGINE_IO_SAFETENSORS_H_
#define RESTYLE_WORKER_ENGINE_IO_SAFETENSORS_H_

#include <torch/types.h>

#include <map>
#include <string>
#include <string_view>

namespace torch::nn {
class Module;
}

namespace restyle::engine {

// Name -> tensor, ordered by name (the order safetensors files are written in).
using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;  // contiguous CPU tensors, owned (not views of a buffer)
  Metadata metadata;  // the "__metadata__" entries, if any
};

// Parses a whole safetensors file held in memory. `origin` names the source in
// error messages (usually the path).
SafetensorsContents ParseSafetensors(std::string_view bytes, const std::string& origin);

// Reads `path`. Error(kNotFound) if it cannot be opened, kDataLoss if corrupt.
SafetensorsContents ReadSafetensors(const std::string& path);

// Reads only the header of `path` (names, dtypes, shapes, metadata) without
// loading any tensor data; the returned tensors are undefined.
Metadata ReadSafetensorsMetadata(const std::string& path);

// Serialises tensors (any device; moved to CPU, made contiguous) and metadata.
// Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
std::string SerializeSafetensors(const TensorMap& tensors, const Metadata& metadata = {});

// Writes atomically: to "<path>.tmp.<pid>", then renames over `path`.
void WriteSafetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata = {});

struct LoadStateDictOptions {
  // Entries of `tensors` with no parameter or buffer of that name are
  // reported as errors unless listed here (exact names).
  std::vector<std::string> ignore_unexpected;
  // When false, parameters/buffers absent from `tensors` are errors; when
  // true they keep their current values.
  bool allow_missing = false;
};

// Copies `tensors` into the parameters and buffers of `module` by their
// registered (dotted) names, converting dtype to the module's. Collects every
// missing, unexpected and mis-shaped entry and throws one
// Error(kInvalidArgument) that lists them all (prefixed by `origin`).
void LoadStateDict(torch::nn::Module& module, const TensorMap& tensors, const std::string& origin,
                   const LoadStateDictOptions& options = {});

// The module's parameters and buffers by name, detached, as stored tensors.
TensorMap StateDict(const torch::nn::Module& module);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_IO_SAFETENSORS_H_
