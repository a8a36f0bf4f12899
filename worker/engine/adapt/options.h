// Typed options of a generator adaptation job (IPL, or StyleGAN-NADA as the
// baseline). Every default is the reference's "paper setting" (see
// docs/method.md, "Defaults of the reference"); every quirk of the reference
// is reproduced by default and can be switched off explicitly.
//
// Thread-safety: plain values.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_OPTIONS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_OPTIONS_H_

#include <cmath>
#include <cstdint>
#include <string>

#include "worker/engine/stylegan2/modes.h"

namespace restyle::engine {

enum class AdaptMethod {
  kIpl,   // stage 1 (prompt mapper) + stage 2 with image-specific directions
  kNada,  // stage 2 only, one fixed template direction for every image
};

// Stage 1: training the latent mapper that writes image-specific prompts.
struct Stage1Options {
  int64_t batch = 32;        // z per iteration
  int64_t iterations = 300;  // Adam steps
  double lr = 0.05;          // Adam lr; betas (0.9, 0.999), eps 1e-8
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  std::string ctx_init =
      "a photo of a";       // n_ctx = its word count (one BPE token each)
  double lambda_l = 1.0;    // weight of the target/source regulariser
  double lambda_src = 0.0;  // weight of the source term inside it
  uint64_t seed = 3;        // RNG seed of the stage (z draws, noise)
};

// Stage 2: fine-tuning the target generator.
struct Stage2Options {
  int64_t batch = 2;         // z per iteration
  int64_t iterations = 300;  // Adam steps
  // StyleGAN2's g_reg_every = 4 ratio r = 4/5: lr 0.002*r, betas (0^r, 0.99^r).
  double lr = 0.002 * 0.8;
  double beta1 = 0.0;
  double beta2 = std::pow(0.99, 0.8);
  double eps = 1e-8;
  // Adaptive layer selection before each step (0 = off: the trainable layers
  // are input, conv1 and every synthesis conv).
  int64_t auto_layer_iters = 1;
  int64_t auto_layer_batch = 8;  // z drawn per selection
  int64_t auto_layer_k =
      0;  // 0: int(2*(2*log2(size)-2)/3) (9 at 256, 12 at 1024)
  double auto_layer_lr = 0.01;  // SGD lr on W+ during selection
  double ema_decay = 0.99;      // G_ema = decay*G_ema + (1-decay)*G_t
  uint64_t seed = 2;            // RNG seed of the stage
  // Reference quirk: the stage-2 base text is "a photo of a" (ctx_init
  // formatted without "{}", so the class word is dropped) for BOTH classes.
  // false: ctx_init + " " + class.
  bool base_text_without_class = true;
};

struct AdaptOptions {
  AdaptMethod method = AdaptMethod::kIpl;
  std::string source_class = "photo";  // e.g. "photo" for FFHQ
  std::string target_class;            // e.g. "disney", "anime painting"
  Stage1Options stage1;
  Stage2Options stage2;
  // Noise of every generator call during training. kRandom (default) draws
  // fresh noise per call like the reference (source and target differ, which
  // is what keeps IPL's direction away from 0/0); kStored uses the buffers
  // (golden tests).
  NoiseMode noise = NoiseMode::kRandom;
  // Formulation of the trainable generator's modulated convolutions (the
  // stage-2 step and its layer selection, auto_layer_batch images forward
  // and backward, the larger part of a step). kAuto = kFused: the batch
  // shares one convolution and no per-sample weight (or its gradient) is
  // built; under autograd its
  // elementwise steps keep the reference's order, because rounding that
  // moves a pre-activation at ~0 across zero changes the leaky-ReLU slope
  // and, through it, small gradients (folding sqrt(2) into the bias moved a
  // layer-selection W+ gradient of ipl_stage2_autolayer by 4e-3 of its max).
  // Golden deviations with it: gradients <= 3e-5 of max (allowance 5e-4).
  // kReference: the reference's per-sample grouped convolution.
  ConvMode conv_mode = ConvMode::kAuto;
  // Formulation for generator calls that record no gradient (the frozen
  // source's images in both stages, preview and quality samples): there the
  // fused path's rounding (<= 2e-6 of max on every golden case) cannot reach a
  // gradient, and it is 1.3-1.9x faster.
  ConvMode frozen_conv_mode = ConvMode::kAuto;
  // Every generator call with its activations in channels-last (NHWC) order
  // (SynthesisOptions::channels_last; the fused formulations only). The same function summed
  // in another order, for cuDNN's tensor-core convolutions; on the CPU
  // oneDNN's NCHW convolutions are faster, so it is off by default.
  bool channels_last = false;
  // torch < 2.0 zero_grad(): a parameter that once received a gradient keeps
  // a zero-filled .grad, and Adam keeps stepping it (step count and
  // exp_avg_sq advance). Layer selection touches every synthesis layer and
  // ToRGB, so from the first selection on all of them are stepped. false:
  // torch >= 2.0 behaviour (params without a gradient are skipped).
  bool reproduce_torch1_zero_grad = true;
  // Samples for people to look at: truncation towards the mean latent.
  double sample_truncation = 0.7;
  int64_t mean_latent_samples = 4096;
};

// k of the adaptive layer selection for a generator with `n_latent` rows:
// options.auto_layer_k when > 0, else int(2 * n_latent / 3).
inline int64_t AutoLayerK(const Stage2Options& options, int64_t n_latent) {
  return options.auto_layer_k > 0 ? options.auto_layer_k : (2 * n_latent) / 3;
}

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_OPTIONS_H_
