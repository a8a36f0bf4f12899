#include "worker/engine/clip/model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

constexpr int64_t kHeadWidth = 64;  // build_model: heads = width // 64
constexpr double kLayerNormEps = 1e-5;

torch::nn::LayerNorm MakeLayerNorm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(kLayerNormEps));
}

// at::linear, as Python's F.linear calls it: a contiguous 3-D input is folded
// into one addmm with the bias fused. (torch::nn::Linear::forward in the C++
// frontend does matmul + add for 3-D inputs, which rounds differently.)
torch::Tensor Linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return at::linear(x, layer->weight, layer->bias);
}

std::string ShapeString(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

const torch::Tensor& Need(const TensorMap& tensors, const std::string& name, int64_t dim) {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: missing tensor '" + name + "'");
  }
  if (it->second.dim() != dim) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: tensor '" + name + "' has shape " +
                                          ShapeString(it->second) + ", expected " +
                                          std::to_string(dim) + " dimensions");
  }
  return it->second;
}

// Number of consecutive resblocks "<prefix>N." (N = 0..count-1).
int64_t CountBlocks(const TensorMap& tensors, const std::string& prefix) {
  std::set<int64_t> indices;
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const size_t dot = rest.find('.');
    const std::string digits = rest.substr(0, dot);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
      Fail(ErrorCode::kInvalidArgument, "CLIP weights: bad resblock name '" + name + "'");
    }
    indices.insert(std::stoll(digits));
  }
  const auto count = static_cast<int64_t>(indices.size());
  if (count == 0) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: no tensors named '" + prefix + "N.*'");
  }
  if (*indices.rbegin() != count - 1) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: resblock indices under '" + prefix +
                                          "' are not 0.." + std::to_string(count - 1));
  }
  return count;
}

int64_t HeadsFor(int64_t width, const std::string& what) {
  if (width <= 0 || width % kHeadWidth != 0) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: " + what + " width " +
                                          std::to_string(width) + " is not a multiple of 64");
  }
  return width / kHeadWidth;
}

void CheckFloatTensor(const torch::Tensor& t, const char* what) {
  CheckArgument(t.defined(), std::string(what) + " is undefined");
  CheckArgument(at::isFloatingType(t.scalar_type()),
                std::string(what) + " must be a floating-point tensor, got " +
                    std::string(c10::toString(t.scalar_type())));
}

// Validates (N, L) integer ids against the model and returns them as int64.
// Checked token ids as int64 on `device` (the model's).
torch::Tensor CheckTokens(const torch::Tensor& tokens, const ClipConfig& config,
                          const torch::Device& device) {
  CheckArgument(tokens.defined(), "tokens are undefined");
  CheckArgument(tokens.dim() == 2, "tokens must have shape (N, L), got " + ShapeString(tokens));
  CheckArgument(!at::isFloatingType(tokens.scalar_type()) && tokens.scalar_type() != at::kBool,
                "tokens must be an integer tensor, got " +
                    std::string(c10::toString(tokens.scalar_type())));
  CheckArgument(tokens.size(0) > 0 && tokens.size(1) > 0,
                "tokens must be non-empty, got " + ShapeString(tokens));
  CheckArgument(tokens.size(1) <= config.context_length,
                "tokens have " + std::to_string(tokens.size(1)) +
                    " positions, more than the context length " +
                    std::to_string(config.context_length));
  torch::Tensor ids = tokens.to(device, at::kLong);
  const int64_t lo = ids.min().item<int64_t>();
  const int64_t hi = ids.max().item<int64_t>();
  CheckArgument(lo >= 0 && hi < config.vocab_size,
                "token ids must be in [0, " + std::to_string(config.vocab_size) + "), got [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return ids;
}

}  // namespace

// ---------------------------------------------------------------------------
// ClipConfig

