// Loading CLIP weights: safetensors (what tools/convert_clip.py writes) and
// OpenAI's released .pt files (TorchScript archives holding fp16 weights).
//
// Every path ends in a strict name-by-name LoadStateDict: a missing,
// unexpected or mis-shaped tensor is reported (all of them, in one
// Error(kInvalidArgument)). The configuration is inferred from the shapes
// (ClipConfig::InferFromTensors), weights are converted to float32, and the
// three bookkeeping entries of the official archives (input_resolution,
// context_length, vocab_size) are dropped, as clip.model.build_model does.
//
// Thread-safety: the functions share no state; the returned model is owned by
// the caller (see model.h for its own contract).
#ifndef RESTYLE_WORKER_ENGINE_CLIP_CHECKPOINT_H_
#define RESTYLE_WORKER_ENGINE_CLIP_CHECKPOINT_H_

#include <string>

#include "worker/engine/clip/model.h"
#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

// Entries of official archives that are not parameters (build_model drops them).
inline const std::vector<std::string>& ClipBookkeepingEntries() {
  static const std::vector<std::string> kNames = {"input_resolution", "context_length",
                                                  "vocab_size"};
  return kNames;
}

// Infers the configuration, builds the model and loads `tensors` strictly
// (bookkeeping entries ignored). `origin` names the source in errors. The
// model is frozen (ClipModelImpl::Freeze) and in eval mode.
ClipModel LoadClipFromTensors(const TensorMap& tensors, const std::string& origin);

// Parameters and buffers of a TorchScript archive (OpenAI's ViT-*.pt) by
// name, converted to float32, bookkeeping entries removed. Error(kNotFound)
// if the file does not exist, kDataLoss if it is not a readable archive.
TensorMap ReadClipTorchScript(const std::string& path);

// Loads a CLIP checkpoint, choosing the reader from the file content: a zip
// archive (TorchScript .pt) or safetensors. Other files (e.g. a pickled
// state dict): Error(kUnimplemented) suggesting tools/convert_clip.py.
ClipModel LoadClip(const std::string& path);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_CLIP_CHECKPOINT_H_
