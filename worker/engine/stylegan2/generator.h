// The StyleGAN2 generator (rosinality stylegan2-pytorch `Generator`) in
// LibTorch, with the original parameter and buffer names:
//   style.{1..n_mlp}.{weight,bias}            mapping (index 0 is PixelNorm)
//   input.input                               4x4 constant
//   conv1.*, to_rgb1.*                        first StyledConv / ToRGB (4x4)
//   convs.{2k,2k+1}.*, to_rgbs.k.*            per resolution 8..size
//   convs.{2k}.conv.blur.kernel, to_rgbs.k.upsample.kernel   (buffers)
//   noises.noise_{0..num_layers-1}            stored noise (buffers, (1,1,r,r))
// The configuration is inferred from tensor shapes, so the 1024/512/256
// official generators and tiny test models load by the same code.
//
// Thread-safety: Generate/Mapping/MeanLatent do not mutate the module and may
// run concurrently; loading, cloning and parameter updates need exclusive use.
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_GENERATOR_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_GENERATOR_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/io/safetensors.h"
#include "worker/engine/stylegan2/layers.h"

namespace restyle::engine {

struct Sg2Config {
  int64_t size = 1024;       // output resolution, a power of two >= 4
  int64_t style_dim = 512;   // z / w width
  int64_t n_mlp = 8;         // equalised linears in the mapping network
  double lr_mlp = 0.01;      // mapping lr_mul
  // channels[i] = feature channels at resolution 4 << i (i = 0 .. log2(size)-2).
  std::vector<int64_t> channels;
  std::vector<double> blur_kernel = {1, 3, 3, 1};  // only used to build new models

  int64_t log_size() const;
  int64_t n_latent() const { return 2 * log_size() - 2; }
  int64_t num_noise_layers() const { return 2 * (log_size() - 2) + 1; }
  int64_t num_convs() const { return 2 * (log_size() - 2); }
  // Throws Error(kInvalidArgument) when inconsistent.
  void Validate() const;
  // "size=256 style_dim=512 n_mlp=8 channels=512,512,..."
  std::string ToString() const;

  // The rosinality channel table: 512 up to 32x32, then 256*cm, 128*cm,
  // 64*cm, 32*cm, 16*cm for 64..1024 (cm = 2 is config-f).
  static Sg2Config Official(int64_t size, int64_t style_dim = 512, int64_t n_mlp = 8,
                            int64_t channel_multiplier = 2);
  // Infers every field from the tensors' names and shapes. Throws
  // Error(kInvalidArgument) naming what is missing or inconsistent.
  static Sg2Config FromTensors(const TensorMap& tensors, const std::string& origin);
};

struct SynthesisOptions {
  // True: the style inputs are w (N,style_dim) or W+ (N,n_latent,style_dim);
  // false: they are z (N,style_dim) and go through the mapping network first.
  bool input_is_latent = true;
  // < 1: every style s becomes truncation_latent + truncation*(s - truncation_latent)
  // (applied to w before broadcasting to n_latent rows, like the reference).
  double truncation = 1.0;
  torch::Tensor truncation_latent;  // (1,style_dim) or (style_dim); required when truncation < 1
  // With two styles: rows [0,inject_index) from the first, the rest from the
  // second. -1 draws it uniformly from [1, n_latent-1] (using `rng` when set).
  int64_t inject_index = -1;
  NoiseMode noise = NoiseMode::kRandom;
  // kGiven: num_noise_layers tensors (N or 1, 1, r, r), index i as noises.noise_i.
  std::vector<torch::Tensor> noise_tensors;
  // Random source for kRandom noise and a random inject_index; global when unset.
  c10::optional<at::Generator> rng;
  ConvMode conv = ConvMode::kAuto;
  // Activations in channels-last (NHWC) memory order (the fused formulations
  // only; ignored by kReference). The same function, summed in another order; cuDNN's
  // tensor-core convolutions read NHWC without transposing it. The image is
  // returned contiguous (NCHW) either way.
  bool channels_last = false;
  // Record per-layer outputs in SynthesisResult::layers ("out_conv1",
  // "out_convs.N" after noise+bias+lrelu, "skip_to_rgb1", "skip_to_rgbs.N").
  bool record_layers = false;
  // Called after each resolution block with its output resolution: 4 (the
  // constant, conv1, to_rgb1), then 8, 16, ..., size (two convs and a ToRGB
  // each). For per-block timing in benchmarks; empty: not called.
  std::function<void(int64_t resolution)> after_block;
};

struct SynthesisResult {
  torch::Tensor image;   // (N,3,size,size), roughly in [-1,1]
  torch::Tensor latent;  // the W+ latent used (N,n_latent,style_dim)
  TensorMap layers;      // only with record_layers
};

class GeneratorImpl : public torch::nn::Module {
 public:
  // New generator. With `initialize`, the reference's initialisation drawn
  // from the global torch RNG; otherwise parameters are uninitialised (to be
  // loaded or reset).
  explicit GeneratorImpl(const Sg2Config& config, bool initialize = true);

  // The reference initialisation drawn from `rng`: weights and the constant
  // N(0,1) (mapping weights / lr_mlp), biases 0, modulation biases 1, noise
  // weights 0, noise buffers N(0,1).
  void ResetParameters(at::Generator& rng);

