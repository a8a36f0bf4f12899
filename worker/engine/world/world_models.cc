#include "worker/engine/world/world_models.h"

#include "worker/engine/clip/checkpoint.h"

// world_data.S: the files' bytes between these symbols.
extern "C" {
extern const char restyle_world_clip_begin[], restyle_world_clip_end[];
extern const char restyle_world_generator_begin[], restyle_world_generator_end[];
extern const char restyle_world_judge_begin[], restyle_world_judge_end[];
}

namespace restyle::engine {
namespace {

const char* Origin(WorldModel model) {
  switch (model) {
    case WorldModel::kClip: return "embedded world-clip.safetensors";
    case WorldModel::kGenerator: return "embedded world-stylegan2.safetensors";
    case WorldModel::kJudge: return "embedded world-judge.safetensors";
  }
  return "embedded world model";
}

}  // namespace

std::string_view WorldModelBytes(WorldModel model) {
  switch (model) {
    case WorldModel::kClip:
      return {restyle_world_clip_begin,
              static_cast<size_t>(restyle_world_clip_end - restyle_world_clip_begin)};
    case WorldModel::kGenerator:
      return {restyle_world_generator_begin,
              static_cast<size_t>(restyle_world_generator_end - restyle_world_generator_begin)};
    case WorldModel::kJudge:
      return {restyle_world_judge_begin,
              static_cast<size_t>(restyle_world_judge_end - restyle_world_judge_begin)};
  }
  return {};
}

SafetensorsContents WorldModelContents(WorldModel model) {
  return ParseSafetensors(WorldModelBytes(model), Origin(model));
}

ClipModel WorldClip() {
  return LoadClipFromTensors(WorldModelContents(WorldModel::kClip).tensors, kWorldClipName);
}

Generator WorldGenerator() {
  return GeneratorFromTensors(WorldModelContents(WorldModel::kGenerator).tensors,
                              kWorldGeneratorName);
}

Judge WorldJudge() {
  return LoadJudgeFromTensors(WorldModelContents(WorldModel::kJudge).tensors,
                              Origin(WorldModel::kJudge));
}

}  // namespace restyle::engine
