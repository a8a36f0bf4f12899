#include "worker/engine/stylegan2/generator.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/sha256.h"

namespace restyle::engine {
namespace {

constexpr const char* kDeltaFormat = "restyle-sg2-delta";

bool Has(const TensorMap& t, const std::string& name) { return t.count(name) > 0; }

const torch::Tensor& Need(const TensorMap& t, const std::string& name, const std::string& origin,
                          int64_t dim) {
  auto it = t.find(name);
  if (it == t.end()) {
    Fail(ErrorCode::kInvalidArgument,
         origin + ": not a StyleGAN2 generator: tensor '" + name + "' is missing");
  }
  if (it->second.dim() != dim) {
    Fail(ErrorCode::kInvalidArgument, origin + ": tensor '" + name + "' has shape " +
                                          c10::str(it->second.sizes()) + ", expected " +
                                          std::to_string(dim) + " dimensions");
  }
  return it->second;
}

std::string JoinInts(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

Metadata ConfigMetadata(const Sg2Config& c) {
  return {{"arch", "rosinality-stylegan2"},
          {"size", std::to_string(c.size)},
          {"style_dim", std::to_string(c.style_dim)},
          {"n_mlp", std::to_string(c.n_mlp)},
          {"channels", JoinInts(c.channels)}};
}

bool SameConfig(const Sg2Config& a, const Sg2Config& b) {
  return a.size == b.size && a.style_dim == b.style_dim && a.n_mlp == b.n_mlp &&
         a.channels == b.channels;
}

// name -> parameter or buffer of `m`.
std::map<std::string, torch::Tensor> NamedTensors(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers(true)) out[b.key()] = b.value();
  return out;
}

}  // namespace

// ------------------------------------------------------------------ Sg2Config

int64_t Sg2Config::log_size() const {
  int64_t l = 0;
  while ((int64_t{1} << l) < size) ++l;
  return l;
}

void Sg2Config::Validate() const {
  CheckArgument(size >= 8 && (size & (size - 1)) == 0,
                "Sg2Config: size must be a power of two >= 8, got " + std::to_string(size));
  CheckArgument(style_dim > 0 && n_mlp > 0, "Sg2Config: style_dim and n_mlp must be positive");
  CheckArgument(static_cast<int64_t>(channels.size()) == log_size() - 1,
                "Sg2Config: need " + std::to_string(log_size() - 1) +
                    " channel counts (4x4 .. size), got " + std::to_string(channels.size()));
  for (int64_t c : channels) CheckArgument(c > 0, "Sg2Config: channel counts must be positive");
}

std::string Sg2Config::ToString() const {
  std::ostringstream s;
  s << "size=" << size << " style_dim=" << style_dim << " n_mlp=" << n_mlp
    << " channels=" << JoinInts(channels);
  return s.str();
}

Sg2Config Sg2Config::Official(int64_t size, int64_t style_dim, int64_t n_mlp,
                              int64_t channel_multiplier) {
  Sg2Config c;
  c.size = size;
  c.style_dim = style_dim;
  c.n_mlp = n_mlp;
  const int64_t cm = channel_multiplier;
  const std::map<int64_t, int64_t> table = {{4, 512},       {8, 512},       {16, 512},
                                            {32, 512},      {64, 256 * cm}, {128, 128 * cm},
                                            {256, 64 * cm}, {512, 32 * cm}, {1024, 16 * cm}};
  for (int64_t r = 4; r <= size; r *= 2) {
    auto it = table.find(r);
    CheckArgument(it != table.end(), "Sg2Config::Official: no channel count for resolution " +
                                         std::to_string(r));
    c.channels.push_back(it->second);
  }
  c.Validate();
  return c;
}

Sg2Config Sg2Config::FromTensors(const TensorMap& t, const std::string& origin) {
  Sg2Config c;
  c.style_dim = Need(t, "style.1.weight", origin, 2).size(1);
  c.n_mlp = 0;
  while (Has(t, "style." + std::to_string(c.n_mlp + 1) + ".weight")) ++c.n_mlp;
  int64_t n_rgbs = 0;
  while (Has(t, "to_rgbs." + std::to_string(n_rgbs) + ".conv.weight")) ++n_rgbs;
  CheckArgument(n_rgbs > 0, origin + ": not a StyleGAN2 generator: no to_rgbs.0.conv.weight");
  c.size = int64_t{4} << n_rgbs;
  c.channels.push_back(Need(t, "input.input", origin, 4).size(1));
  for (int64_t k = 0; k < n_rgbs; ++k) {
    c.channels.push_back(
        Need(t, "convs." + std::to_string(2 * k) + ".conv.weight", origin, 5).size(1));
  }
  c.Validate();
  return c;
}

// -------------------------------------------------------------- GeneratorImpl

GeneratorImpl::GeneratorImpl(const Sg2Config& config, bool initialize)
    : torch::nn::Module("Generator"), config_(config) {
  config_.Validate();
  const auto& ch = config_.channels;
  const int64_t sd = config_.style_dim;
  style = register_module("style", torch::nn::ModuleList());
  style->push_back(PixelNorm());
  for (int64_t i = 0; i < config_.n_mlp; ++i) {
    style->push_back(EqualLinear(EqualLinearOptions{sd, sd, config_.lr_mlp, 0.0, true}));
  }
  input = register_module("input", ConstantInput(ch[0]));
  ModulatedConv2dOptions o;
  o.in = ch[0];
  o.out = ch[0];
  o.style_dim = sd;
  o.blur_kernel = config_.blur_kernel;
  conv1 = register_module("conv1", StyledConv(o));
  to_rgb1 = register_module("to_rgb1", ToRgb(ch[0], sd, false, config_.blur_kernel));
  convs = register_module("convs", torch::nn::ModuleList());
  to_rgbs = register_module("to_rgbs", torch::nn::ModuleList());
  int64_t in = ch[0];
  for (size_t i = 1; i < ch.size(); ++i) {
    o.in = in;
    o.out = ch[i];
    o.upsample = true;
    convs->push_back(StyledConv(o));
    o.in = ch[i];
    o.upsample = false;
    convs->push_back(StyledConv(o));
    to_rgbs->push_back(ToRgb(ch[i], sd, true, config_.blur_kernel));
    in = ch[i];
  }
  noises = register_module("noises", std::make_shared<torch::nn::Module>("Noises"));
  for (int64_t i = 0; i < config_.num_noise_layers(); ++i) {
    const int64_t res = int64_t{1} << ((i + 5) / 2);
    noise_buffers.push_back(
        noises->register_buffer("noise_" + std::to_string(i), torch::empty({1, 1, res, res})));
  }
  if (initialize) {
    at::Generator rng = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(rng.mutex());
    ResetParameters(rng);
  }
}

void GeneratorImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  for (size_t i = 1; i < style->size(); ++i) style->ptr<EqualLinearImpl>(i)->ResetParameters(rng);
  input->ResetParameters(rng);
  conv1->ResetParameters(rng);
  to_rgb1->ResetParameters(rng);
  for (size_t i = 0; i < convs->size(); ++i) convs->ptr<StyledConvImpl>(i)->ResetParameters(rng);
  for (size_t i = 0; i < to_rgbs->size(); ++i) to_rgbs->ptr<ToRgbImpl>(i)->ResetParameters(rng);
  for (auto& b : noise_buffers) b.copy_(at::randn(b.sizes(), rng));
}