  const Sg2Config& config() const { return config_; }

  // w = mapping(z): PixelNorm + n_mlp EqualLinears. z (N,style_dim).
  torch::Tensor Mapping(const torch::Tensor& z);

  // The reference's forward(styles, ...): one or two styles (z, w or W+).
  SynthesisResult Generate(const std::vector<torch::Tensor>& styles,
                           const SynthesisOptions& options = {});
  // Synthesis from a full W+ latent (N,n_latent,style_dim); truncation and
  // mixing options are ignored.
  SynthesisResult Synthesize(const torch::Tensor& wplus, const SynthesisOptions& options = {});

  // mean over n samples of Mapping(z), z ~ N(0,1) drawn with `rng` (global
  // when unset). Returns (1,style_dim). Runs without gradients.
  torch::Tensor MeanLatent(int64_t n, c10::optional<at::Generator> rng = c10::nullopt);

  // The synthesis layers in the reference order: input, conv1, to_rgb1,
  // convs.0 .. convs.K-1, to_rgbs.0 .. to_rgbs.M-1, with their names.
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> SynthesisLayers();
  // Layer-selection map of ZSSGAN.determine_opt_layers: row j of W+ ->
  // [conv1, to_rgb1, convs.0, convs.1, ...][j] (n_latent names).
  std::vector<std::string> LayerSelectionNames() const;
  // Sets requires_grad on every parameter of the named top-level children
  // ("style", "input", "conv1", "to_rgb1", "convs.3", "to_rgbs.1", ...).
  // Throws Error(kInvalidArgument) for an unknown name.
  void SetTrainable(const std::vector<std::string>& layer_names, bool trainable);
  // requires_grad on every parameter.
  void SetAllTrainable(bool trainable);

  // Deep copy (parameters, buffers, requires_grad flags, latent_avg).
  std::shared_ptr<GeneratorImpl> Clone() const;

  // Writes only the tensors that differ from `base` (same config required),
  // with metadata: format "restyle-sg2-delta", base_sha256 = BaseDigest(base),
  // size/style_dim/n_mlp/channels.
  void SaveDelta(const std::string& path, const GeneratorImpl& base) const;

  // SHA-256 (hex) of SerializeSafetensors(StateDict(g)) without metadata:
  // a digest of the weights by name, independent of the file they came from.
  static std::string Digest(const GeneratorImpl& g);

  // latent_avg from a converted checkpoint's metadata (undefined if absent).
  torch::Tensor latent_avg;

  // Submodules (public for trainers and tests).
  torch::nn::ModuleList style{nullptr};
  ConstantInput input{nullptr};
  StyledConv conv1{nullptr};
  ToRgb to_rgb1{nullptr};
  torch::nn::ModuleList convs{nullptr};
  torch::nn::ModuleList to_rgbs{nullptr};
  std::shared_ptr<torch::nn::Module> noises;
  std::vector<torch::Tensor> noise_buffers;  // aliases of noises.noise_i

 private:
  SynthesisResult Run(torch::Tensor latent, const SynthesisOptions& options);

  Sg2Config config_;
};
TORCH_MODULE(Generator);

// Builds a generator for `tensors` (config inferred) and loads them strictly
// (every missing / unexpected / mis-shaped tensor is reported in one
// Error(kInvalidArgument)). `metadata` may carry "latent_avg" (JSON list).
Generator GeneratorFromTensors(const TensorMap& tensors, const std::string& origin,
                               const Metadata& metadata = {});
// Reads a safetensors file (converted with tools/convert_stylegan2.py).
Generator LoadGenerator(const std::string& path);
// Saves all tensors with the official names and the config in metadata.
void SaveGenerator(const std::string& path, const GeneratorImpl& generator);
// Base generator + delta file written by SaveDelta. Throws
// Error(kFailedPrecondition) when the delta's base_sha256 does not match `base`,
// Error(kInvalidArgument) when it is not a delta or names unknown tensors.
Generator LoadWithDelta(const GeneratorImpl& base, const std::string& delta_path);

// A random generator with the official names, deterministic in `seed`:
// the reference initialisation, then (when `perturb`) the golden recipe's
// perturbations so no bias/noise weight is trivially 0 or 1.
Generator RandomGenerator(const Sg2Config& config, uint64_t seed, bool perturb = true);

// torchvision save_image(normalize=True, range=(-1,1)) conversion:
// (N,3,H,W) float -> (N,H,W,3) uint8 = clamp((clamp(x,-1,1)+1)/2*255 + 0.5, 0, 255).
torch::Tensor ToUint8Images(const torch::Tensor& images);
// Tiles (N,3,H,W) images into `cols` columns (rows = ceil(N/cols)) with
// `padding` pixels of `pad_value` around each (torchvision make_grid layout).
// Returns (3, rows*(H+p)+p, cols*(W+p)+p).
torch::Tensor MakeGrid(const torch::Tensor& images, int64_t cols, int64_t padding = 2,
                       double pad_value = 0.0);
// save_image(images, nrow=cols, normalize=True, range=(-1,1)) as pixels:
// (N,3,H,W) float in [-1,1] -> (H',W',3) uint8 grid with black padding.
torch::Tensor Uint8Grid(const torch::Tensor& images, int64_t cols, int64_t padding = 2);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_GENERATOR_H_
