// Loading a job's generators back from its directory (checked against its
// result.json) and images by seed (generate.h).
#include "worker/engine/adapt_job/generate.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/worker/engine/adapt_job/job_test_util.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

namespace fs = std::filesystem;

// Throws Error(code).
template <typename F>
void ExpectError(F&& f, ErrorCode code, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected " << ErrorCodeName(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

constexpr double kJobTruncation = 0.55;  // not the default, so it shows

// A short NADA job on the demo models, run once per binary.
const JobResult& FinishedJob() {
  static const JobResult* result = [] {
    JobOptions o = SmallJob(FreshDir("generate"), AdaptMethod::kNada, 3);
    o.adapt.sample_truncation = kJobTruncation;
    return new JobResult(RunJob(o, DemoModels()));
  }();
  return *result;
}

TEST(Generate, ParseSeeds) {
  EXPECT_EQ(ParseSeeds("0-3,10"), (std::vector<uint64_t>{0, 1, 2, 3, 10}));
  EXPECT_EQ(ParseSeeds("7"), (std::vector<uint64_t>{7}));
  EXPECT_EQ(ParseSeeds("5,5-6,1"), (std::vector<uint64_t>{5, 5, 6, 1}));
  for (const char* bad : {"", "a", "3-1", "1,", ",1", "-1", "1-", "1.5", "0-10,x"}) {
    ExpectError([&] { ParseSeeds(bad); }, ErrorCode::kInvalidArgument, "seeds:");
  }
  ExpectError([] { ParseSeeds("0-99", 50); }, ErrorCode::kInvalidArgument, "more than 50 seeds");
  ExpectError([] { ParseSeeds("0-40,41-60", 50); }, ErrorCode::kInvalidArgument, "more than 50");
}

// The generator rebuilt from the source and the delta is the job's, bit for
// bit, and the record's label and target come with it.
TEST(Generate, LoadsTheJobsGenerator) {
  const JobResult& r = FinishedJob();
  JobGenerators g = LoadJobGenerators(r.out_dir, "", torch::kCPU);
  EXPECT_EQ(g.adapted_digest, GeneratorImpl::Digest(*r.adapted));
  EXPECT_EQ(g.adapted_digest, GeneratorImpl::Digest(*g.adapted));
  EXPECT_EQ(GeneratorImpl::Digest(*g.source), DemoModels().source_digest);
  EXPECT_NE(g.adapted_digest, DemoModels().source_digest);
  EXPECT_EQ(g.label, "NADA");
  EXPECT_EQ(g.target, "disney");
  EXPECT_EQ(g.sample_truncation, kJobTruncation);
}

// An image is a function of its seed alone: the same in any list, at any
// position; other seeds give other images; the adapted generator draws
// other pictures than its source from the same seed.
TEST(Generate, ImagesDependOnTheirSeedAlone) {
  JobGenerators g = LoadJobGenerators(FinishedJob().out_dir, "", torch::kCPU);
  const torch::Tensor images = GenerateImages(*g.adapted, {4, 1, 4});
  ASSERT_EQ(images.sizes(), (c10::IntArrayRef{3, 3, 32, 32}));
  EXPECT_TRUE(at::equal(images[0], images[2]));
  EXPECT_FALSE(at::allclose(images[0], images[1]));
  EXPECT_TRUE(at::equal(GenerateImages(*g.adapted, {1})[0], images[1]));
  EXPECT_FALSE(at::allclose(GenerateImages(*g.source, {1})[0], images[1]));
  // Truncation 0 puts every seed at the mean latent; only the noise differs.
  GenerateOptions at_mean;
  at_mean.truncation = 0;
  at_mean.noise = NoiseMode::kStored;
  const torch::Tensor mean_images = GenerateImages(*g.adapted, {2, 9}, at_mean);
  EXPECT_TRUE(at::allclose(mean_images[0], mean_images[1], 1e-5, 1e-6));
  GenerateOptions bad;
  bad.truncation = 1.5;
  ExpectError([&] { GenerateImages(*g.adapted, {1}, bad); }, ErrorCode::kInvalidArgument,
              "truncation");
}

TEST(Generate, RejectsTheWrongSourceAndDamagedRecords) {
  const JobResult& r = FinishedJob();
  // Another generator of the same shape is not the job's source.
  const std::string other = FreshDir("generate_other") + ".safetensors";
  SaveGenerator(other, *DemoGenerator(kDemoGeneratorSeed + 1));
  ExpectError([&] { LoadJobGenerators(r.out_dir, other, torch::kCPU); },
              ErrorCode::kFailedPrecondition, "is not the source");
  ExpectError([] { LoadJobGenerators(FreshDir("generate_none"), "", torch::kCPU); },
              ErrorCode::kNotFound, "result.json");
  // The parent of a job directory (--method both writes <out>/ipl, <out>/nada).
  ExpectError([&] { LoadJobGenerators(fs::path(r.out_dir).parent_path().string(), "",
                                      torch::kCPU); },
              ErrorCode::kNotFound, "the jobs are one level down: ");
  // A record whose adapted digest does not match the delta.
  const std::string damaged = FreshDir("generate_damaged");
  fs::create_directories(damaged);
  fs::copy_file(r.delta_path, fs::path(damaged) / "generator_delta.safetensors");
  std::ifstream in(r.result_path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str());
  j["adapted_digest"] = std::string(64, '0');
  std::ofstream(fs::path(damaged) / "result.json") << j.dump();
  ExpectError([&] { LoadJobGenerators(damaged, "", torch::kCPU); }, ErrorCode::kDataLoss,
              "does not give the generator");
  // A job on a file needs that file.
  j["source"]["name"] = "ffhq.safetensors";
  std::ofstream(fs::path(damaged) / "result.json") << j.dump();
  ExpectError([&] { LoadJobGenerators(damaged, "", torch::kCPU); }, ErrorCode::kInvalidArgument,
              "give that generator's file");
}

}  // namespace
}  // namespace restyle::engine
