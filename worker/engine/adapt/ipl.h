// The training steps of a generator adaptation job: IPL stage 1 (the prompt
// mapper), stage 2 (the target generator, IPL or NADA directions), adaptive
// layer selection and the EMA. Each step is one iteration of the reference
// train.py loop, exact to it (golden tests), with the reference's waste
// removed: CLIP frozen (gradients flow to its inputs only), texts encoded
// once per job (JobTexts), prompts batch-encoded and cut after the EOT, no
// generator weight gradients during layer selection.
//
// Steps do no I/O and keep no state beyond what they are given: models,
// optimizers and options are the caller's; randomness comes from explicit
// inputs (z) and an optional at::Generator (noise, z for layer selection).
//
// How the runner should call this (one job, one thread):
//   ClipModel clip = LoadClip(...);  clip->Freeze();
//   Generator source = LoadGenerator(...);  source->SetAllTrainable(false);
//   auto tokenizer = Tokenizer::FromFile(DefaultVocabPath());
//   JobTexts texts = ComputeJobTexts(*clip, TokenizeJobTexts(*tokenizer,
//   options)); at::Generator rng =
//   at::make_generator<at::CPUGeneratorImpl>(seed);
//   // Stage 1 (IPL only)
//   LatentMapper mapper = NewMapperForJob(*source, *clip, options);
//   Adam mapper_adam = MakeMapperAdam(*mapper, options);
//   for (i < options.stage1.iterations)
//     Stage1Step(ctx, *mapper, mapper_adam, DrawZ(options.stage1.batch,
//     style_dim, rng), rng);
//   // Stage 2
//   Generator target = CloneForTraining(*source);   // G_t
//   Generator ema = CloneForTraining(*source);      // G_ema (the result to
//   save) Adam g_adam = MakeGeneratorAdam(*target, options); for (i <
//   options.stage2.iterations)
//     Stage2Step(ctx, mapper.get(), *target, *ema, g_adam,
//                DrawZ(options.stage2.batch, style_dim, rng), {}, rng);
//   ema->SaveDelta(path, *source);
// where ctx = AdaptContext(&*clip, &*source, &texts, &options) (one CLIP
// model; several: ctx.guides, one mapper each, see ClipGuide). The runner
// owns cancellation/progress between calls; a step throws Error on bad input
// (and c10::Error from torch), leaving the models in an unspecified state.
//
// Thread-safety: a step mutates the trained model and its optimizer; run one
// job's steps on one thread. Grad mode is set inside (thread-local).
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_IPL_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_IPL_H_

#include <ATen/core/Generator.h>
#include <c10/util/Optional.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/engine/adapt/mapper.h"
#include "worker/engine/adapt/optim.h"
#include "worker/engine/adapt/options.h"
#include "worker/engine/adapt/text.h"
#include "worker/engine/clip/model.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::engine {

// One CLIP model guiding training (not owned): the model, the job's texts
// encoded with it (ComputeJobTexts) and its weight. With several guides the
// stage-2 loss and the layer-selection loss are the weighted sums
// sum_m weight_m * loss_m (the reference's clip_model_weights), and stage 1
// trains one mapper per guide: a prompt lives in its model's token-embedding
// space, whose width differs between models.
//
// Where this departs from the reference: with several models, the reference
// trains its one mapper with the first model only, then hands that model's
// prompt features to every model in stage 2 (only defined when the models'
// embedding widths match, and mixing two embedding spaces), and its in-place
// additions make each later model's "prompt + base" carry the earlier models'
// base features as well. Here every model scores prompts written for it. With
// one model (the default) the two are the same computation.
struct ClipGuide {
  ClipModelImpl* clip = nullptr;    // frozen (Freeze())
  const JobTexts* texts = nullptr;  // ComputeJobTexts(*clip, ...), once per job
  double weight = 1.0;              // > 0
};

