#include "worker/engine/clip/checkpoint.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <fstream>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

bool IsBookkeeping(const std::string& name) {
  for (const auto& b : ClipBookkeepingEntries()) {
    if (name == b) return true;
  }
  return false;
}

}  // namespace

ClipModel LoadClipFromTensors(const TensorMap& tensors, const std::string& origin) {
  ClipConfig config;
  try {
    config = ClipConfig::InferFromTensors(tensors);
  } catch (const Error& e) {
    throw Error(e.code(), origin + ": " + e.what());
  }
  ClipModel model(config);
  LoadStateDictOptions options;
  options.ignore_unexpected = ClipBookkeepingEntries();
  LoadStateDict(*model, tensors, origin, options);
  model->Freeze();
  model->eval();
  return model;
}

TensorMap ReadClipTorchScript(const std::string& path) {
  if (!std::ifstream(path).good()) {
    Fail(ErrorCode::kNotFound, path + ": cannot open CLIP checkpoint");
  }
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    Fail(ErrorCode::kDataLoss,
         path + ": not a readable TorchScript archive: " + e.what_without_backtrace());
  }
  TensorMap tensors;
  auto take = [&](const std::string& name, const torch::Tensor& value) {
    if (IsBookkeeping(name)) return;
    tensors[name] = value.detach().to(torch::kFloat).contiguous();
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true)) take(p.name, p.value);
  for (const auto& b : module.named_buffers(/*recurse=*/true)) take(b.name, b.value);
  return tensors;
}

ClipModel LoadClip(const std::string& path) {
  char magic[9] = {0};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) Fail(ErrorCode::kNotFound, path + ": cannot open CLIP checkpoint");
    in.read(magic, sizeof(magic));
    if (in.gcount() < static_cast<std::streamsize>(sizeof(magic))) {
      Fail(ErrorCode::kDataLoss, path + ": too short to be a CLIP checkpoint");
    }
  }
  if (magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4) {
    return LoadClipFromTensors(ReadClipTorchScript(path), path);
  }
  if (magic[8] == '{') {  // 8-byte header length, then the JSON header
    SafetensorsContents contents = ReadSafetensors(path);
    for (auto& [name, t] : contents.tensors) t = t.to(torch::kFloat);
    return LoadClipFromTensors(contents.tensors, path);
  }
  Fail(ErrorCode::kUnimplemented,
       path + ": neither a TorchScript archive nor safetensors; convert it with "
              "tools/convert_clip.py");
}

}  // namespace restyle::engine
