// The worker's cache of adapted generators: loaded from the disk cache on the
// resident source, least recently used evicted first over the budget, never
// one in use.
#include "worker/generator_cache.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/status.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/adapt_job/job.h"

namespace restyle::worker {
namespace {

namespace fs = std::filesystem;

// A finished demo job in <root>/<id> (what the worker fetches from the front).
void MakeJob(const std::string& root, const std::string& id, const engine::JobModels& models) {
  engine::JobOptions o;
  o.demo = true;
  o.out_dir = root + "/" + id;
  o.adapt.target_class = "style " + id;
  o.adapt.stage1.iterations = 1;
  o.adapt.stage1.batch = 2;
  o.adapt.stage2.iterations = 1;
  o.adapt.stage2.auto_layer_batch = 1;
  o.adapt.mean_latent_samples = 16;
  o.preview_every = 0;
  o.quality_samples = 2;
  o.grid_samples = 2;
  engine::RunJob(o, models);
}

TEST(GeneratorCacheTest, EvictsTheLeastRecentlyUsedNeverOneInUse) {
  const std::string root = ::testing::TempDir() + "/generator_cache_test";
  fs::remove_all(root);
  engine::JobOptions demo;
  demo.demo = true;
  const engine::JobModels models = engine::LoadJobModels(demo);
  for (const char* id : {"a", "b", "c"}) MakeJob(root, id, models);
  int64_t one = 0;
  for (const auto& p : models.source->parameters()) one += p.numel() * int64_t(p.element_size());

  GeneratorCache cache(/*budget_bytes=*/2 * one, root);
  const torch::Device cpu(torch::kCPU);
  auto acquire = [&](const std::string& name) {
    absl::StatusOr<engine::Generator> g = cache.Acquire(name, models.source, cpu);
    EXPECT_TRUE(g.ok()) << StatusText(g.status());
  };
  acquire("generators/a");
  cache.Release("generators/a");
  acquire("generators/b");
  cache.Release("generators/b");
  EXPECT_EQ(cache.Resident(), (std::vector<std::string>{"generators/b", "generators/a"}));
  acquire("generators/a");  // a is the most recent now, and in use
  acquire("generators/c");  // over budget: b goes (a is in use)
  EXPECT_EQ(cache.Resident(), (std::vector<std::string>{"generators/c", "generators/a"}));
  cache.Release("generators/c");
  acquire("generators/b");  // c goes, not a (in use), though a is older
  EXPECT_EQ(cache.Resident(), (std::vector<std::string>{"generators/b", "generators/a"}));
  EXPECT_LE(cache.resident_bytes(), 2 * one);
  // A pinned generator (a queued request needs it) stays when not in use,
  // and may go once unpinned; pins count, and may come before the load.
  cache.Release("generators/a");
  cache.Release("generators/b");
  cache.Pin("generators/a");
  cache.Pin("generators/a");
  cache.Pin("generators/c");
  acquire("generators/c");  // b goes: a is pinned, though older
  cache.Release("generators/c");
  EXPECT_EQ(cache.Resident(), (std::vector<std::string>{"generators/c", "generators/a"}));
  acquire("generators/b");  // over budget, but a and c are pinned and b in use
  EXPECT_EQ(cache.Resident().size(), 3u);
  cache.Unpin("generators/c");  // c goes; a is still pinned
  EXPECT_EQ(cache.Resident(), (std::vector<std::string>{"generators/b", "generators/a"}));
  cache.Release("generators/b");
  cache.Unpin("generators/a");
  cache.Unpin("generators/a");
  EXPECT_LE(cache.resident_bytes(), 2 * one);
  // A generator whose files are not there is an error, not a crash.
  absl::StatusOr<engine::Generator> missing = cache.Acquire("generators/zz", models.source, cpu);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << StatusText(missing.status());
}

}  // namespace
}  // namespace restyle::worker
