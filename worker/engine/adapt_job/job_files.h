// Files of an adaptation job: the stage-1 checkpoint, loss series for
// result.json, and the source-vs-adapted sample grid. Used by job.cc; public
// so tests and tools can read what a job wrote.
//
// Stage-1 checkpoint (<out>/stage1_checkpoint.safetensors): the mappers'
// tensors (one mapper per CLIP model of the job) as "mapper.<name>" for the
// first and "mapper<k>.<name>" for mapper k >= 1, the stage's RNG state(s) as
// "rng.<name>" (uint8, at::Generator::get_state), and metadata
//   format       "restyle-ipl-stage1"
//   fingerprint  the JSON text of every setting stage 1 depends on
//   n_ctx        prompt vectors of each mapper
//   mappers      how many mappers (absent: 1)
//   losses       JSON {term: [per-step values]} of the stage
//   seconds      wall time the stage took
// Written atomically (WriteSafetensors), so a job killed while writing leaves
// either no checkpoint or a whole one.
//
// Thread-safety: pure functions.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_FILES_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_FILES_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

inline constexpr char kStage1CheckpointFormat[] = "restyle-ipl-stage1";

// Per-step values of named loss terms, in step order.
using LossSeries = std::map<std::string, std::vector<double>>;

struct Stage1Checkpoint {
  std::vector<TensorMap> mappers;            // state dict by name, per CLIP model
  std::map<std::string, torch::Tensor> rng;  // RNG states by name
  std::string fingerprint;
  int64_t n_ctx = 0;
  LossSeries losses;
  double seconds = 0;
};

void WriteStage1Checkpoint(const std::string& path, const Stage1Checkpoint& checkpoint);

// Reads a checkpoint. Returns nullopt when `path` does not exist; throws
// Error(kDataLoss) when it exists but is not a whole stage-1 checkpoint.
std::optional<Stage1Checkpoint> ReadStage1Checkpoint(const std::string& path);

// Downsamples `values` to at most `max_points` points by averaging runs of
// consecutive values; `steps` receives the 1-based step at the END of each run.
// max_points <= 0 or >= size: values unchanged, steps 1..n.
std::vector<double> DownsampleSeries(const std::vector<double>& values, int64_t max_points,
                                     std::vector<int64_t>* steps);

// Whether this build can write PNG files (restyle_image was found).
bool PngSupported();

// Writes a PNG grid with `source` images (N,3,H,W in [-1,1]) as the top row
// and `adapted` (same shape) as the bottom row. Error(kInvalidArgument) when
// the shapes differ; Error(kUnimplemented) when this build has no PNG support.
void WriteComparisonGrid(const std::string& path, const torch::Tensor& source,
                         const torch::Tensor& adapted);

// Writes one row of images (N,3,H,W in [-1,1]) as a PNG.
void WriteImageRow(const std::string& path, const torch::Tensor& images);

// Creates `dir` and its parents (Error(kNotFound) naming it on failure).
void MakeDirectories(const std::string& dir);

// Writes `text` to `path` atomically (temp file + rename).
void WriteTextFile(const std::string& path, const std::string& text);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_JOB_FILES_H_
