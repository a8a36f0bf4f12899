// The models a worker loads once at start and keeps: its source generators
// and the CLIP models (with the tokenizer) that guide every job, from a
// model directory (manifest.h) or, without one, the embedded tiny demo
// models (source "demo"). Everything is frozen and on the worker's device.
//
// Thread-safety: immutable after Load; the engine thread runs jobs and
// generation on them one at a time.
#ifndef RESTYLE_WORKER_MODELS_H_
#define RESTYLE_WORKER_MODELS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "restyle/worker/v1/worker_service.pb.h"
#include "worker/engine/adapt_job/job.h"

namespace restyle::worker {

// The id of the embedded generator a worker without a model directory serves.
inline constexpr char kDemoSourceId[] = "demo";

// Which embedded models a worker without a model directory loads as source
// "demo".
enum class EmbeddedModels {
  kWorld,   // the toy world's trained models (engine/world/world_models.h): a
            // 32px generator of shapes in the "photo" style, a CLIP that reads
            // the world's styles, and the judge in every job's quality report
  kRandom,  // the tiny random-weight models (engine/adapt_job/demo_models.h):
            // fastest; for tests of the service's paths, the pictures are noise
};

struct LoadedSource {
  restyle::worker::v1::SourceModel model;  // what the front is told
  engine::JobModels job_models;            // this source with the shared CLIPs
};

class Models {
 public:
  // `model_dir` "" loads the `embedded` models as source "demo". Errors name
  // the file at fault (engine errors through the boundary).
  static absl::StatusOr<std::unique_ptr<Models>> Load(const std::string& model_dir,
                                                      engine::JobDevice device,
                                                      EmbeddedModels embedded = EmbeddedModels::kWorld);

  const std::vector<LoadedSource>& sources() const { return sources_; }
  // nullptr for an id not loaded here.
  const LoadedSource* Source(const std::string& id) const;
  const std::vector<std::string>& clip_names() const { return clip_names_; }
  // Jobs need CLIP; a worker without any only generates.
  bool can_adapt() const { return !clip_names_.empty(); }
  bool demo() const { return demo_; }

 private:
  std::vector<LoadedSource> sources_;
  std::vector<std::string> clip_names_;
  bool demo_ = false;
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_MODELS_H_
