// CLIP (OpenAI ViT architecture) as LibTorch modules.
//
// The modules mirror openai/CLIP clip/model.py: every registered parameter has
// the name of the OpenAI state_dict entry it holds ("visual.conv1.weight",
// "transformer.resblocks.3.attn.in_proj_weight", "logit_scale", ...), so a
// checkpoint loads with a strict name-by-name LoadStateDict (see
// checkpoint.h). The architecture is inferred from tensor shapes the way
// clip.model.build_model does it (ClipConfig::InferFromTensors), so ViT-B/32,
// ViT-B/16, ViT-L/14 and the tiny golden model load by the same code.
//
// Numerics: float32 on CPU reproduces `clip.load(name, device="cpu")` exactly.
// Attention is computed with the same ATen calls, in the same order and the
// same (sequence, batch, width) layout as torch 1.13's
// F.multi_head_attention_forward: packed in_proj linear, q / sqrt(head_dim),
// baddbmm with the causal float mask (text) or bmm (vision), softmax, bmm,
// out_proj linear. LayerNorm eps 1e-5, QuickGELU x * sigmoid(1.702 x).
// Linear layers call at::linear like Python's F.linear (bias fused into the
// GEMM), not torch::nn::Linear::forward (matmul + add for 3-D inputs).
//
// Text: features are read at the first position of the largest token id (the
// EOT token 49407). The text mask is causal, so rows up to the EOT never see
// what follows; by default the transformer therefore runs only on the first
// max(eot)+1 positions of the batch (exactly the same features, far cheaper
// than 77 positions).
//
// Thread-safety: a loaded model may be used for forward passes (Encode*,
// Logits) from several threads at once as long as nobody mutates its
// parameters at the same time (loading, Freeze(), optimizer steps). Grad mode
// / inference mode are thread-local and are the caller's choice.
#ifndef RESTYLE_WORKER_ENGINE_CLIP_MODEL_H_
#define RESTYLE_WORKER_ENGINE_CLIP_MODEL_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

// The architecture of a CLIP ViT model. Values are those of
// clip.model.build_model; the tiny golden model is
// {embed 64, res 64, vision 2 layers x 128 wide, patch 16, text 2 x 128}.
struct ClipConfig {
  int64_t embed_dim = 512;           // joint embedding size (text_projection cols)
  int64_t image_resolution = 224;    // = vision_patch_size * vision_grid
  int64_t vision_layers = 12;        // visual.transformer.resblocks count
  int64_t vision_width = 768;        // visual.conv1 output channels
  int64_t vision_patch_size = 32;    // visual.conv1 kernel size = stride
  int64_t vision_grid = 7;           // patches per side
  int64_t vision_heads = 12;         // vision_width / 64
  int64_t context_length = 77;       // text positions
  int64_t vocab_size = 49408;        // token_embedding rows
  int64_t transformer_width = 512;   // text width
  int64_t transformer_heads = 8;     // transformer_width / 64
  int64_t transformer_layers = 12;   // transformer.resblocks count

  // Infers the configuration from OpenAI state_dict tensors (only names and
  // shapes are read). Throws Error(kUnimplemented) for ResNet CLIP variants
  // (no "visual.proj" / "visual.conv1.weight" of a ViT) and
  // Error(kInvalidArgument) naming the missing or inconsistent tensor
  // otherwise (missing entries, non-square grid, widths not divisible by 64,
  // resblock indices with gaps).
  static ClipConfig InferFromTensors(const TensorMap& tensors);

  // Shapes of the official checkpoints (weights not included).
  static ClipConfig VitB32();
  static ClipConfig VitB16();
  static ClipConfig VitL14();

  // "ViT width 768 x 12, patch 32, res 224; text 512 x 12; embed 512".
  std::string DebugString() const;

  bool operator==(const ClipConfig& other) const;
};

// nn.MultiheadAttention's parameters (in_proj_weight (3W,W), in_proj_bias
// (3W), out_proj.{weight,bias}) and torch 1.13's self-attention forward.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t width, int64_t heads);
  // x: (L, N, W). mask: undefined, or an (L, L) float mask added to the
  // scaled scores (-inf where attention is forbidden). Returns (L, N, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

 private:
  int64_t width_;
  int64_t heads_;
  torch::Tensor in_proj_weight_;
  torch::Tensor in_proj_bias_;
  torch::nn::Linear out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

// CLIP's MLP: c_fc (W -> 4W), QuickGELU, c_proj (4W -> W).
class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear c_fc_{nullptr};
  torch::nn::Linear c_proj_{nullptr};
};
TORCH_MODULE(ClipMlp);

// ResidualAttentionBlock: x + attn(ln_1(x)), then + mlp(ln_2(x)).
class ClipResidualBlockImpl : public torch::nn::Module {
 public:
  ClipResidualBlockImpl(int64_t width, int64_t heads);
  // x: (L, N, W); mask as in ClipAttentionImpl::forward.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

 private:
  torch::nn::LayerNorm ln_1_{nullptr};
  ClipAttention attn_{nullptr};
  torch::nn::LayerNorm ln_2_{nullptr};
  ClipMlp mlp_{nullptr};
};
TORCH_MODULE(ClipResidualBlock);