ClipConfig ClipConfig::InferFromTensors(const TensorMap& tensors) {
  if (tensors.count("visual.layer1.0.conv1.weight") || tensors.count("visual.attnpool.c_proj.weight")) {
    Fail(ErrorCode::kUnimplemented,
         "CLIP weights: this is a ResNet CLIP (visual.layer1 / visual.attnpool); only ViT "
         "models are supported");
  }
  if (!tensors.count("visual.proj")) {
    Fail(ErrorCode::kInvalidArgument,
         "CLIP weights: missing tensor 'visual.proj' (not an OpenAI CLIP ViT state dict)");
  }
  ClipConfig c;
  const torch::Tensor& conv1 = Need(tensors, "visual.conv1.weight", 4);
  c.vision_width = conv1.size(0);
  c.vision_patch_size = conv1.size(3);
  if (conv1.size(1) != 3 || conv1.size(2) != conv1.size(3)) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: visual.conv1.weight has shape " +
                                          ShapeString(conv1) + ", expected (W, 3, P, P)");
  }
  c.vision_layers = CountBlocks(tensors, "visual.transformer.resblocks.");
  const torch::Tensor& vpos = Need(tensors, "visual.positional_embedding", 2);
  const int64_t tokens = vpos.size(0) - 1;
  c.vision_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
  if (tokens <= 0 || c.vision_grid * c.vision_grid != tokens) {
    Fail(ErrorCode::kInvalidArgument, "CLIP weights: visual.positional_embedding has " +
                                          std::to_string(vpos.size(0)) +
                                          " rows, expected 1 + grid^2");
  }
  c.image_resolution = c.vision_patch_size * c.vision_grid;
  c.vision_heads = HeadsFor(c.vision_width, "vision");
  c.embed_dim = Need(tensors, "text_projection", 2).size(1);
  c.context_length = Need(tensors, "positional_embedding", 2).size(0);
  c.vocab_size = Need(tensors, "token_embedding.weight", 2).size(0);
  c.transformer_width = Need(tensors, "ln_final.weight", 1).size(0);
  c.transformer_heads = HeadsFor(c.transformer_width, "text");
  c.transformer_layers = CountBlocks(tensors, "transformer.resblocks.");
  return c;
}

ClipConfig ClipConfig::VitB32() { return ClipConfig{}; }

ClipConfig ClipConfig::VitB16() {
  ClipConfig c;
  c.vision_patch_size = 16;
  c.vision_grid = 14;
  return c;
}

ClipConfig ClipConfig::VitL14() {
  ClipConfig c;
  c.embed_dim = 768;
  c.vision_layers = 24;
  c.vision_width = 1024;
  c.vision_patch_size = 14;
  c.vision_grid = 16;
  c.vision_heads = 16;
  c.transformer_width = 768;
  c.transformer_heads = 12;
  c.transformer_layers = 12;
  return c;
}

std::string ClipConfig::DebugString() const {
  std::ostringstream out;
  out << "ViT width " << vision_width << " x " << vision_layers << " (" << vision_heads
      << " heads), patch " << vision_patch_size << ", res " << image_resolution << "; text "
      << transformer_width << " x " << transformer_layers << " (" << transformer_heads
      << " heads), context " << context_length << ", vocab " << vocab_size << "; embed "
      << embed_dim;
  return out.str();
}

bool ClipConfig::operator==(const ClipConfig& o) const {
  return embed_dim == o.embed_dim && image_resolution == o.image_resolution &&
         vision_layers == o.vision_layers && vision_width == o.vision_width &&
         vision_patch_size == o.vision_patch_size && vision_grid == o.vision_grid &&
         vision_heads == o.vision_heads && context_length == o.context_length &&
         vocab_size == o.vocab_size && transformer_width == o.transformer_width &&
         transformer_heads == o.transformer_heads && transformer_layers == o.transformer_layers;
}

// ---------------------------------------------------------------------------
// Building blocks

ClipAttentionImpl::ClipAttentionImpl(int64_t width, int64_t heads)
    : width_(width), heads_(heads) {
  in_proj_weight_ = register_parameter("in_proj_weight", torch::zeros({3 * width, width}));
  in_proj_bias_ = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj_ = register_module("out_proj", torch::nn::Linear(width, width));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  // torch 1.13 F.multi_head_attention_forward, self-attention, batch_first
  // false, need_weights false, no dropout; same ops in the same order.
  const int64_t length = x.size(0);
  const int64_t batch = x.size(1);
  const int64_t head_dim = width_ / heads_;
  const std::vector<torch::Tensor> qkv = at::linear(x, in_proj_weight_, in_proj_bias_).chunk(3, -1);
  auto split_heads = [&](const torch::Tensor& t) {
    return t.contiguous().view({length, batch * heads_, head_dim}).transpose(0, 1);
  };
  const torch::Tensor q = split_heads(qkv[0]) / std::sqrt(static_cast<double>(head_dim));
  const torch::Tensor k = split_heads(qkv[1]);
  const torch::Tensor v = split_heads(qkv[2]);
  torch::Tensor scores = mask.defined() ? at::baddbmm(mask.unsqueeze(0), q, k.transpose(-2, -1))
                                        : at::bmm(q, k.transpose(-2, -1));
  const torch::Tensor weights = at::softmax(scores, -1);
  const torch::Tensor out =
      at::bmm(weights, v).transpose(0, 1).contiguous().view({length * batch, width_});
  return Linear(out_proj_, out).view({length, batch, width_});
}

