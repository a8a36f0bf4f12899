// The adaptation job runner: one whole IPL or StyleGAN-NADA job, from
// loaded models to files on disk, around the training core's step functions
// (worker/engine/adapt/ipl.h).
//
//   JobOptions options;                       // typed; paper defaults
//   options.adapt.target_class = "disney";
//   options.out_dir = "out";
//   JobModels models = LoadJobModels(options);
//   JobResult r = RunJob(options, models, {.on_progress = ..., .is_cancelled = ...});
//
// What a job does:
//   * stage 1 (IPL only): trains the prompt mapper (one per CLIP model);
//     afterwards writes <out>/stage1_checkpoint.safetensors (mappers + the
//     stage's RNG state + a fingerprint of every setting stage 1 depends on). A job started again
//     with the same output dir and the same settings loads it and skips
//     stage 1 (no stage-1 progress is reported);
//   * stage 2: trains G_t (EMA copy G_ema is the result);
//   * every step: on_progress (stage, step, total, loss terms, images/s,
//     ETA), then is_cancelled; a cancelled job stops before its next step and
//     throws Error(kCancelled) (so at most one more step runs after the flag
//     is raised, none when it is raised from on_progress);
//   * every preview_every stage-2 steps: a PNG of G_ema on fixed latents
//     (truncation toward MeanLatent) in <out>/previews/;
//   * at the end: <out>/generator_delta.safetensors (G_ema as a delta
//     against the source, GeneratorImpl::SaveDelta), <out>/mapper.safetensors
//     (IPL; mapper_clip<k>.safetensors for CLIP model k >= 1),
//     <out>/samples.png (top row source, bottom row adapted, same latents), <out>/quality.json and <out>/result.json (settings, seeds,
//     per-step losses (downsampled), timings, source digest, quality).
// Randomness comes only from explicit generators seeded from the options
// (stage 1: adapt.stage1.seed, stage 2: adapt.stage2.seed, samples:
// sample_seed), so the same job on the same build and thread count gives the
// same generator bit for bit, resumed or not (on the CPU; on CUDA see
// cudnn_autotune).
//
// Several CLIP models may be given with weights: every model guides training
// (the stage-2 and layer-selection losses are the weighted sums over models,
// stage 1 trains one mapper per model: see ClipGuide in adapt/ipl.h), and
// every model (with its normalised weight) scores the quality report.
//
// Thread-safety: RunJob runs on the calling thread and mutates nothing shared
// but the models' autograd state; do not run two jobs on the same JobModels
// at once. Callbacks run on the job's thread.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/adapt_job/job_options.h"
#include "worker/engine/adapt_job/quality.h"
#include "worker/engine/clip/model.h"
#include "worker/engine/stylegan2/generator.h"
#include "worker/engine/world/judge.h"

namespace restyle::engine {

class Tokenizer;

// Models a job reads (frozen; shared between jobs run one after another).
struct JobModels {
  Generator source{nullptr};                   // G_s on the job device, frozen
  std::string source_name;                     // file name or "demo"
  std::string source_digest;                   // GeneratorImpl::Digest(source)
  std::vector<std::string> clip_names;         // one per model
  std::vector<ClipModel> clips;                // frozen, eval, on the job device
  std::vector<double> clip_weights;            // as given (> 0)
  std::shared_ptr<const Tokenizer> tokenizer;  // CLIP BPE tokenizer
  // The toy world's judge (world/judge.h) when the source is the world's
  // generator: the quality report then gains its numbers. Optional.
  Judge judge{nullptr};
};

// Loads the source generator, the CLIP models and the tokenizer (or builds
// the demo models) and moves them to the job device. Errors: kNotFound /
// kDataLoss from the readers, kInvalidArgument when no CLIP is given (and not
// demo) or a weight is not positive, kUnimplemented when CUDA is requested and
// not available.
JobModels LoadJobModels(const JobOptions& options);

// What LoadJobModels does once the files are read: freezes the models, moves
// them to `device`, computes the source digest, and loads the tokenizer when
// `m` has none. For callers that assemble JobModels themselves (a worker
// shares its CLIP models and tokenizer between its source generators).
void PrepareJobModels(JobModels& m, JobDevice device);

// Reported after every training step.
struct JobProgress {
  std::string label;    // the job's label ("IPL", "NADA" or JobOptions::label)
  int stage = 0;        // 1 (IPL mapper) or 2 (generator)
  int64_t step = 0;     // 1-based step within the stage
  int64_t total = 0;    // steps in the stage
  // Loss terms of the step by name: stage 1 "total", "contrastive", "target",
  // "source" (of the first CLIP model) and "clip<k>.total" for model k >= 1;
  // stage 2 "loss" (the weighted sum) and, with several models, "clip<k>"
  // (model k's unweighted directional loss).
  std::vector<std::pair<std::string, double>> losses;
  double images_per_second = 0;  // generator images of the stage so far / time
  double eta_seconds = 0;        // rest of this stage + later stages, estimated
  std::string preview_path;      // set when this step wrote a preview
};

struct JobCallbacks {
  std::function<void(const JobProgress&)> on_progress;  // optional
  std::function<bool()> is_cancelled;                   // optional
  std::function<void(const std::string&)> on_log;       // optional: one-line notes
};

struct StageTiming {
  int64_t steps = 0;
  double seconds = 0;
};

struct JobResult {
  std::string label;              // "IPL" / "NADA" unless options.label
  std::string out_dir;
  std::string delta_path;         // generator_delta.safetensors
  std::string mapper_path;        // mapper.safetensors ("" for NADA)
  std::vector<std::string> mapper_paths;  // one per CLIP model (IPL)
  std::string samples_path;       // samples.png (source row over adapted row);
                                  // "" (and no previews) in a build without libpng
  std::string quality_path;       // quality.json
  std::string result_path;        // result.json
  std::vector<std::string> preview_paths;
  bool stage1_resumed = false;    // stage 1 loaded from the checkpoint
  StageTiming stage1;             // zero steps when resumed or NADA
  StageTiming stage2;
  double total_seconds = 0;
  std::vector<double> stage1_losses;  // total loss per step (not downsampled)
  std::vector<double> stage2_losses;
  QualityReport quality;
  Generator adapted{nullptr};     // G_ema
};

// Runs one job (see the file comment). Throws Error(kCancelled) when
// cancelled, Error(kInvalidArgument) for bad options, and whatever the core
// or the file writers throw (Error, c10::Error).
JobResult RunJob(const JobOptions& options, const JobModels& models,
                 const JobCallbacks& callbacks = {});

// Runs the same job once per method on the same seeds, each in
// <out_dir>/<method name>, and writes <out_dir>/comparison.txt (the quality
// reports side by side, when two methods ran). Returns the results in order.
std::vector<JobResult> RunMethods(const JobOptions& options, const JobModels& models,
                                  const std::vector<AdaptMethod>& methods,
                                  const JobCallbacks& callbacks = {});

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_H_
