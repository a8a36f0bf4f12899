#include "worker/engine/adapt/ipl.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <map>
#include <sstream>
#include <utility>

#include "worker/engine/adapt/losses.h"
#include "worker/engine/clip/preprocess.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

void CheckContext(const AdaptContext& ctx) {
  CheckArgument(ctx.source != nullptr && ctx.options != nullptr,
                "AdaptContext: source and options are required");
  CheckArgument(!ctx.guides.empty(), "AdaptContext: at least one CLIP guide is required");
  CheckArgument(ctx.source_lowp == nullptr ||
                    ctx.source_lowp->config().ToString() == ctx.source->config().ToString(),
                "AdaptContext: source_lowp must be a copy of source (LowPrecisionCopy)");
  CheckArgument(ctx.selection_lowp == nullptr ||
                    ctx.selection_lowp->config().ToString() == ctx.source->config().ToString(),
                "AdaptContext: selection_lowp must have the source's architecture");
  CheckArgument(ctx.train_lowp == nullptr ||
                    ctx.train_lowp->config().ToString() == ctx.source->config().ToString(),
                "AdaptContext: train_lowp must have the source's architecture");
  for (const ClipGuide& g : ctx.guides) {
    CheckArgument(g.clip != nullptr && g.texts != nullptr,
                  "AdaptContext: every guide needs a CLIP model and its texts");
    CheckArgument(g.weight > 0, "AdaptContext: guide weights must be > 0");
  }
}

void CheckSingleGuide(const AdaptContext& ctx, const char* what) {
  CheckArgument(ctx.guides.size() == 1,
                std::string(what) +
                    ": this overload takes one CLIP guide; pass one mapper per guide");
}

void CheckZ(const torch::Tensor& z, const GeneratorImpl& g, const char* what) {
  CheckArgument(z.defined() && z.dim() == 2 && z.size(0) > 0 &&
                    z.size(1) == g.config().style_dim,
                std::string(what) + ": z must be (N, style_dim)");
}

SynthesisOptions NoiseOptions(const AdaptOptions& options,
                              c10::optional<at::Generator> rng) {
  SynthesisOptions so;
  so.input_is_latent = true;
  so.noise = options.noise;
  so.conv = options.conv_mode;
  so.channels_last = options.channels_last;
  so.rng = std::move(rng);
  return so;
}

// The same for generator calls under no_grad (see frozen_conv_mode).
SynthesisOptions FrozenNoiseOptions(const AdaptOptions& options,
                                    c10::optional<at::Generator> rng) {
  SynthesisOptions so = NoiseOptions(options, std::move(rng));
  so.conv = options.frozen_conv_mode;
  return so;
}

// G_s's images of w for calls without grad: from the reduced-precision copy
// when the context has one (returned in w's dtype).
torch::Tensor FrozenSourceImages(const AdaptContext& ctx, const torch::Tensor& w,
                                 c10::optional<at::Generator> rng) {
  const SynthesisOptions so = FrozenNoiseOptions(*ctx.options, std::move(rng));
  if (ctx.source_lowp == nullptr) return ctx.source->Generate({w}, so).image;
  const auto dtype = ctx.source_lowp->input->input.scalar_type();
  return ctx.source_lowp->Generate({w.to(dtype)}, so).image.to(w.scalar_type());
}

// CLIP inputs of generator images, made once per input resolution (models
// of one resolution share them).
class ClipInputs {
 public:
  explicit ClipInputs(torch::Tensor images) : images_(std::move(images)) {}
  const torch::Tensor& For(const ClipModelImpl& clip) {
    const int64_t resolution = clip.config().image_resolution;
    auto it = by_resolution_.find(resolution);
    if (it == by_resolution_.end())
      it = by_resolution_.emplace(resolution, PreprocessForClip(images_, resolution)).first;
    return it->second;
  }

 private:
  torch::Tensor images_;
  std::map<int64_t, torch::Tensor> by_resolution_;
};

