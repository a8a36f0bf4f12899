// A worker's model directory: manifest.json naming its source generators and
// the CLIP models that guide its jobs, every file safetensors (converted once
// with tools/convert_stylegan2.py and tools/convert_clip.py):
//
//   {
//     "generators": [
//       {"id": "ffhq-1024", "file": "stylegan2-ffhq-config-f.safetensors",
//        "source_text": "photo", "description": "FFHQ faces at 1024px"}
//     ],
//     "clip": [{"file": "ViT-B-32.safetensors", "weight": 1.0}]
//   }
//
// Files are relative to the directory. The service loads safetensors only: a
// TorchScript or pickled checkpoint (.pt, .pth, .pkl) is unpickled code and
// is refused with the converter to run.
//
// Thread-safety: plain values; ReadManifest is reentrant.
#ifndef RESTYLE_WORKER_MANIFEST_H_
#define RESTYLE_WORKER_MANIFEST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace restyle::worker {

struct SourceEntry {
  std::string id;           // generator id ("ffhq-1024"): letters, digits, '-', '_', '.'
  std::string path;         // absolute or relative to the working directory
  std::string source_text = "photo";
  std::string description;
};

struct ClipEntry {
  std::string path;
  double weight = 1.0;  // > 0
};

struct Manifest {
  std::vector<SourceEntry> generators;  // at least one
  std::vector<ClipEntry> clips;         // none: the worker only generates
};

// Reads <dir>/manifest.json. NOT_FOUND for a missing manifest or file,
// INVALID_ARGUMENT naming the entry for anything malformed (unknown keys
// included), FAILED_PRECONDITION for a file that is not safetensors.
absl::StatusOr<Manifest> ReadManifest(const std::string& dir);

// FAILED_PRECONDITION when `path` is a checkpoint format the service does
// not load (.pt, .pth, .ckpt, .pkl, .bin), naming `converter`.
absl::Status RequireSafetensors(const std::string& path, const std::string& converter);

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_MANIFEST_H_