// The frozen parts every step reads (not owned).
struct AdaptContext {
  AdaptContext() = default;
  // One CLIP model with weight 1: the reference's default.
  AdaptContext(ClipModelImpl* clip, GeneratorImpl* source, const JobTexts* texts,
               const AdaptOptions* options)
      : guides{ClipGuide{clip, texts, 1.0}}, source(source), options(options) {}

  std::vector<ClipGuide> guides;    // one or more
  GeneratorImpl* source = nullptr;  // G_s, frozen
  const AdaptOptions* options = nullptr;
  // Optional: a copy of G_s in a narrower dtype (LowPrecisionCopy, e.g.
  // bfloat16) that makes the images no gradient flows through: stage 1's
  // images (nearly all of stage 1's work) and stage 2's source images.
  // Their CLIP features then differ from float32 ones by the dtype's
  // rounding. Null: G_s itself (the reference's arithmetic).
  GeneratorImpl* source_lowp = nullptr;
  // Optional: a generator of G_t's architecture in a narrower dtype
  // (LowPrecisionCopy of G_t) on which layer selection runs: SelectLayers
  // copies G_t's parameters into it first, runs the W+ step through it
  // (W+ and its update stay float32) and ranks the layers from that. Only
  // the choice of layers can differ from float32 (when two layers' mean
  // |delta W+| are within bfloat16 rounding of each other). Null: G_t itself.
  GeneratorImpl* selection_lowp = nullptr;
  // Optional: the same for the stage-2 step's trained generator (may be the
  // same copy as selection_lowp). Stage2Step copies G_t's parameters into it,
  // runs G_t's images forward and backward through it with the step's
  // layers trainable, and hands its gradients to G_t's float32 parameters
  // (cast), where Adam and the EMA run as before: mixed precision with
  // float32 master weights. The loss and gradients differ from float32 by
  // the dtype's rounding. Null: G_t itself.
  GeneratorImpl* train_lowp = nullptr;
};

// z ~ N(0, I) of shape (n, style_dim) drawn from `rng` (global when unset), on
// rng's device.
torch::Tensor DrawZ(int64_t n, int64_t style_dim,
                    c10::optional<at::Generator> rng = c10::nullopt);

// A fresh mapper for the job (style_dim from `source`, text width from
// `clip`, n_ctx from ctx_init), initialised from options.stage1.seed. With
// several CLIP models: one per model, each made with that model.
LatentMapper NewMapperForJob(const GeneratorImpl& source,
                             const ClipModelImpl& clip,
                             const AdaptOptions& options);
// Adam over the mapper's parameters with the stage-1 settings.
Adam MakeMapperAdam(LatentMapperImpl& mapper, const AdaptOptions& options);
// Adam over EVERY parameter of `target` (like the reference's
// Adam(generator.parameters())) with the stage-2 settings.
Adam MakeGeneratorAdam(GeneratorImpl& target, const AdaptOptions& options);
// Deep copy of `source` with every parameter's requires_grad false (G_t and
// G_ema start like this; steps set requires_grad themselves).
Generator CloneForTraining(const GeneratorImpl& source);

// Frozen deep copy of `source` with every floating tensor in `dtype`, for
// AdaptContext::source_lowp.
Generator LowPrecisionCopy(const GeneratorImpl& source, torch::Dtype dtype);

// ------------------------------------------------------------------ stage 1

// Intermediate tensors of one stage-1 step (for tests and debugging).
struct Stage1Trace {
  torch::Tensor w;                     // (B,style_dim)
  torch::Tensor prompts;               // (B,n_ctx,W)
  torch::Tensor source_text_features;  // (B,E) T_source(P)
  torch::Tensor target_text_features;  // (B,E) T_target(P)
  torch::Tensor images;                // (B,3,H,W) G_s(w)
  torch::Tensor clip_input;            // preprocessed images
  torch::Tensor image_features;        // (B,E) normalised
  torch::Tensor logits_per_image;      // (B,B)
  torch::Tensor text_source_features;  // (B,E) normalize(T_source + base)
  torch::Tensor text_target_features;  // (B,E)
  TensorMap grads;  // mapper gradients by parameter name (before the step)
};

