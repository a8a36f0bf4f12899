#include "worker/engine/clip/random_weights.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace restyle::engine {
namespace {

void AddBlocks(std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix,
               int64_t width, int64_t layers) {
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = prefix + std::to_string(i) + ".";
    shapes[p + "attn.in_proj_weight"] = {3 * width, width};
    shapes[p + "attn.in_proj_bias"] = {3 * width};
    shapes[p + "attn.out_proj.weight"] = {width, width};
    shapes[p + "attn.out_proj.bias"] = {width};
    shapes[p + "ln_1.weight"] = {width};
    shapes[p + "ln_1.bias"] = {width};
    shapes[p + "mlp.c_fc.weight"] = {4 * width, width};
    shapes[p + "mlp.c_fc.bias"] = {4 * width};
    shapes[p + "mlp.c_proj.weight"] = {width, 4 * width};
    shapes[p + "mlp.c_proj.bias"] = {width};
    shapes[p + "ln_2.weight"] = {width};
    shapes[p + "ln_2.bias"] = {width};
  }
}

bool IsLayerNormWeight(const std::string& name) {
  return name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 &&
         (name.find("ln_") != std::string::npos);
}

}  // namespace

std::map<std::string, std::vector<int64_t>> ClipTensorShapes(const ClipConfig& c) {
  std::map<std::string, std::vector<int64_t>> shapes;
  const int64_t vw = c.vision_width;
  shapes["visual.class_embedding"] = {vw};
  shapes["visual.positional_embedding"] = {c.vision_grid * c.vision_grid + 1, vw};
  shapes["visual.proj"] = {vw, c.embed_dim};
  shapes["visual.conv1.weight"] = {vw, 3, c.vision_patch_size, c.vision_patch_size};
  shapes["visual.ln_pre.weight"] = {vw};
  shapes["visual.ln_pre.bias"] = {vw};
  shapes["visual.ln_post.weight"] = {vw};
  shapes["visual.ln_post.bias"] = {vw};
  AddBlocks(shapes, "visual.transformer.resblocks.", vw, c.vision_layers);
  const int64_t tw = c.transformer_width;
  shapes["positional_embedding"] = {c.context_length, tw};
  shapes["text_projection"] = {tw, c.embed_dim};
  shapes["logit_scale"] = {};
  shapes["token_embedding.weight"] = {c.vocab_size, tw};
  shapes["ln_final.weight"] = {tw};
  shapes["ln_final.bias"] = {tw};
  AddBlocks(shapes, "transformer.resblocks.", tw, c.transformer_layers);
  return shapes;
}

TensorMap RandomClipWeights(const ClipConfig& config, uint64_t seed, double std) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  TensorMap tensors;
  for (const auto& [name, shape] : ClipTensorShapes(config)) {
    torch::Tensor t = at::empty(shape, at::kFloat);
    if (name == "logit_scale") {
      t.fill_(std::log(100.0));
    } else {
      t.normal_(0.0, std, gen);
      if (IsLayerNormWeight(name)) t.add_(1.0);
    }
    tensors[name] = t;
  }
  return tensors;
}

TensorMap PlaceholderClipWeights(const ClipConfig& config) {
  const torch::Tensor zero = at::zeros({}, at::kFloat);
  TensorMap tensors;
  for (const auto& [name, shape] : ClipTensorShapes(config)) tensors[name] = zero.expand(shape);
  return tensors;
}

}  // namespace restyle::engine