torch::Tensor GeneratorImpl::Mapping(const torch::Tensor& z) {
  CheckArgument(z.dim() == 2 && z.size(1) == config_.style_dim,
                "Mapping: expected z of shape (N," + std::to_string(config_.style_dim) +
                    "), got " + c10::str(z.sizes()));
  auto x = style->ptr<PixelNormImpl>(0)->forward(z);
  for (size_t i = 1; i < style->size(); ++i) x = style->ptr<EqualLinearImpl>(i)->forward(x);
  return x;
}

torch::Tensor GeneratorImpl::MeanLatent(int64_t n, c10::optional<at::Generator> rng) {
  CheckArgument(n > 0, "MeanLatent: n must be positive");
  torch::NoGradGuard no_grad;
  auto z = at::randn({n, config_.style_dim}, rng, input->input.options());
  return Mapping(z).mean(0, /*keepdim=*/true);
}

SynthesisResult GeneratorImpl::Generate(const std::vector<torch::Tensor>& styles_in,
                                        const SynthesisOptions& options) {
  CheckArgument(styles_in.size() == 1 || styles_in.size() == 2,
                "Generate: expected one or two style inputs, got " +
                    std::to_string(styles_in.size()));
  const int64_t n_latent = config_.n_latent(), sd = config_.style_dim;
  std::vector<torch::Tensor> styles;
  for (const auto& s : styles_in) {
    CheckArgument(s.defined(), "Generate: undefined style input");
    if (!options.input_is_latent) {
      styles.push_back(Mapping(s));
    } else {
      CheckArgument((s.dim() == 2 && s.size(1) == sd) ||
                        (s.dim() == 3 && s.size(1) == n_latent && s.size(2) == sd),
                    "Generate: expected w (N," + std::to_string(sd) + ") or W+ (N," +
                        std::to_string(n_latent) + "," + std::to_string(sd) + "), got " +
                        c10::str(s.sizes()));
      styles.push_back(s);
    }
  }
  if (options.truncation < 1.0) {
    CheckArgument(options.truncation_latent.defined() &&
                      options.truncation_latent.numel() == sd,
                  "Generate: truncation < 1 needs a truncation_latent of " +
                      std::to_string(sd) + " values");
    auto t = options.truncation_latent.reshape({sd}).to(styles[0].dtype());
    for (auto& s : styles) s = t + options.truncation * (s - t);
  }
  torch::Tensor latent;
  if (styles.size() == 1) {
    latent = styles[0].dim() == 3 ? styles[0] : styles[0].unsqueeze(1).repeat({1, n_latent, 1});
  } else {
    CheckArgument(styles[0].dim() == 2 && styles[1].dim() == 2 &&
                      styles[0].size(0) == styles[1].size(0),
                  "Generate: style mixing needs two w/z inputs of shape (N,style_dim)");
    int64_t inject = options.inject_index;
    if (inject < 0) {
      inject = at::randint(1, n_latent, {1}, options.rng, torch::kLong).item<int64_t>();
    }
    CheckArgument(inject <= n_latent, "Generate: inject_index " + std::to_string(inject) +
                                          " > n_latent " + std::to_string(n_latent));
    latent = at::cat({styles[0].unsqueeze(1).repeat({1, inject, 1}),
                      styles[1].unsqueeze(1).repeat({1, n_latent - inject, 1})},
                     1);
  }
  return Run(latent, options);
}