struct Stage1Losses {
  double total = 0;
  double contrastive = 0;
  double target = 0;
  double source = 0;
};

// The mapper a stage-1 step trains for one guide, and its optimizer.
struct MapperSlot {
  LatentMapperImpl* mapper = nullptr;
  Adam* adam = nullptr;
};

// One stage-1 iteration: w = mapping(z) of G_s; images G_s(w) once
// (truncation 1, options.noise, `rng`); then per guide m (in order), with its
// slot: P = mapper_m(w), Stage1Loss with model m, backward, one Adam step of
// mapper_m (its gradients are cleared before and after). Returns the losses
// per guide; `trace` records guide 0. z: (B,style_dim); one slot per guide.
std::vector<Stage1Losses> Stage1Step(const AdaptContext& ctx,
                                     const std::vector<MapperSlot>& slots,
                                     const torch::Tensor& z,
                                     c10::optional<at::Generator> rng = c10::nullopt,
                                     Stage1Trace* trace = nullptr);
// The same iteration from w = mapping(z) given directly: w (B,style_dim).
std::vector<Stage1Losses> Stage1StepFromW(const AdaptContext& ctx,
                                          const std::vector<MapperSlot>& slots,
                                          const torch::Tensor& w,
                                          c10::optional<at::Generator> rng = c10::nullopt,
                                          Stage1Trace* trace = nullptr);
// One guide (ctx.guides.size() == 1): its losses.
Stage1Losses Stage1Step(const AdaptContext& ctx, LatentMapperImpl& mapper,
                        Adam& adam, const torch::Tensor& z,
                        c10::optional<at::Generator> rng = c10::nullopt,
                        Stage1Trace* trace = nullptr);
Stage1Losses Stage1StepFromW(const AdaptContext& ctx, LatentMapperImpl& mapper,
                             Adam& adam, const torch::Tensor& w,
                             c10::optional<at::Generator> rng = c10::nullopt,
                             Stage1Trace* trace = nullptr);

// ------------------------------------------------------- layer selection

struct LayerSelectionTrace {
  torch::Tensor initial_w_codes;             // (N,n_latent,style_dim)
  std::vector<torch::Tensor> images;         // per SGD iteration
  std::vector<torch::Tensor> w_grads;        // per SGD iteration
  std::vector<torch::Tensor> w_codes_after;  // per SGD iteration
  std::vector<double> losses;                // per SGD iteration
};

struct LayerSelection {
  torch::Tensor layer_weights;   // (n_latent) mean |delta W+| per row
  std::vector<int64_t> indices;  // topk(layer_weights, k) in topk order
  std::vector<std::string>
      layers;  // GeneratorImpl::LayerSelectionNames()[index]
};

// ZSSGAN.determine_opt_layers on `target`: W+ = mapping_{G_s}(z) repeated to
// n_latent rows; `iters` SGD steps (lr auto_layer_lr) on W+ only for
// sum_m weight_m * GlobalClipLoss(E_I,m(G_t(W+)), texts_m.target_plain) over
// the guides; rank rows, top k
// (AutoLayerK). Row j names [conv1, to_rgb1, convs.0, ...][j] (the reference's
// index quirk). Only W+ requires grad; no gradient reaches any model weight
// and requires_grad flags of `target` are left as they were.
// z: (auto_layer_batch, style_dim).
LayerSelection SelectLayers(const AdaptContext& ctx, GeneratorImpl& target,
                            const torch::Tensor& z, int64_t iters,
                            c10::optional<at::Generator> rng = c10::nullopt,
                            LayerSelectionTrace* trace = nullptr);

// ------------------------------------------------------------------ stage 2