// Normalised CLIP image features.
torch::Tensor ImageFeatures(ClipModelImpl& clip, ClipInputs& inputs) {
  return NormalizeFeatures(clip.EncodeImage(inputs.For(clip)));
}

std::vector<std::pair<std::string, torch::Tensor>> NamedParams(
    torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : m.named_parameters())
    out.emplace_back(item.key(), item.value());
  return out;
}

TensorMap DefinedGrads(torch::nn::Module& m) {
  TensorMap out;
  for (const auto& item : m.named_parameters()) {
    if (item.value().grad().defined())
      out[item.key()] = item.value().grad().clone();
  }
  return out;
}

// Copies every parameter of `from` into the same-named one of `to` (same
// architecture), converting to `to`'s dtype.
void CopyParametersInto(GeneratorImpl& from, GeneratorImpl& to) {
  torch::NoGradGuard no_grad;
  auto src = from.parameters(true);
  auto dst = to.parameters(true);
  CheckArgument(src.size() == dst.size(), "CopyParametersInto: different architectures");
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

int64_t WordCount(const std::string& text) {
  std::istringstream in(text);
  int64_t n = 0;
  std::string word;
  while (in >> word) ++n;
  return n;
}

}  // namespace

torch::Tensor DrawZ(int64_t n, int64_t style_dim,
                    c10::optional<at::Generator> rng) {
  // On the generator's device (a CUDA generator cannot fill a CPU tensor).
  torch::TensorOptions options;
  if (rng.has_value()) options = options.device(rng->device());
  return at::randn({n, style_dim}, rng, options);
}

LatentMapper NewMapperForJob(const GeneratorImpl& source,
                             const ClipModelImpl& clip,
                             const AdaptOptions& options) {
  MapperConfig config;
  config.style_dim = source.config().style_dim;
  config.n_ctx = WordCount(options.stage1.ctx_init);
  config.text_width = clip.config().transformer_width;
  return RandomLatentMapper(config, options.stage1.seed);
}

Adam MakeMapperAdam(LatentMapperImpl& mapper, const AdaptOptions& options) {
  AdamOptions o;
  o.lr = options.stage1.lr;
  o.beta1 = options.stage1.beta1;
  o.beta2 = options.stage1.beta2;
  o.eps = options.stage1.eps;
  o.torch1_zero_grad = options.reproduce_torch1_zero_grad;
  return Adam(NamedParams(mapper), o);
}

Adam MakeGeneratorAdam(GeneratorImpl& target, const AdaptOptions& options) {
  AdamOptions o;
  o.lr = options.stage2.lr;
  o.beta1 = options.stage2.beta1;
  o.beta2 = options.stage2.beta2;
  o.eps = options.stage2.eps;
  o.torch1_zero_grad = options.reproduce_torch1_zero_grad;
  return Adam(NamedParams(target), o);
}

Generator CloneForTraining(const GeneratorImpl& source) {
  Generator g(source.Clone());
  g->SetAllTrainable(false);
  return g;
}

Generator LowPrecisionCopy(const GeneratorImpl& source, torch::Dtype dtype) {
  Generator g = CloneForTraining(source);
  g->to(dtype);
  g->eval();
  return g;
}

// ------------------------------------------------------------------ stage 1

std::vector<Stage1Losses> Stage1Step(const AdaptContext& ctx,
                                     const std::vector<MapperSlot>& slots,
                                     const torch::Tensor& z,
                                     c10::optional<at::Generator> rng,
                                     Stage1Trace* trace) {
  CheckContext(ctx);
  CheckZ(z, *ctx.source, "Stage1Step");
  torch::Tensor w;
  {
    torch::NoGradGuard no_grad;
    w = ctx.source->Mapping(z);
  }
  return Stage1StepFromW(ctx, slots, w, std::move(rng), trace);
}

