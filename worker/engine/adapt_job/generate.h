// Images from an adapted generator: loading what a job wrote (its source +
// generator_delta.safetensors, checked against result.json) and drawing
// images by seed, each a function of its seed alone. Used by
// `restyle-generate`; the worker's Generate path will call the same.
//
//   JobGenerators g = LoadJobGenerators("runs/ukiyo-e", "models/ffhq.safetensors",
//                                       torch::kCPU);
//   GenerateOptions o;                      // truncation 0.7 (the paper's samples)
//   torch::Tensor images = GenerateImages(*g.adapted, {0, 1, 2}, o);
//
// Seeds: image i uses z ~ N(0,1) and the per-layer noise drawn, in that
// order, from a CPU generator seeded with seeds[i], on the CPU whatever the
// device. Seeds run `batch` to a forward under BatchInvariantGuard
// (stylegan2/layers.h), so seed s gives the same image in any list, in any
// order, in any batch (bit for bit on the CPU), and up to the device's float
// rounding on any device.
//
// Thread-safety: as GeneratorImpl (calls do not mutate the generator).
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_GENERATE_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_GENERATE_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/engine/adapt_job/seeds.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::engine {

struct GenerateOptions {
  // Truncation towards the mean latent (1: none). The mean is the
  // generator's latent_avg when its checkpoint has one, else the mean of
  // mean_latent_samples mapped z drawn with mean_latent_seed (the mapping is
  // never trained, so source and adapted generators share it).
  double truncation = 0.7;
  int64_t mean_latent_samples = 4096;
  uint64_t mean_latent_seed = 0;
  // kRandom: noise drawn from each image's seed; kStored: the generator's
  // noise buffers.
  NoiseMode noise = NoiseMode::kRandom;
  ConvMode conv = ConvMode::kAuto;
  // Images per forward (>= 1).
  int64_t batch = 8;
  // BatchInvariantGuard around the forwards. false: LibTorch's fastest
  // kernels per shape (and weights folded at batch 1), so an image depends on
  // its batch by float rounding: for benchmarks.
  bool batch_invariant = true;
  // The mean latent, when the caller keeps it (TruncationLatent of this
  // generator, or of another with the same mapping network); empty: computed.
  torch::Tensor truncation_latent;
};

// The latent that `options.truncation` moves towards: latent_avg, or the
// mean described at GenerateOptions::truncation, as (1,style_dim) on the
// generator's device. The mapping network is never trained, so a source
// generator's serves every generator adapted from it.
torch::Tensor TruncationLatent(GeneratorImpl& generator, const GenerateOptions& options = {});

// (N,3,size,size) float images in about [-1,1] on the CPU, one per seed.
// Error(kInvalidArgument) for no seeds, a truncation outside [0, 1],
// mean_latent_samples < 1 or batch < 1.
torch::Tensor GenerateImages(GeneratorImpl& generator, const std::vector<uint64_t>& seeds,
                             const GenerateOptions& options = {});

// What a job directory holds, loaded.
struct JobGenerators {
  Generator source{nullptr};
  Generator adapted{nullptr};      // source + generator_delta.safetensors
  std::string label;               // result.json's label ("IPL", "NADA", ...)
  std::string target;              // the job's target text
  std::string adapted_digest;      // GeneratorImpl::Digest(adapted), = result.json's
  double sample_truncation = 0.7;  // the truncation of the job's own samples
};

// Loads <job_dir>/result.json and <job_dir>/generator_delta.safetensors onto
// `device`. The source is `source_path` when given, else the embedded demo
// generator when the job ran on it. Errors: kNotFound (no result.json or
// delta), kInvalidArgument (no source_path for a job on a file),
// kFailedPrecondition (the source is not the job's: its digest differs from
// the one result.json and the delta record), kDataLoss (the loaded generator's
// digest differs from result.json's adapted_digest).
JobGenerators LoadJobGenerators(const std::string& job_dir, const std::string& source_path,
                                const torch::Device& device);

// The same with the source already loaded (a worker's resident model; it is
// shared, not copied, and moved to `device`): the same checks of `source`
// and the delta against result.json.
JobGenerators LoadJobGenerators(const std::string& job_dir, Generator source,
                                const torch::Device& device);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_GENERATE_H_