// Tensors of guide 0 (the first CLIP model), plus the layer selection.
struct Stage2Trace {
  torch::Tensor w;                     // (B,style_dim)
  torch::Tensor prompts;               // (B,n_ctx,W)          (IPL)
  torch::Tensor source_text_features;  // (B,E) T_source(P)     (IPL)
  torch::Tensor target_text_features;  // (B,E) T_target(P)     (IPL)
  torch::Tensor text_directions;       // (B,E) IPL, (1,E) NADA
  torch::Tensor src_images;            // G_s(w)
  torch::Tensor dst_images;            // G_t(w)
  torch::Tensor src_image_features;    // (B,E) normalised
  torch::Tensor dst_image_features;    // (B,E) normalised
  torch::Tensor edit_directions;       // (B,E)
  LayerSelection selection;            // when layer selection ran
  LayerSelectionTrace selection_trace;
  TensorMap grads;  // non-zero gradients of G_t by name (before the step)
};

struct Stage2Result {
  double loss = 0;                  // sum_m weight_m * guide_losses[m]
  std::vector<double> guide_losses;  // directional loss per guide (unweighted)
  std::vector<std::string>
      trained_layers;  // layers with requires_grad in this step
};

// One stage-2 iteration (IPL when options.method == kIpl, else NADA):
//  1. with auto_layer_iters > 0: SelectLayers on `target` with z_select
//     (drawn from `rng` when undefined), then only the chosen layers are
//     trainable (and, with reproduce_torch1_zero_grad, every synthesis
//     parameter is marked as holding a zero gradient in `adam`, as the
//     reference's selection backward + zero_grad leave it); otherwise the
//     trainable layers are input, conv1 and every conv;
//  2. w = mapping_{G_s}(z); per guide m: IPL: per-image text directions under
//     no_grad from mappers[m] (one mapper per guide, required for kIpl);
//     NADA: texts_m.nada_direction;
//  3. x_s = G_s(w) (no grad), x_t = G_t(w), each its own noise draw (once,
//     shared by the guides);
//  4. sum_m weight_m * DirectionalLoss_m, backward, adam.Step(), EMA update
//     of `ema` from `target`.
// z: (B,style_dim).
Stage2Result Stage2Step(const AdaptContext& ctx,
                        const std::vector<LatentMapperImpl*>& mappers,
                        GeneratorImpl& target, GeneratorImpl& ema, Adam& adam,
                        const torch::Tensor& z,
                        const torch::Tensor& z_select = {},
                        c10::optional<at::Generator> rng = c10::nullopt,
                        Stage2Trace* trace = nullptr);
// The same iteration from w = mapping(z) given directly: w (B,style_dim).
Stage2Result Stage2StepFromW(const AdaptContext& ctx,
                             const std::vector<LatentMapperImpl*>& mappers,
                             GeneratorImpl& target, GeneratorImpl& ema,
                             Adam& adam, const torch::Tensor& w,
                             const torch::Tensor& z_select = {},
                             c10::optional<at::Generator> rng = c10::nullopt,
                             Stage2Trace* trace = nullptr);
// One guide: `mapper` is its mapper (nullptr for NADA).
Stage2Result Stage2Step(const AdaptContext& ctx, LatentMapperImpl* mapper,
                        GeneratorImpl& target, GeneratorImpl& ema, Adam& adam,
                        const torch::Tensor& z,
                        const torch::Tensor& z_select = {},
                        c10::optional<at::Generator> rng = c10::nullopt,
                        Stage2Trace* trace = nullptr);
Stage2Result Stage2StepFromW(const AdaptContext& ctx, LatentMapperImpl* mapper,
                             GeneratorImpl& target, GeneratorImpl& ema,
                             Adam& adam, const torch::Tensor& w,
                             const torch::Tensor& z_select = {},
                             c10::optional<at::Generator> rng = c10::nullopt,
                             Stage2Trace* trace = nullptr);

// Samples to look at: G(w) with truncation options.sample_truncation towards
// `mean_latent` (1,style_dim) (e.g. source.MeanLatent(4096)), no grad.
torch::Tensor SampleImages(const AdaptContext& ctx, GeneratorImpl& generator,
                           const torch::Tensor& z,
                           const torch::Tensor& mean_latent,
                           c10::optional<at::Generator> rng = c10::nullopt);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_IPL_H_
