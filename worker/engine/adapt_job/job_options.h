// The options of one adaptation job (JobOptions) and the enums they use,
// without LibTorch: the settings table (settings.h) fills them, and the front
// server validates requests with that table without linking LibTorch. The
// job runner that reads them is job.h.
//
// Thread-safety: plain values; the functions touch only their arguments.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_OPTIONS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "worker/engine/adapt/options.h"

namespace restyle::engine {

enum class JobDevice {
  kCpu,
  kCuda,
};

// Arithmetic of CUDA jobs (ignored on the CPU).
enum class CudaMath {
  kTf32,  // TF32 tensor cores in cuBLAS and cuDNN: the fastest measured setting
  kFp32,  // plain float32 throughout
};

// Dtype of a part of a job that may run narrower than the reference's
// float32 (JobOptions::source_precision, selection_precision).
enum class Precision {
  kFp32,  // the reference's arithmetic
  kBf16,  // a bfloat16 copy of the generator: half the memory traffic (meant for CUDA)
};

// One CLIP checkpoint and its weight in the combination.
struct ClipSpec {
  std::string path;     // .safetensors (tools/convert_clip.py) or OpenAI .pt
  double weight = 1.0;  // > 0
};

struct JobOptions {
  // Method, classes and every training hyper-parameter (paper defaults).
  AdaptOptions adapt;
  // Source generator (.safetensors from tools/convert_stylegan2.py).
  std::string source_generator;
  // CLIP models with weights (see above).
  std::vector<ClipSpec> clips;
  // Use the embedded tiny random models (demo_models.h) instead of files.
  bool demo = false;
  // Use the toy world's trained models (world/world_models.h) instead of
  // files; the quality report then gains the world's judge.
  bool world = false;
  JobDevice device = JobDevice::kCpu;
  // CUDA only. These set process-wide LibTorch flags when the job starts (a
  // worker runs one job at a time). cuDNN autotuning times the convolution
  // algorithms once per shape and keeps the fastest; its choice may differ
  // between runs, so a CUDA job is reproducible bit for bit only with it off
  // (and even then only as far as cuDNN's kernels are deterministic).
  CudaMath cuda_math = CudaMath::kTf32;
  bool cudnn_autotune = true;
  // Any device; both are recorded in result.json. source_precision: the
  // frozen source's images made without gradients (stage 1's batches, stage
  // 2's source images) come from a bfloat16 copy of it
  // (AdaptContext::source_lowp; part of the stage-1 checkpoint's
  // fingerprint). selection_precision: stage 2's layer selection (8 images
  // forward and backward to W+, most of a stage-2 step) runs on a bfloat16
  // copy of G_t refreshed before each selection
  // (AdaptContext::selection_lowp); only the choice of layers can change.
  // train_precision: the stage-2 step's G_t images forward and backward on a
  // bfloat16 copy with float32 master weights (AdaptContext::train_lowp;
  // Adam and the EMA stay float32). See also AdaptOptions::channels_last
  // (set through `adapt`).
  Precision source_precision = Precision::kFp32;
  Precision selection_precision = Precision::kFp32;
  Precision train_precision = Precision::kFp32;
  // Output directory (created). Required.
  std::string out_dir;
  // Load a matching stage-1 checkpoint from out_dir instead of training.
  bool resume = true;
  // A preview PNG every this many stage-2 steps (and after the last); 0: none.
  int64_t preview_every = 50;
  int64_t preview_samples = 8;    // images per preview (one row)
  int64_t grid_samples = 8;       // columns of samples.png
  int64_t quality_samples = 32;   // images per set in the quality report (>= 2)
  uint64_t sample_seed = 0;       // latents of previews, samples.png and quality
  // Per-step losses in result.json are downsampled (by averaging runs of
  // consecutive steps) to at most this many points per stage.
  int64_t max_loss_points = 300;
  // Label of the job in reports ("" = the method's name, "IPL" / "NADA").
  std::string label;
};

// Sets every seed of `options` from one job seed: stage 1 = seed, stage 2 =
// seed + 1, samples = seed + 2 (the paper's defaults are stage 1: 3, stage 2: 2).
void SetJobSeed(JobOptions& options, uint64_t seed);

// "ipl" / "nada" and back (Error(kInvalidArgument) for anything else).
const char* MethodName(AdaptMethod method);
AdaptMethod ParseMethod(const std::string& name);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_OPTIONS_H_