std::vector<Stage1Losses> Stage1StepFromW(const AdaptContext& ctx,
                                          const std::vector<MapperSlot>& slots,
                                          const torch::Tensor& w_in,
                                          c10::optional<at::Generator> rng,
                                          Stage1Trace* trace) {
  CheckContext(ctx);
  CheckZ(w_in, *ctx.source, "Stage1StepFromW");
  CheckArgument(slots.size() == ctx.guides.size(),
                "Stage1Step: one mapper (and its Adam) per CLIP guide is required");
  for (const MapperSlot& slot : slots) {
    CheckArgument(slot.mapper != nullptr && slot.adam != nullptr,
                  "Stage1Step: a mapper slot without mapper or Adam");
  }
  const AdaptOptions& options = *ctx.options;
  torch::AutoGradMode grad_mode(true);
  const torch::Tensor w = w_in.detach();
  torch::Tensor images;
  {
    torch::NoGradGuard no_grad;
    images = FrozenSourceImages(ctx, w, rng);
  }
  ClipInputs inputs(images);
  std::vector<Stage1Losses> out;
  for (size_t m = 0; m < ctx.guides.size(); ++m) {
    ClipModelImpl& clip = *ctx.guides[m].clip;
    const JobTexts& texts = *ctx.guides[m].texts;
    LatentMapperImpl& mapper = *slots[m].mapper;
    Adam& adam = *slots[m].adam;
    torch::Tensor image_features;
    {
      torch::NoGradGuard no_grad;
      image_features = ImageFeatures(clip, inputs);
    }
    adam.ZeroGrad();
    torch::Tensor prompts = mapper.forward(w);
    torch::Tensor source_features =
        PromptTextFeatures(clip, texts.source.prompt, prompts);
    torch::Tensor target_features =
        PromptTextFeatures(clip, texts.target.prompt, prompts);
    Stage1LossTerms terms = Stage1Loss(
        image_features, source_features, target_features,
        texts.source.stage1_base, texts.target.stage1_base,
        texts.source.template_mean, texts.target.template_mean,
        clip.logit_scale(), options.stage1.lambda_l, options.stage1.lambda_src);
    terms.total.backward();
    if (trace != nullptr && m == 0) {
      trace->w = w;
      trace->prompts = prompts.detach();
      trace->source_text_features = source_features.detach();
      trace->target_text_features = target_features.detach();
      trace->images = images;
      trace->clip_input = inputs.For(clip);
      trace->image_features = image_features;
      trace->logits_per_image = terms.logits_per_image.detach();
      trace->text_source_features = terms.text_source_features.detach();
      trace->text_target_features = terms.text_target_features.detach();
      trace->grads = DefinedGrads(mapper);
    }
    adam.Step();
    adam.ZeroGrad();
    Stage1Losses l;
    l.total = terms.total.item<double>();
    l.contrastive = terms.contrastive.item<double>();
    l.target = terms.target.item<double>();
    l.source = terms.source.item<double>();
    out.push_back(l);
  }
  return out;
}

Stage1Losses Stage1Step(const AdaptContext& ctx, LatentMapperImpl& mapper,
                        Adam& adam, const torch::Tensor& z,
                        c10::optional<at::Generator> rng, Stage1Trace* trace) {
  CheckSingleGuide(ctx, "Stage1Step");
  return Stage1Step(ctx, {MapperSlot{&mapper, &adam}}, z, std::move(rng), trace).front();
}

Stage1Losses Stage1StepFromW(const AdaptContext& ctx, LatentMapperImpl& mapper,
                             Adam& adam, const torch::Tensor& w,
                             c10::optional<at::Generator> rng,
                             Stage1Trace* trace) {
  CheckSingleGuide(ctx, "Stage1StepFromW");
  return Stage1StepFromW(ctx, {MapperSlot{&mapper, &adam}}, w, std::move(rng), trace)
      .front();
}

// ------------------------------------------------------- layer selection