SynthesisResult GeneratorImpl::Synthesize(const torch::Tensor& wplus,
                                          const SynthesisOptions& options) {
  CheckArgument(wplus.dim() == 3 && wplus.size(1) == config_.n_latent() &&
                    wplus.size(2) == config_.style_dim,
                "Synthesize: expected W+ (N," + std::to_string(config_.n_latent()) + "," +
                    std::to_string(config_.style_dim) + "), got " + c10::str(wplus.sizes()));
  return Run(wplus, options);
}

SynthesisResult GeneratorImpl::Run(torch::Tensor latent, const SynthesisOptions& options) {
  const int64_t layers = config_.num_noise_layers();
  std::vector<torch::Tensor> noise(layers);
  if (options.noise == NoiseMode::kStored) {
    noise = noise_buffers;
  } else if (options.noise == NoiseMode::kGiven) {
    CheckArgument(static_cast<int64_t>(options.noise_tensors.size()) == layers,
                  "Generate: NoiseMode::kGiven needs " + std::to_string(layers) +
                      " noise tensors, got " + std::to_string(options.noise_tensors.size()));
    noise = options.noise_tensors;
  }
  const ConvMode mode = ResolveConvMode(options.conv);
  SynthesisResult result;
  result.latent = latent;
  const int64_t batch = latent.size(0);
  auto out = input->forward(batch);
  // Channels-last only where it can stay so: the reference formulation
  // reshapes the batch into groups, which would copy every activation back.
  const bool channels_last = options.channels_last && IsFused(mode);
  if (channels_last) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  out = conv1->forward(out, latent.select(1, 0), noise[0], mode, options.rng);
  auto skip = to_rgb1->forward(out, latent.select(1, 1), {}, mode);
  if (options.record_layers) {
    result.layers["out_conv1"] = out;
    result.layers["skip_to_rgb1"] = skip;
  }
  if (options.after_block) options.after_block(4);
  int64_t row = 1;
  for (size_t k = 0; k < to_rgbs->size(); ++k) {
    for (size_t j = 0; j < 2; ++j) {
      const size_t c = 2 * k + j;
      out = convs->ptr<StyledConvImpl>(c)->forward(out, latent.select(1, row + j), noise[c + 1],
                                                    mode, options.rng);
      if (options.record_layers) result.layers["out_convs." + std::to_string(c)] = out;
    }
    skip = to_rgbs->ptr<ToRgbImpl>(k)->forward(out, latent.select(1, row + 2), skip, mode);
    if (options.record_layers) result.layers["skip_to_rgbs." + std::to_string(k)] = skip;
    if (options.after_block) options.after_block(int64_t{8} << k);
    row += 2;
  }
  result.image = channels_last ? skip.contiguous() : skip;
  return result;
}