ClipMlpImpl::ClipMlpImpl(int64_t width) {
  c_fc_ = register_module("c_fc", torch::nn::Linear(width, 4 * width));
  c_proj_ = register_module("c_proj", torch::nn::Linear(4 * width, width));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = Linear(c_fc_, x);
  return Linear(c_proj_, h * at::sigmoid(h * 1.702));  // QuickGELU
}

ClipResidualBlockImpl::ClipResidualBlockImpl(int64_t width, int64_t heads) {
  // Registration order = OpenAI's state_dict order: attn, ln_1, mlp, ln_2.
  attn_ = register_module("attn", ClipAttention(width, heads));
  ln_1_ = register_module("ln_1", MakeLayerNorm(width));
  mlp_ = register_module("mlp", ClipMlp(width));
  ln_2_ = register_module("ln_2", MakeLayerNorm(width));
}

torch::Tensor ClipResidualBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor y = x + attn_->forward(ln_1_->forward(x), mask);
  return y + mlp_->forward(ln_2_->forward(y));
}

ClipTransformerImpl::ClipTransformerImpl(int64_t width, int64_t layers, int64_t heads) {
  resblocks_ = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    blocks_.push_back(ClipResidualBlock(width, heads));
    resblocks_->push_back(blocks_.back());
  }
}

torch::Tensor ClipTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask,
                                           std::vector<torch::Tensor>* block_outputs) {
  torch::Tensor h = x;
  for (auto& block : blocks_) {
    h = block->forward(h, mask);
    if (block_outputs != nullptr) block_outputs->push_back(h);
  }
  return h;
}

// ---------------------------------------------------------------------------
// Vision tower

ClipVisionImpl::ClipVisionImpl(const ClipConfig& c) {
  const int64_t w = c.vision_width;
  conv1_ = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, w, c.vision_patch_size)
                                     .stride(c.vision_patch_size)
                                     .bias(false)));
  class_embedding_ = register_parameter("class_embedding", torch::zeros({w}));
  positional_embedding_ = register_parameter(
      "positional_embedding", torch::zeros({c.vision_grid * c.vision_grid + 1, w}));
  ln_pre_ = register_module("ln_pre", MakeLayerNorm(w));
  transformer_ = register_module("transformer", ClipTransformer(w, c.vision_layers, c.vision_heads));
  ln_post_ = register_module("ln_post", MakeLayerNorm(w));
  proj_ = register_parameter("proj", torch::zeros({w, c.embed_dim}));
}

torch::Tensor ClipVisionImpl::forward(const torch::Tensor& images, ClipVisionTrace* trace) {
  torch::Tensor x = conv1_->forward(images);  // (N, W, grid, grid)
  if (trace != nullptr) trace->patch_embed = x;
  const int64_t n = x.size(0);
  x = x.reshape({n, x.size(1), -1}).permute({0, 2, 1});  // (N, grid^2, W)
  const torch::Tensor cls =
      class_embedding_ + at::zeros({n, 1, x.size(-1)}, x.options());
  x = at::cat({cls, x}, 1);
  x = x + positional_embedding_;
  x = ln_pre_->forward(x);
  if (trace != nullptr) trace->ln_pre_out = x;
  x = x.permute({1, 0, 2});  // NLD -> LND
  x = transformer_->forward(x, torch::Tensor(), trace ? &trace->block_out_lnd : nullptr);
  x = x.permute({1, 0, 2});  // LND -> NLD
  x = ln_post_->forward(x.select(1, 0));
  if (trace != nullptr) trace->ln_post_out = x;
  return at::matmul(x, proj_);
}

// ---------------------------------------------------------------------------
// Whole model

