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

// A served batch holds other callers' seeds: image s must be the same,
// bit for bit, alone or in a batch of any size at any position. Checked on
// the demo generator (truncation 0.7 and 1, two formulations) and on
// config-f shapes at 64 (512 channels at 4x4 and 8x8, where LibTorch's CPU
// kernels change with the batch size).
TEST(Generate, BatchingChangesNoPixel) {
  JobGenerators demo = LoadJobGenerators(FinishedJob().out_dir, "", torch::kCPU);
  Generator official = RandomGenerator(Sg2Config::Official(64), /*seed=*/3);
  official->eval();
  struct Case {
    Generator* g;
    double truncation;
    ConvMode conv;
  };
  const std::vector<Case> cases = {{&demo.adapted, 0.7, ConvMode::kAuto},
                                   {&demo.adapted, 1.0, ConvMode::kAuto},
                                   {&demo.adapted, 0.7, ConvMode::kFusedSubpixel},
                                   {&official, 0.7, ConvMode::kAuto}};
  const std::vector<uint64_t> seeds = {7, 3, 11, 5, 2};
  for (const Case& c : cases) {
    GenerateOptions alone;
    alone.truncation = c.truncation;
    alone.conv = c.conv;
    alone.batch = 1;
    alone.truncation_latent = TruncationLatent(**c.g);
    const torch::Tensor single = GenerateImages(**c.g, seeds, alone);
    for (int64_t batch : {3, 5}) {  // a full batch, and a batch of 3 then one of 2
      GenerateOptions batched = alone;
      batched.batch = batch;
      const torch::Tensor together = GenerateImages(**c.g, seeds, batched);
      ASSERT_EQ(together.sizes(), single.sizes());
      for (size_t i = 0; i < seeds.size(); ++i) {
        EXPECT_TRUE(at::equal(together[i], single[i]))
            << "seed " << seeds[i] << " at batch " << batch << ", truncation " << c.truncation
            << ", " << ConvModeName(c.conv) << ", size " << single.size(-1) << ": max diff "
            << (together[i] - single[i]).abs().max().item<float>();
      }
    }
    // The mean latent computed in the call is the one the caller kept.
    GenerateOptions computed = alone;
    computed.truncation_latent = torch::Tensor();
    EXPECT_TRUE(at::equal(GenerateImages(**c.g, {seeds[0]}, computed)[0], single[0]));
  }
  GenerateOptions bad;
  bad.batch = 0;
  ExpectError([&] { GenerateImages(*demo.adapted, {1}, bad); }, ErrorCode::kInvalidArgument,
              "batch");
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
