// Unit tests of the quality report and the job files (no training).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/adapt_job/job_files.h"
#include "worker/engine/adapt_job/quality.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

TEST(Quality, PairwiseDistanceOfKnownFeatures) {
  // Identical features: distance 0. Orthogonal unit vectors: distance 1.
  EXPECT_NEAR(MeanPairwiseCosineDistance(at::ones({5, 3})), 0.0, 1e-12);
  EXPECT_NEAR(MeanPairwiseCosineDistance(at::eye(4)), 1.0, 1e-12);
  // x and -x: distance 2; scale does not matter.
  auto x = at::tensor({1.0, 2.0, 3.0}).reshape({1, 3});
  EXPECT_NEAR(MeanPairwiseCosineDistance(at::cat({x, -3 * x}, 0)), 2.0, 1e-12);
  EXPECT_EQ(MeanPairwiseCosineDistance(at::ones({1, 3})), 0.0);
}

TEST(Quality, ReportOnDemoClip) {
  ClipModel clip = DemoClip();
  at::Generator rng = at::detail::createCPUGenerator(1);
  auto images = at::rand({6, 3, 32, 32}, rng) * 2 - 1;
  QualityModel m{"demo", clip, 2.0, at::randn({64}, rng)};
  QualityReport r = MeasureQuality({m, m}, images, images, "X", "a photo of a y", 0.7);
  ASSERT_EQ(r.models.size(), 2u);
  EXPECT_NEAR(r.models[0].weight, 0.5, 1e-12);
  EXPECT_NEAR(r.source.target_similarity, r.adapted.target_similarity, 1e-9);
  EXPECT_NEAR(r.source.diversity, r.adapted.diversity, 1e-9);
  EXPECT_GT(r.source.diversity, 0.0);
  EXPECT_LE(std::abs(r.source.target_similarity), 1.0);
  EXPECT_NE(r.ToJson().find("\"target_prompt\":\"a photo of a y\""), std::string::npos);
  EXPECT_NE(SideBySide(r, r).find("diversity"), std::string::npos);
  EXPECT_THROW(MeasureQuality({}, images, images, "X", "p", 1.0), Error);
}

TEST(JobFiles, DownsampleAveragesRuns) {
  std::vector<int64_t> steps;
  EXPECT_EQ(DownsampleSeries({1, 2, 3}, 10, &steps), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(DownsampleSeries({1, 3, 5, 7}, 2, &steps), (std::vector<double>{2, 6}));
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 4}));
}

TEST(JobFiles, Stage1CheckpointRoundTrip) {
  const std::string dir = ::testing::TempDir() + "/adapt_job_ckpt";
  MakeDirectories(dir);
  const std::string path = dir + "/c.safetensors";
  std::filesystem::remove(path);
  EXPECT_FALSE(ReadStage1Checkpoint(path).has_value());
  Stage1Checkpoint c;
  c.mappers.resize(1);
  c.mappers[0]["mapping.mapping.1.weight"] = at::arange(6, at::kFloat).reshape({2, 3});
  c.rng["stage1"] = at::detail::createCPUGenerator(5).get_state();
  c.fingerprint = "{\"a\":1}";
  c.n_ctx = 4;
  c.losses["total"] = {3.0, 2.5};
  c.seconds = 1.25;
  WriteStage1Checkpoint(path, c);
  auto back = ReadStage1Checkpoint(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->fingerprint, c.fingerprint);
  EXPECT_EQ(back->n_ctx, 4);
  EXPECT_EQ(back->losses, c.losses);
  EXPECT_DOUBLE_EQ(back->seconds, 1.25);
  ASSERT_EQ(back->mappers.size(), 1u);
  EXPECT_TRUE(at::equal(back->mappers[0].at("mapping.mapping.1.weight"),
                        c.mappers[0].at("mapping.mapping.1.weight")));
  EXPECT_TRUE(at::equal(back->rng.at("stage1"), c.rng.at("stage1")));
}

// One mapper per CLIP model: each comes back under its own index (11 of
// them, so that "mapper1." and "mapper10." must not be confused).
TEST(JobFiles, Stage1CheckpointWithSeveralMappers) {
  const std::string dir = ::testing::TempDir() + "/adapt_job_ckpt_multi";
  MakeDirectories(dir);
  const std::string path = dir + "/c.safetensors";
  Stage1Checkpoint c;
  c.fingerprint = "{}";
  c.n_ctx = 4;
  for (int k = 0; k < 11; ++k) {
    TensorMap m;
    m["mapping.mapping.1.weight"] = at::full({2, 1 + k}, static_cast<float>(k));
    m["mapping.mapping.1.bias"] = at::full({2}, static_cast<float>(-k));
    c.mappers.push_back(m);
  }
  WriteStage1Checkpoint(path, c);
  auto back = ReadStage1Checkpoint(path);
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->mappers.size(), c.mappers.size());
  for (size_t k = 0; k < c.mappers.size(); ++k) {
    ASSERT_EQ(back->mappers[k].size(), 2u) << k;
    for (const auto& [name, t] : c.mappers[k]) {
      EXPECT_TRUE(at::equal(back->mappers[k].at(name), t)) << k << " " << name;
    }
  }
}

}  // namespace
}  // namespace restyle::engine