ClipModelImpl::ClipModelImpl(const ClipConfig& config) : config_(config) {
  const int64_t w = config.transformer_width;
  // Registration order = OpenAI's state_dict order.
  positional_embedding_ =
      register_parameter("positional_embedding", torch::zeros({config.context_length, w}));
  text_projection_ = register_parameter("text_projection", torch::zeros({w, config.embed_dim}));
  logit_scale_ = register_parameter("logit_scale", torch::full({}, std::log(1.0 / 0.07)));
  visual_ = register_module("visual", ClipVision(config));
  transformer_ =
      register_module("transformer", ClipTransformer(w, config.transformer_layers,
                                                     config.transformer_heads));
  token_embedding_ = register_module(
      "token_embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(config.vocab_size, w)));
  ln_final_ = register_module("ln_final", MakeLayerNorm(w));
  causal_mask_ = torch::full({config.context_length, config.context_length},
                             -std::numeric_limits<float>::infinity())
                     .triu_(1);
}

torch::Tensor ClipModelImpl::EncodeImage(const torch::Tensor& images, ClipVisionTrace* trace) {
  CheckFloatTensor(images, "images");
  const int64_t r = config_.image_resolution;
  CheckArgument(images.dim() == 4 && images.size(0) > 0 && images.size(1) == 3 &&
                    images.size(2) == r && images.size(3) == r,
                "images must have shape (N, 3, " + std::to_string(r) + ", " + std::to_string(r) +
                    ") for this CLIP model, got " + ShapeString(images) +
                    " (resize/crop with PreprocessForClip first)");
  return visual_->forward(images.to(positional_embedding_.scalar_type()), trace);
}

torch::Tensor ClipModelImpl::TokenEmbedding(const torch::Tensor& tokens) {
  return token_embedding_->forward(CheckTokens(tokens, config_, logit_scale_.device()));
}

torch::Tensor ClipModelImpl::EncodeText(const torch::Tensor& tokens,
                                        const ClipTextOptions& options, ClipTextTrace* trace) {
  const torch::Tensor ids = CheckTokens(tokens, config_, logit_scale_.device());
  const torch::Tensor eot = ids.argmax(-1);
  return RunText(token_embedding_->forward(ids), eot, options, trace);
}

torch::Tensor ClipModelImpl::EncodeTextEmbeddings(const torch::Tensor& embeddings,
                                                  const torch::Tensor& eot_index,
                                                  const ClipTextOptions& options,
                                                  ClipTextTrace* trace) {
  CheckFloatTensor(embeddings, "embeddings");
  CheckArgument(embeddings.dim() == 3 && embeddings.size(0) > 0 && embeddings.size(1) > 0 &&
                    embeddings.size(1) <= config_.context_length &&
                    embeddings.size(2) == config_.transformer_width,
                "embeddings must have shape (N, L <= " + std::to_string(config_.context_length) +
                    ", " + std::to_string(config_.transformer_width) + "), got " +
                    ShapeString(embeddings));
  CheckArgument(eot_index.defined() && eot_index.dim() == 1 &&
                    eot_index.size(0) == embeddings.size(0) &&
                    !at::isFloatingType(eot_index.scalar_type()),
                "eot_index must be an integer tensor of shape (" +
                    std::to_string(embeddings.size(0)) + "), got " +
                    (eot_index.defined() ? ShapeString(eot_index) : std::string("undefined")));
  const torch::Tensor eot = eot_index.to(embeddings.device(), at::kLong);
  const int64_t lo = eot.min().item<int64_t>();
  const int64_t hi = eot.max().item<int64_t>();
  CheckArgument(lo >= 0 && hi < embeddings.size(1),
                "eot_index values must be in [0, " + std::to_string(embeddings.size(1)) + ")");
  return RunText(embeddings.to(positional_embedding_.scalar_type()), eot, options, trace);
}

torch::Tensor ClipModelImpl::RunText(const torch::Tensor& embeddings, const torch::Tensor& eot,
                                     const ClipTextOptions& options, ClipTextTrace* trace) {
  int64_t length = embeddings.size(1);
  if (options.cut_after_eot) length = std::min(length, eot.max().item<int64_t>() + 1);
  torch::Tensor x = embeddings.slice(1, 0, length);
  x = x + positional_embedding_.slice(0, 0, length);
  x = x.permute({1, 0, 2});  // NLD -> LND
  const torch::Tensor mask =
      causal_mask_.slice(0, 0, length).slice(1, 0, length).to(x.options());
  x = transformer_->forward(x, mask, trace ? &trace->block_out_lnd : nullptr);
  x = x.permute({1, 0, 2});  // LND -> NLD
  x = ln_final_->forward(x);
  if (trace != nullptr) {
    trace->ln_final_out = x;
    trace->length = length;
  }
  const torch::Tensor rows = at::arange(x.size(0), eot.options());
  return at::matmul(x.index({rows, eot}), text_projection_);
}

ClipLogits ClipModelImpl::Logits(const torch::Tensor& images, const torch::Tensor& tokens) {
  torch::Tensor image_features = EncodeImage(images);
  torch::Tensor text_features = EncodeText(tokens);
  image_features = image_features / image_features.norm(2, {1}, true);
  text_features = text_features / text_features.norm(2, {1}, true);
  ClipLogits logits;
  logits.per_image = at::matmul(logit_scale_.exp() * image_features, text_features.t());
  logits.per_text = logits.per_image.t();
  return logits;
}

void ClipModelImpl::Freeze() {
  for (auto& p : parameters()) p.set_requires_grad(false);
}

}  // namespace restyle::engine