std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>
GeneratorImpl::SynthesisLayers() {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> out;
  out.emplace_back("input", input.ptr());
  out.emplace_back("conv1", conv1.ptr());
  out.emplace_back("to_rgb1", to_rgb1.ptr());
  for (size_t i = 0; i < convs->size(); ++i) out.emplace_back("convs." + std::to_string(i), convs->ptr(i));
  for (size_t i = 0; i < to_rgbs->size(); ++i) {
    out.emplace_back("to_rgbs." + std::to_string(i), to_rgbs->ptr(i));
  }
  return out;
}

std::vector<std::string> GeneratorImpl::LayerSelectionNames() const {
  std::vector<std::string> names = {"conv1", "to_rgb1"};
  for (int64_t i = 0; static_cast<int64_t>(names.size()) < config_.n_latent(); ++i) {
    names.push_back("convs." + std::to_string(i));
  }
  return names;
}

void GeneratorImpl::SetTrainable(const std::vector<std::string>& layer_names, bool trainable) {
  auto modules = named_modules("", /*include_self=*/false);
  for (const auto& name : layer_names) {
    auto* m = modules.find(name);
    CheckArgument(m != nullptr, "SetTrainable: no generator layer named '" + name + "'");
    for (auto& p : (*m)->parameters(true)) p.requires_grad_(trainable);
  }
}

void GeneratorImpl::SetAllTrainable(bool trainable) {
  for (auto& p : parameters(true)) p.requires_grad_(trainable);
}

std::shared_ptr<GeneratorImpl> GeneratorImpl::Clone() const {
  auto copy = std::make_shared<GeneratorImpl>(config_, /*initialize=*/false);
  copy->to(input->input.device(), input->input.scalar_type());
  torch::NoGradGuard no_grad;
  auto src = NamedTensors(*this);
  for (auto& [name, dst] : NamedTensors(*copy)) {
    dst.copy_(src.at(name));
    if (dst.is_leaf() && src.at(name).requires_grad() != dst.requires_grad()) {
      dst.requires_grad_(src.at(name).requires_grad());
    }
  }
  if (latent_avg.defined()) copy->latent_avg = latent_avg.clone();
  return copy;
}

std::string GeneratorImpl::Digest(const GeneratorImpl& g) {
  return Sha256Hex(SerializeSafetensors(StateDict(g)));
}

void GeneratorImpl::SaveDelta(const std::string& path, const GeneratorImpl& base) const {
  CheckArgument(SameConfig(config_, base.config()),
                "SaveDelta: base config " + base.config().ToString() + " differs from " +
                    config_.ToString());
  auto mine = StateDict(*this);
  auto theirs = StateDict(base);
  TensorMap delta;
  for (const auto& [name, t] : mine) {
    if (!torch::equal(t, theirs.at(name))) delta[name] = t;
  }
  Metadata meta = ConfigMetadata(config_);
  meta["format"] = kDeltaFormat;
  meta["base_sha256"] = Digest(base);
  WriteSafetensors(path, delta, meta);
}

// ------------------------------------------------------------ free functions

Generator GeneratorFromTensors(const TensorMap& tensors, const std::string& origin,
                               const Metadata& metadata) {
  Generator g(std::make_shared<GeneratorImpl>(Sg2Config::FromTensors(tensors, origin),
                                              /*initialize=*/false));
  LoadStateDict(*g, tensors, origin);
  auto it = metadata.find("latent_avg");
  if (it != metadata.end()) {
    std::vector<float> values;
    try {
      values = nlohmann::json::parse(it->second).get<std::vector<float>>();
    } catch (const std::exception& e) {
      Fail(ErrorCode::kDataLoss, origin + ": metadata latent_avg is not a JSON list of numbers");
    }
    CheckArgument(static_cast<int64_t>(values.size()) == g->config().style_dim,
                  origin + ": metadata latent_avg has " + std::to_string(values.size()) +
                      " values, expected " + std::to_string(g->config().style_dim));
    g->latent_avg = torch::tensor(values, torch::kFloat32).view({1, -1});
  }
  return g;
}

Generator LoadGenerator(const std::string& path) {
  auto contents = ReadSafetensors(path);
  return GeneratorFromTensors(contents.tensors, path, contents.metadata);
}

