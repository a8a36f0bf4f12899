// A worker's model directory: the manifest's rules (safetensors only, with
// the converter to run for a pickled checkpoint; unknown keys refused), and
// loading what it names.
#include "worker/models.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/status.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/stylegan2/generator.h"
#include "worker/manifest.h"

namespace restyle::worker {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/models_test_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ManifestTest, ModelsOfTheDemoDirectoryLoad) {
  const std::string dir = Dir("ok");
  engine::SaveGenerator(dir + "/g.safetensors", *engine::DemoGenerator());
  engine::WriteSafetensors(dir + "/clip.safetensors", engine::StateDict(*engine::DemoClip()));
  Write(dir + "/manifest.json", R"({
    "generators": [{"id": "tiny-32", "file": "g.safetensors", "source_text": "face",
                    "description": "a tiny one"}],
    "clip": [{"file": "clip.safetensors", "weight": 0.5}]})");
  absl::StatusOr<std::unique_ptr<Models>> models = Models::Load(dir, engine::JobDevice::kCpu);
  ASSERT_TRUE(models.ok()) << StatusText(models.status());
  ASSERT_EQ((*models)->sources().size(), 1u);
  const LoadedSource* s = (*models)->Source("tiny-32");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->model.resolution(), 32);
  EXPECT_EQ(s->model.latent_rows(), 8);
  EXPECT_EQ(s->model.source_text(), "face");
  EXPECT_EQ(s->model.digest(), engine::GeneratorImpl::Digest(*engine::DemoGenerator()));
  EXPECT_EQ(s->job_models.clip_weights, std::vector<double>{0.5});
  EXPECT_TRUE((*models)->can_adapt());
  EXPECT_FALSE((*models)->demo());
}

TEST(ManifestTest, PickledCheckpointsAreRefusedWithTheConverterToRun) {
  const std::string dir = Dir("pt");
  Write(dir + "/ViT-B-32.pt", "zip");
  engine::SaveGenerator(dir + "/g.safetensors", *engine::DemoGenerator());
  Write(dir + "/manifest.json", R"({"generators": [{"id": "g", "file": "g.safetensors"}],
                                    "clip": [{"file": "ViT-B-32.pt"}]})");
  absl::StatusOr<Manifest> m = ReadManifest(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(m.status()), "NOT_SAFETENSORS");
  EXPECT_NE(m.status().message().find("tools/convert_clip.py"), absl::string_view::npos)
      << m.status().message();
  Write(dir + "/manifest.json", R"({"generators": [{"id": "g", "file": "ffhq.pkl"}]})");
  m = ReadManifest(dir);
  EXPECT_NE(m.status().message().find("tools/convert_stylegan2.py"), absl::string_view::npos)
      << m.status().message();
}

TEST(ManifestTest, MistakesAreNamed) {
  const std::string dir = Dir("bad");
  EXPECT_EQ(ReadManifest(dir).status().code(), absl::StatusCode::kNotFound);
  engine::SaveGenerator(dir + "/g.safetensors", *engine::DemoGenerator());
  const std::pair<std::string, std::string> cases[] = {
      {"{", "not valid JSON"},
      {R"({"generators": []})", "at least one"},
      {R"({"generators": [{"id": "g", "file": "g.safetensors", "resolution": 32}]})",
       "unknown key \"resolution\""},
      {R"({"generators": [{"id": "bad id", "file": "g.safetensors"}]})", "id \"bad id\""},
      {R"({"generators": [{"id": "g", "file": "missing.safetensors"}]})", "does not exist"},
      {R"({"generators": [{"id": "g", "file": "g.safetensors"}, {"id": "g", "file": "g.safetensors"}]})",
       "appears twice"},
      {R"({"generators": [{"id": "g", "file": "g.safetensors"}], "clip": [{"file": "g.safetensors", "weight": 0}]})",
       "weight"},
  };
  for (const auto& [manifest, says] : cases) {
    Write(dir + "/manifest.json", manifest);
    absl::StatusOr<Manifest> m = ReadManifest(dir);
    ASSERT_FALSE(m.ok()) << manifest;
    EXPECT_NE(m.status().message().find(says), absl::string_view::npos)
        << manifest << ": " << m.status().message();
  }
}

}  // namespace
}  // namespace restyle::worker
