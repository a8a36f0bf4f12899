#include "worker/models.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/world/world_models.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/stylegan2/generator.h"
#include "worker/engine_boundary.h"
#include "worker/manifest.h"

namespace restyle::worker {
namespace {

int64_t ParameterBytes(engine::GeneratorImpl& g) {
  int64_t bytes = 0;
  for (const auto& p : g.parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
  return bytes;
}

void Describe(LoadedSource& s) {
  engine::GeneratorImpl& g = *s.job_models.source;
  s.model.set_resolution(static_cast<int32_t>(g.config().size));
  s.model.set_latent_rows(static_cast<int32_t>(g.config().n_latent()));
  s.model.set_digest(s.job_models.source_digest);
  s.model.set_size_bytes(ParameterBytes(g));
}

}  // namespace

const LoadedSource* Models::Source(const std::string& id) const {
  for (const LoadedSource& s : sources_) {
    if (s.model.id() == id) return &s;
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<Models>> Models::Load(const std::string& model_dir,
                                                     engine::JobDevice device,
                                                     EmbeddedModels embedded) {
  auto models = std::unique_ptr<Models>(new Models);
  engine::JobModels shared;  // the CLIPs and tokenizer every source shares
  std::vector<std::pair<SourceEntry, engine::Generator>> generators;
  engine::Judge judge{nullptr};
  std::string embedded_name;
  if (model_dir.empty() && embedded == EmbeddedModels::kWorld) {
    models->demo_ = true;
    embedded_name = engine::kWorldGeneratorName;
    RESTYLE_RETURN_IF_ERROR(RunEngine("loading the toy world's models", [&] {
      shared.clips.push_back(engine::WorldClip());
      shared.clip_names.push_back(engine::kWorldClipName);
      shared.clip_weights.push_back(1.0);
      judge = engine::WorldJudge();
      SourceEntry demo;
      demo.id = kDemoSourceId;
      demo.source_text = engine::kWorldSourceText;
      demo.description =
          "the toy world's generator (32px shapes in the \"photo\" style; targets it knows: "
          "sketch, pixel art, neon, watercolor)";
      generators.emplace_back(demo, engine::WorldGenerator());
    }));
  } else if (model_dir.empty()) {
    models->demo_ = true;
    embedded_name = engine::kDemoGeneratorName;
    RESTYLE_RETURN_IF_ERROR(RunEngine("building the demo models", [&] {
      shared.clips.push_back(engine::DemoClip());
      shared.clip_names.push_back(engine::kDemoClipName);
      shared.clip_weights.push_back(1.0);
      SourceEntry demo;
      demo.id = kDemoSourceId;
      demo.source_text = "photo";
      demo.description = "the embedded tiny demo generator (random weights, 32px)";
      generators.emplace_back(demo, engine::DemoGenerator());
    }));
  } else {
    RESTYLE_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(model_dir));
    for (const ClipEntry& c : manifest.clips) {
      RESTYLE_RETURN_IF_ERROR(RunEngine(absl::StrCat("loading CLIP ", c.path), [&] {
        shared.clips.push_back(engine::LoadClipFromTensors(engine::ReadSafetensors(c.path).tensors, c.path));
        shared.clip_names.push_back(std::filesystem::path(c.path).filename().string());
        shared.clip_weights.push_back(c.weight);
      }));
    }
    for (const SourceEntry& e : manifest.generators) {
      engine::Generator g{nullptr};
      RESTYLE_RETURN_IF_ERROR(RunEngine(absl::StrCat("loading generator ", e.id, " (", e.path, ")"),
                                        [&] { g = engine::LoadGenerator(e.path); }));
      generators.emplace_back(e, g);
    }
  }
  models->clip_names_ = shared.clip_names;
  for (auto& [entry, generator] : generators) {
    LoadedSource s;
    s.model.set_id(entry.id);
    s.model.set_source_text(entry.source_text);
    s.model.set_description(entry.description);
    s.job_models = shared;
    s.job_models.source = generator;
    s.job_models.judge = judge;
    s.job_models.source_name = models->demo_ ? embedded_name
                                             : std::filesystem::path(entry.path).filename().string();
    RESTYLE_RETURN_IF_ERROR(RunEngine(absl::StrCat("preparing ", entry.id), [&] {
      engine::PrepareJobModels(s.job_models, device);
    }));
    shared.tokenizer = s.job_models.tokenizer;  // loaded once
    Describe(s);
    spdlog::info("loaded source {}: {}px, {} MB, digest {}", entry.id, s.model.resolution(),
                 s.model.size_bytes() >> 20, s.model.digest().substr(0, 12));
    models->sources_.push_back(std::move(s));
  }
  return models;
}

}  // namespace restyle::worker