// A stack of residual blocks ("resblocks.N").
class ClipTransformerImpl : public torch::nn::Module {
 public:
  ClipTransformerImpl(int64_t width, int64_t layers, int64_t heads);
  // x: (L, N, W). When `block_outputs` is given, each block's output (L,N,W)
  // is appended to it.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask,
                        std::vector<torch::Tensor>* block_outputs = nullptr);
  int64_t layers() const { return static_cast<int64_t>(blocks_.size()); }

 private:
  torch::nn::ModuleList resblocks_{nullptr};
  std::vector<ClipResidualBlock> blocks_;
};
TORCH_MODULE(ClipTransformer);

// Intermediate tensors of one EncodeImage call (for tests and debugging).
struct ClipVisionTrace {
  torch::Tensor patch_embed;                 // conv1 output (N, W, grid, grid)
  torch::Tensor ln_pre_out;                  // (N, 1 + grid^2, W)
  std::vector<torch::Tensor> block_out_lnd;  // per block (1 + grid^2, N, W)
  torch::Tensor ln_post_out;                 // (N, W), before @ proj
};

// The ViT image tower ("visual.*").
class ClipVisionImpl : public torch::nn::Module {
 public:
  explicit ClipVisionImpl(const ClipConfig& config);
  // images: (N, 3, R, R) float, already normalised. Returns (N, embed_dim).
  torch::Tensor forward(const torch::Tensor& images, ClipVisionTrace* trace = nullptr);

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::Tensor class_embedding_;
  torch::Tensor positional_embedding_;
  torch::nn::LayerNorm ln_pre_{nullptr};
  ClipTransformer transformer_{nullptr};
  torch::nn::LayerNorm ln_post_{nullptr};
  torch::Tensor proj_;
};
TORCH_MODULE(ClipVision);

// Intermediate tensors of one text encoding.
struct ClipTextTrace {
  std::vector<torch::Tensor> block_out_lnd;  // per block (L, N, W)
  torch::Tensor ln_final_out;                // (N, L, W)
  int64_t length = 0;                        // L: positions actually run
};

struct ClipTextOptions {
  // Run the text transformer only on positions [0, max(eot_index) + 1) of the
  // batch. Exact (causal mask); false runs all context_length positions.
  bool cut_after_eot = true;
};

struct ClipLogits {
  torch::Tensor per_image;  // (N_images, N_texts) = exp(logit_scale) * I T^T
  torch::Tensor per_text;   // (N_texts, N_images), the transpose
};

// The whole CLIP model; parameters named exactly as OpenAI's state_dict.
// Construct with a ClipConfig (parameters uninitialised-random), then load
// weights with LoadClipWeights / LoadClip (checkpoint.h).
class ClipModelImpl : public torch::nn::Module {
 public:
  explicit ClipModelImpl(const ClipConfig& config);

  // images: (N, 3, R, R) float32, R = image_resolution, already normalised
  // (see preprocess.h). Returns image features (N, embed_dim), not normalised.
  // Error(kInvalidArgument) on wrong rank, channels, size or dtype.
  torch::Tensor EncodeImage(const torch::Tensor& images, ClipVisionTrace* trace = nullptr);

  // tokens: (N, L) integer token ids, L <= context_length (usually 77, as
  // clip.tokenize gives). Features are read at argmax(tokens) per row.
  // Returns (N, embed_dim), not normalised. Error(kInvalidArgument) on wrong
  // rank/dtype/length or ids outside the vocabulary.
  torch::Tensor EncodeText(const torch::Tensor& tokens, const ClipTextOptions& options = {},
                           ClipTextTrace* trace = nullptr);

  // token_embedding(tokens): (N, L) ids -> (N, L, transformer_width).
  torch::Tensor TokenEmbedding(const torch::Tensor& tokens);

  // The IPL prompt path: embeddings (N, L, width) (token embeddings with
  // some context rows replaced, e.g. by a mapper's output) + positional
  // embedding, causal transformer, ln_final, row eot_index[i] of sample i,
  // @ text_projection -> (N, embed_dim), not normalised. eot_index: (N)
  // integer, each in [0, L). Gradients flow to `embeddings`. With
  // cut_after_eot only positions up to max(eot_index) are run.
  torch::Tensor EncodeTextEmbeddings(const torch::Tensor& embeddings,
                                     const torch::Tensor& eot_index,
                                     const ClipTextOptions& options = {},
                                     ClipTextTrace* trace = nullptr);

  // CLIP.forward: L2-normalised features, exp(logit_scale) * I T^T.
  ClipLogits Logits(const torch::Tensor& images, const torch::Tensor& tokens);

  // The learned log temperature (0-dim parameter); exp() of it scales logits.
  torch::Tensor logit_scale() const { return logit_scale_; }
  const ClipConfig& config() const { return config_; }

  // requires_grad(false) on every parameter (CLIP is never trained here).
  // Gradients still flow through the model to images and embeddings.
  void Freeze();

 private:
  torch::Tensor RunText(const torch::Tensor& x, const torch::Tensor& eot_index,
                        const ClipTextOptions& options, ClipTextTrace* trace);

  ClipConfig config_;
  ClipVision visual_{nullptr};
  torch::nn::Embedding token_embedding_{nullptr};
  torch::Tensor positional_embedding_;
  ClipTransformer transformer_{nullptr};
  torch::nn::LayerNorm ln_final_{nullptr};
  torch::Tensor text_projection_;
  torch::Tensor logit_scale_;
  torch::Tensor causal_mask_;  // (context_length, context_length), not a buffer
};
TORCH_MODULE(ClipModel);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_CLIP_MODEL_H_