void SaveGenerator(const std::string& path, const GeneratorImpl& generator) {
  Metadata meta = ConfigMetadata(generator.config());
  if (generator.latent_avg.defined()) {
    auto la = generator.latent_avg.to(torch::kFloat32).contiguous().view({-1});
    std::vector<float> v(la.data_ptr<float>(), la.data_ptr<float>() + la.numel());
    meta["latent_avg"] = nlohmann::json(v).dump();
  }
  WriteSafetensors(path, StateDict(generator), meta);
}

Generator LoadWithDelta(const GeneratorImpl& base, const std::string& delta_path) {
  auto contents = ReadSafetensors(delta_path);
  auto fmt = contents.metadata.find("format");
  CheckArgument(fmt != contents.metadata.end() && fmt->second == kDeltaFormat,
                delta_path + ": not a generator delta (metadata format != " +
                    std::string(kDeltaFormat) + ")");
  auto digest = contents.metadata.find("base_sha256");
  CheckArgument(digest != contents.metadata.end(), delta_path + ": delta without base_sha256");
  const std::string base_digest = GeneratorImpl::Digest(base);
  if (digest->second != base_digest) {
    Fail(ErrorCode::kFailedPrecondition, delta_path + ": delta was made for base " +
                                             digest->second + " but the given base is " +
                                             base_digest);
  }
  Generator g(base.Clone());
  auto targets = NamedTensors(*g);
  std::string errors;
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : contents.tensors) {
    auto it = targets.find(name);
    if (it == targets.end()) {
      errors += " unexpected '" + name + "';";
    } else if (it->second.sizes() != t.sizes()) {
      errors += " '" + name + "' has shape " + c10::str(t.sizes()) + ", expected " +
                c10::str(it->second.sizes()) + ";";
    } else {
      it->second.copy_(t);
    }
  }
  CheckArgument(errors.empty(), delta_path + ":" + errors);
  return g;
}

Generator RandomGenerator(const Sg2Config& config, uint64_t seed, bool perturb) {
  Generator g(std::make_shared<GeneratorImpl>(config, /*initialize=*/false));
  auto rng = at::detail::createCPUGenerator(seed);
  g->ResetParameters(rng);
  if (perturb) {
    torch::NoGradGuard no_grad;
    auto ends_with = [](const std::string& s, const std::string& suffix) {
      return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(),
                                                    suffix) == 0;
    };
    for (auto& p : g->named_parameters(true)) {
      const std::string& n = p.key();
      double sigma = 0.0;
      if (n.rfind("style.", 0) == 0 && ends_with(n, ".bias")) {
        sigma = 1.0;
      } else if (ends_with(n, "modulation.bias") || ends_with(n, "noise.weight") ||
                 ends_with(n, "activate.bias") ||
                 (n.rfind("to_rgb", 0) == 0 && ends_with(n, ".bias") &&
                  n.find("conv.") == std::string::npos)) {
        sigma = 0.1;
      }
      if (sigma > 0) p.value().add_(at::randn(p.value().sizes(), rng) * sigma);
    }
  }
  return g;
}

torch::Tensor ToUint8Images(const torch::Tensor& images) {
  CheckArgument(images.dim() == 4 && images.size(1) == 3,
                "ToUint8Images: expected (N,3,H,W), got " + c10::str(images.sizes()));
  auto x = images.detach().to(torch::kCPU, torch::kFloat32).clamp(-1, 1);
  x = ((x + 1) / 2).mul(255).add(0.5).clamp(0, 255);
  return x.to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
}

torch::Tensor MakeGrid(const torch::Tensor& images, int64_t cols, int64_t padding,
                       double pad_value) {
  CheckArgument(images.dim() == 4 && images.size(0) > 0, "MakeGrid: expected (N,C,H,W)");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  cols = std::max<int64_t>(1, std::min(cols, n));
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t hp = h + padding, wp = w + padding;
  auto grid = torch::full({c, rows * hp + padding, cols * wp + padding}, pad_value,
                          images.options());
  using torch::indexing::Slice;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, q = i % cols;
    grid.index_put_({Slice(), Slice(r * hp + padding, r * hp + padding + h),
                     Slice(q * wp + padding, q * wp + padding + w)},
                    images[i]);
  }
  return grid;
}

torch::Tensor Uint8Grid(const torch::Tensor& images, int64_t cols, int64_t padding) {
  auto u8 = ToUint8Images(images).permute({0, 3, 1, 2});
  return MakeGrid(u8, cols, padding, 0.0).permute({1, 2, 0}).contiguous();
}

}  // namespace restyle::engine