LayerSelection SelectLayers(const AdaptContext& ctx, GeneratorImpl& target,
                            const torch::Tensor& z, int64_t iters,
                            c10::optional<at::Generator> rng,
                            LayerSelectionTrace* trace) {
  CheckContext(ctx);
  CheckZ(z, *ctx.source, "SelectLayers");
  CheckArgument(iters > 0, "SelectLayers: iters must be positive");
  const AdaptOptions& options = *ctx.options;
  const int64_t n_latent = target.config().n_latent();
  const int64_t k = AutoLayerK(options.stage2, n_latent);
  CheckArgument(k > 0 && k <= n_latent, "SelectLayers: k out of range");
  torch::AutoGradMode grad_mode(true);
  // The generator the W+ step runs through: G_t, or its narrower copy.
  GeneratorImpl& generator = ctx.selection_lowp != nullptr ? *ctx.selection_lowp : target;
  if (ctx.selection_lowp != nullptr) CopyParametersInto(target, *ctx.selection_lowp);
  const auto compute_dtype = generator.input->input.scalar_type();

  // Only W+ requires grad: remember and clear the generator's flags.
  std::vector<std::pair<torch::Tensor, bool>> flags;
  for (auto& p : generator.parameters(true)) {
    flags.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  struct Restore {
    std::vector<std::pair<torch::Tensor, bool>>* flags;
    ~Restore() {
      for (auto& [p, f] : *flags) p.requires_grad_(f);
    }
  } restore{&flags};

  torch::Tensor initial;
  {
    torch::NoGradGuard no_grad;
    initial = ctx.source->Mapping(z).unsqueeze(1).repeat({1, n_latent, 1});
  }
  torch::Tensor w_codes = initial.clone().requires_grad_(true);
  if (trace != nullptr) trace->initial_w_codes = initial;
  for (int64_t it = 0; it < iters; ++it) {
    // W+ stays float32 (its gradient and update as the reference's); the
    // casts are differentiable.
    torch::Tensor images =
        generator.Synthesize(w_codes.to(compute_dtype), NoiseOptions(options, rng))
            .image.to(w_codes.scalar_type());
    ClipInputs inputs(images);
    torch::Tensor loss;
    for (const ClipGuide& guide : ctx.guides) {
      torch::Tensor features = guide.clip->EncodeImage(inputs.For(*guide.clip));
      torch::Tensor term = guide.weight * GlobalClipLoss(features, guide.texts->target_plain,
                                                         guide.clip->logit_scale());
      loss = loss.defined() ? loss + term : term;
    }
    torch::Tensor grad = torch::autograd::grad({loss}, {w_codes})[0];
    {
      torch::NoGradGuard no_grad;
      w_codes.add_(grad, -options.stage2.auto_layer_lr);  // SGD: p += -lr * g
    }
    if (trace != nullptr) {
      trace->images.push_back(images.detach());
      trace->w_grads.push_back(grad);
      trace->w_codes_after.push_back(w_codes.detach().clone());
      trace->losses.push_back(loss.item<double>());
    }
  }
  LayerSelection out;
  {
    torch::NoGradGuard no_grad;
    out.layer_weights = (w_codes.detach() - initial).abs().mean(-1).mean(0);
  }
  torch::Tensor indices = std::get<1>(out.layer_weights.topk(k));
  const std::vector<std::string> names = target.LayerSelectionNames();
  for (int64_t i = 0; i < k; ++i) {
    const int64_t index = indices[i].item<int64_t>();
    out.indices.push_back(index);
    out.layers.push_back(names.at(static_cast<size_t>(index)));
  }
  return out;
}

// ------------------------------------------------------------------ stage 2

Stage2Result Stage2Step(const AdaptContext& ctx,
                        const std::vector<LatentMapperImpl*>& mappers,
                        GeneratorImpl& target, GeneratorImpl& ema, Adam& adam,
                        const torch::Tensor& z, const torch::Tensor& z_select,
                        c10::optional<at::Generator> rng, Stage2Trace* trace) {
  CheckContext(ctx);
  CheckZ(z, *ctx.source, "Stage2Step");
  torch::Tensor w;
  {
    torch::NoGradGuard no_grad;
    w = ctx.source->Mapping(z);
  }
  return Stage2StepFromW(ctx, mappers, target, ema, adam, w, z_select,
                         std::move(rng), trace);
}

Stage2Result Stage2StepFromW(const AdaptContext& ctx,
                             const std::vector<LatentMapperImpl*>& mappers,
                             GeneratorImpl& target, GeneratorImpl& ema,
                             Adam& adam, const torch::Tensor& w_in,
                             const torch::Tensor& z_select,
                             c10::optional<at::Generator> rng,
                             Stage2Trace* trace) {
  CheckContext(ctx);
  CheckZ(w_in, *ctx.source, "Stage2StepFromW");
  const torch::Tensor w = w_in.detach();
  const AdaptOptions& options = *ctx.options;
  const bool ipl = options.method == AdaptMethod::kIpl;
  if (ipl) {
    CheckArgument(mappers.size() == ctx.guides.size(),
                  "Stage2Step: IPL needs the stage-1 mapper of every CLIP guide");
    for (LatentMapperImpl* mapper : mappers) {
      CheckArgument(mapper != nullptr, "Stage2Step: IPL needs the stage-1 mapper");
    }
  }
  torch::AutoGradMode grad_mode(true);

  Stage2Result result;
  if (options.stage2.auto_layer_iters > 0) {
    torch::Tensor zs = z_select;
    if (!zs.defined()) {
      zs = DrawZ(options.stage2.auto_layer_batch,
                 ctx.source->config().style_dim, rng);
    }
    LayerSelection selection =
        SelectLayers(ctx, target, zs, options.stage2.auto_layer_iters, rng,
                     trace != nullptr ? &trace->selection_trace : nullptr);
    result.trained_layers = selection.layers;
    // The reference's selection backward gives every synthesis parameter a
    // .grad that its zero_grad() then zero-fills (torch 1.13).
    if (options.reproduce_torch1_zero_grad)
      adam.MarkAllGradAllocatedExcept({"style."});
    if (trace != nullptr) trace->selection = std::move(selection);
  } else {
    result.trained_layers = {"input", "conv1"};
    for (int64_t i = 0; i < target.config().num_convs(); ++i) {
      result.trained_layers.push_back("convs." + std::to_string(i));
    }
  }
  target.SetAllTrainable(false);
  target.SetTrainable(result.trained_layers, true);

  // Per guide: the text directions and the source images' features.
  struct GuideTensors {
    torch::Tensor prompts, source_features, target_features, text_directions;
    torch::Tensor src_features;
  };
  std::vector<GuideTensors> per_guide(ctx.guides.size());
  torch::Tensor src_images;
  {
    torch::NoGradGuard no_grad;
    for (size_t m = 0; m < ctx.guides.size(); ++m) {
      ClipModelImpl& clip = *ctx.guides[m].clip;
      const JobTexts& texts = *ctx.guides[m].texts;
      GuideTensors& g = per_guide[m];
      if (ipl) {
        g.prompts = mappers[m]->forward(w);
        g.source_features = PromptTextFeatures(clip, texts.source.prompt, g.prompts);
        g.target_features = PromptTextFeatures(clip, texts.target.prompt, g.prompts);
        g.text_directions =
            IplTextDirections(g.source_features, g.target_features,
                              texts.stage2_source_base, texts.stage2_target_base);
      } else {
        g.text_directions = texts.nada_direction;
      }
    }
    src_images = FrozenSourceImages(ctx, w, rng);
    ClipInputs src_inputs(src_images);
    for (size_t m = 0; m < ctx.guides.size(); ++m) {
      per_guide[m].src_features = ImageFeatures(*ctx.guides[m].clip, src_inputs);
    }
  }
  adam.ZeroGrad();
  // The generator G_t's images come from: G_t, or its narrower copy with the
  // same parameters and the same layers trainable.
  GeneratorImpl* lowp = ctx.train_lowp;
  if (lowp != nullptr) {
    CopyParametersInto(target, *lowp);
    lowp->SetAllTrainable(false);
    lowp->SetTrainable(result.trained_layers, true);
    for (auto& p : lowp->parameters()) p.mutable_grad().reset();
  }
  GeneratorImpl& trained = lowp != nullptr ? *lowp : target;
  torch::Tensor dst_images =
      trained.Generate({w.to(trained.input->input.scalar_type())}, NoiseOptions(options, rng))
          .image.to(w.scalar_type());
  ClipInputs dst_inputs(dst_images);
  torch::Tensor loss, dst_features0, edit0;
  std::vector<torch::Tensor> guide_losses;
  for (size_t m = 0; m < ctx.guides.size(); ++m) {
    torch::Tensor dst_features = ImageFeatures(*ctx.guides[m].clip, dst_inputs);
    torch::Tensor edit = EditDirections(per_guide[m].src_features, dst_features);
    torch::Tensor guide_loss = DirectionalLoss(edit, per_guide[m].text_directions);
    guide_losses.push_back(guide_loss.detach());
    torch::Tensor term = ctx.guides[m].weight * guide_loss;
    loss = loss.defined() ? loss + term : term;
    if (m == 0) {
      dst_features0 = dst_features;
      edit0 = edit;
    }
  }
  loss.backward();
  if (lowp != nullptr) {
    // The copy's gradients become G_t's (float32) for Adam.
    auto master = target.parameters(), copy = lowp->parameters();
    for (size_t i = 0; i < master.size(); ++i) {
      if (!copy[i].grad().defined()) continue;
      master[i].mutable_grad() = copy[i].grad().to(master[i].scalar_type());
      copy[i].mutable_grad().reset();
    }
  }
  if (trace != nullptr) {
    const GuideTensors& g = per_guide.front();
    trace->w = w;
    trace->prompts = g.prompts;
    trace->source_text_features = g.source_features;
    trace->target_text_features = g.target_features;
    trace->text_directions = g.text_directions;
    trace->src_images = src_images;
    trace->dst_images = dst_images.detach();
    trace->src_image_features = g.src_features;
    trace->dst_image_features = dst_features0.detach();
    trace->edit_directions = edit0.detach();
    trace->grads = DefinedGrads(target);
  }
  adam.Step();
  adam.ZeroGrad();
  EmaUpdate(ema, target, options.stage2.ema_decay);
  result.loss = loss.item<double>();
  for (const torch::Tensor& l : guide_losses) result.guide_losses.push_back(l.item<double>());
  return result;
}

Stage2Result Stage2Step(const AdaptContext& ctx, LatentMapperImpl* mapper,
                        GeneratorImpl& target, GeneratorImpl& ema, Adam& adam,
                        const torch::Tensor& z, const torch::Tensor& z_select,
                        c10::optional<at::Generator> rng, Stage2Trace* trace) {
  CheckSingleGuide(ctx, "Stage2Step");
  return Stage2Step(ctx, std::vector<LatentMapperImpl*>{mapper}, target, ema, adam, z,
                    z_select, std::move(rng), trace);
}

Stage2Result Stage2StepFromW(const AdaptContext& ctx, LatentMapperImpl* mapper,
                             GeneratorImpl& target, GeneratorImpl& ema,
                             Adam& adam, const torch::Tensor& w,
                             const torch::Tensor& z_select,
                             c10::optional<at::Generator> rng,
                             Stage2Trace* trace) {
  CheckSingleGuide(ctx, "Stage2StepFromW");
  return Stage2StepFromW(ctx, std::vector<LatentMapperImpl*>{mapper}, target, ema, adam,
                         w, z_select, std::move(rng), trace);
}

torch::Tensor SampleImages(const AdaptContext& ctx, GeneratorImpl& generator,
                           const torch::Tensor& z,
                           const torch::Tensor& mean_latent,
                           c10::optional<at::Generator> rng) {
  CheckContext(ctx);
  CheckZ(z, generator, "SampleImages");
  torch::NoGradGuard no_grad;
  SynthesisOptions so = FrozenNoiseOptions(*ctx.options, std::move(rng));
  so.input_is_latent = false;
  so.truncation = ctx.options->sample_truncation;
  so.truncation_latent = mean_latent;
  return generator.Generate({z}, so).image;
}

}  // namespace restyle::engine
