// End-to-end tests of the adaptation job runner on the embedded tiny models:
// both stages on the CPU, losses going down, cancellation within one step,
// resuming after stage 1, bitwise reproducibility and the files written.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "tests/worker/engine/adapt_job/job_test_util.h"
#include "worker/engine/adapt_job/job.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/threads.h"

namespace restyle::engine {
namespace {

namespace fs = std::filesystem;

double Mean(const std::vector<double>& v, size_t begin, size_t end) {
  return std::accumulate(v.begin() + begin, v.begin() + end, 0.0) / double(end - begin);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

void ExpectSaneQuality(const QualityReport& q) {
  for (const ImageSetScore& s : {q.source, q.adapted}) {
    EXPECT_TRUE(std::isfinite(s.target_similarity));
    EXPECT_LE(std::abs(s.target_similarity), 1.0 + 1e-6);
    EXPECT_GT(s.diversity, 0.0);  // distinct latents give distinct images
    EXPECT_LE(s.diversity, 2.0 + 1e-6);
  }
}

// Both stages train: the mean loss of the last steps is below that of the
// first steps, in each stage; every output file is written and sane.
TEST(AdaptJob, IplLossesGoDownAndFilesAreWritten) {
  const std::string dir = FreshDir("ipl");
  JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 40);
  o.preview_every = 20;
  int stage1_reports = 0, stage2_reports = 0;
  JobCallbacks cb;
  cb.on_progress = [&](const JobProgress& p) {
    (p.stage == 1 ? stage1_reports : stage2_reports)++;
    EXPECT_EQ(p.label, "IPL");
    EXPECT_GE(p.images_per_second, 0.0);
    EXPECT_GE(p.eta_seconds, 0.0);
    EXPECT_FALSE(p.losses.empty());
  };
  JobResult r = RunJob(o, DemoModels(), cb);
  EXPECT_EQ(stage1_reports, 40);
  EXPECT_EQ(stage2_reports, 40);
  ASSERT_EQ(r.stage1_losses.size(), 40u);
  ASSERT_EQ(r.stage2_losses.size(), 40u);
  for (double l : r.stage1_losses) EXPECT_TRUE(std::isfinite(l));
  for (double l : r.stage2_losses) EXPECT_TRUE(std::isfinite(l));
  const double s1_first = Mean(r.stage1_losses, 0, 8), s1_last = Mean(r.stage1_losses, 32, 40);
  const double s2_first = Mean(r.stage2_losses, 0, 8), s2_last = Mean(r.stage2_losses, 32, 40);
  std::printf("stage 1 loss %.4f -> %.4f, stage 2 loss %.4f -> %.4f\n", s1_first, s1_last,
              s2_first, s2_last);
  EXPECT_LT(s1_last, s1_first);
  EXPECT_LT(s2_last, s2_first);
  EXPECT_FALSE(r.stage1_resumed);

  for (const std::string& f : {r.delta_path, r.mapper_path, r.samples_path, r.quality_path,
                               r.result_path, dir + "/stage1_checkpoint.safetensors"}) {
    EXPECT_TRUE(fs::exists(f)) << f;
  }
  EXPECT_EQ(r.preview_paths.size(), 2u);
  ExpectSaneQuality(r.quality);
  // The adapted generator differs from the source on the same latents.
  EXPECT_GT(std::abs(r.quality.adapted.target_similarity - r.quality.source.target_similarity) +
                std::abs(r.quality.adapted.diversity - r.quality.source.diversity),
            0.0);

  const nlohmann::json j = ReadJson(r.result_path);
  EXPECT_EQ(j["options"]["method"], "ipl");
  EXPECT_EQ(j["seeds"]["stage1"], 7);
  EXPECT_EQ(j["seeds"]["stage2"], 8);
  EXPECT_EQ(j["source"]["digest"], DemoModels().source_digest);
  EXPECT_EQ(j["source"]["digest"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["losses"]["stage1"]["total"]["value"].size(), 40u);
  EXPECT_EQ(j["losses"]["stage2"]["loss"]["value"].size(), 40u);
  EXPECT_GT(j["timings"]["total_seconds"].get<double>(), 0.0);
  EXPECT_EQ(j["quality"]["samples"], 8);
  const nlohmann::json q = ReadJson(r.quality_path);
  EXPECT_EQ(q["target_prompt"], "a photo of a disney");
  EXPECT_NEAR(q["adapted"]["diversity"].get<double>(), r.quality.adapted.diversity, 1e-12);
}

TEST(AdaptJob, NadaAndComparison) {
  const std::string dir = FreshDir("both");
  JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 12);
  std::vector<std::string> labels;
  JobCallbacks cb;
  cb.on_progress = [&](const JobProgress& p) {
    if (labels.empty() || labels.back() != p.label) labels.push_back(p.label);
    if (p.label == "NADA") {
      EXPECT_EQ(p.stage, 2);
    }
  };
  std::vector<JobResult> rs =
      RunMethods(o, DemoModels(), {AdaptMethod::kIpl, AdaptMethod::kNada}, cb);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(labels, (std::vector<std::string>{"IPL", "NADA"}));
  EXPECT_TRUE(rs[1].mapper_path.empty());
  EXPECT_EQ(rs[1].stage1.steps, 0);
  EXPECT_EQ(rs[1].stage2_losses.size(), 12u);
  ExpectSaneQuality(rs[1].quality);
  // Same seeds: both jobs score the same source samples.
  EXPECT_DOUBLE_EQ(rs[0].quality.source.diversity, rs[1].quality.source.diversity);
  EXPECT_TRUE(fs::exists(dir + "/comparison.txt"));
  EXPECT_TRUE(fs::exists(dir + "/ipl/result.json"));
  EXPECT_TRUE(fs::exists(dir + "/nada/result.json"));
}

// Cancelling from the progress callback at step k stops the job before step
// k + 1 with Error(kCancelled), in either stage.
TEST(AdaptJob, CancelStopsWithinOneStep) {
  for (int stage : {1, 2}) {
    const std::string dir = FreshDir("cancel" + std::to_string(stage));
    JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 10);
    bool cancelled = false;
    int last_stage = 0;
    int64_t last_step = 0;
    JobCallbacks cb;
    cb.on_progress = [&](const JobProgress& p) {
      last_stage = p.stage;
      last_step = p.step;
      if (p.stage == stage && p.step == 3) cancelled = true;
    };
    cb.is_cancelled = [&] { return cancelled; };
    try {
      RunJob(o, DemoModels(), cb);
      ADD_FAILURE() << "job was not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCancelled) << e.what();
    }
    EXPECT_EQ(last_stage, stage);
    EXPECT_EQ(last_step, 3);
    EXPECT_FALSE(fs::exists(dir + "/result.json"));
  }
}

// The same seed gives the same generator bit for bit, and a job started again
// in the same directory skips stage 1 (no stage-1 progress) with the same result.
TEST(AdaptJob, ReproducibleAndResumable) {
  const std::string dir_a = FreshDir("repro_a"), dir_b = FreshDir("repro_b");
  JobResult a = RunJob(SmallJob(dir_a, AdaptMethod::kIpl, 8), DemoModels());
  JobResult b = RunJob(SmallJob(dir_b, AdaptMethod::kIpl, 8), DemoModels());
  const std::string digest = GeneratorImpl::Digest(*a.adapted);
  EXPECT_EQ(GeneratorImpl::Digest(*b.adapted), digest);
  EXPECT_EQ(a.stage1_losses, b.stage1_losses);
  EXPECT_EQ(a.stage2_losses, b.stage2_losses);

  int stage1_reports = 0, stage2_reports = 0;
  JobCallbacks cb;
  cb.on_progress = [&](const JobProgress& p) { (p.stage == 1 ? stage1_reports : stage2_reports)++; };
  JobResult c = RunJob(SmallJob(dir_a, AdaptMethod::kIpl, 8), DemoModels(), cb);
  EXPECT_TRUE(c.stage1_resumed);
  EXPECT_EQ(stage1_reports, 0);
  EXPECT_EQ(stage2_reports, 8);
  EXPECT_EQ(GeneratorImpl::Digest(*c.adapted), digest);
  EXPECT_EQ(c.stage1_losses, a.stage1_losses);  // restored from the checkpoint
  EXPECT_EQ(ReadJson(c.result_path)["stage1_resumed"], true);

  // Another seed: another generator; a changed stage-1 setting: stage 1 retrained.
  JobOptions other = SmallJob(FreshDir("repro_c"), AdaptMethod::kIpl, 8);
  SetJobSeed(other, 8);
  EXPECT_NE(GeneratorImpl::Digest(*RunJob(other, DemoModels()).adapted), digest);
  JobOptions changed = SmallJob(dir_a, AdaptMethod::kIpl, 8);
  changed.adapt.stage1.lr = 0.01;
  EXPECT_FALSE(RunJob(changed, DemoModels()).stage1_resumed);
}

// The stage-1 checkpoint is reused exactly when no setting stage 1 depends
// on changed: every "stage1.*" setting of the table, the two texts and the
// noise retrain it; settings of stage 2 and of the outputs do not.
TEST(AdaptJob, Stage1CheckpointFollowsEveryStage1Setting) {
  const std::string dir = FreshDir("fingerprint");
  const JobOptions base = SmallJob(dir, AdaptMethod::kIpl, 2);
  ASSERT_FALSE(RunJob(base, DemoModels()).stage1_resumed);
  int stage1_settings = 0;
  for (const JobSetting& s : JobSettings()) {
    const bool stage1 = s.key.rfind("stage1.", 0) == 0 || s.key == "source_class" ||
                        s.key == "target_class" || s.key == "noise";
    const bool unrelated = s.key.rfind("stage2.", 0) == 0 || s.section == "outputs";
    if (!stage1 && !unrelated) continue;
    if (s.key == "label" || s.key == "resume" || s.key == "stage2.selection_precision" ||
        s.key == "stage2.train_precision") {
      continue;  // checked elsewhere (or they change what resuming means)
    }
    SCOPED_TRACE(s.key);
    JobOptions changed = base;
    SetJobSetting(changed, s.key, OtherSettingValue(s, GetJobSetting(base, s)));
    ValidateJobOptions(changed);
    changed.out_dir = FreshDir("fingerprint_" + s.flag);
    std::filesystem::create_directories(changed.out_dir);
    std::filesystem::copy_file(dir + "/stage1_checkpoint.safetensors",
                               changed.out_dir + "/stage1_checkpoint.safetensors");
    EXPECT_EQ(RunJob(changed, DemoModels()).stage1_resumed, !stage1);
    stage1_settings += stage1;
  }
  EXPECT_GE(stage1_settings, 12);
}

// The GPU fast paths run anywhere: a bfloat16 source and channels-last
// activations train the same job to nearly the same losses (rounding, not
// another computation), are recorded in result.json, and a stage-1
// checkpoint made from float32 source images is not reused with bfloat16 ones.
TEST(AdaptJob, Bf16SourceAndChannelsLast) {
  const std::string dir_a = FreshDir("fast_a"), dir_b = FreshDir("fast_b");
  const JobResult plain = RunJob(SmallJob(dir_a, AdaptMethod::kIpl, 4), DemoModels());
  JobOptions fast = SmallJob(dir_b, AdaptMethod::kIpl, 4);
  fast.source_precision = Precision::kBf16;
  fast.adapt.channels_last = true;
  const JobResult r = RunJob(fast, DemoModels());
  ASSERT_EQ(r.stage1_losses.size(), plain.stage1_losses.size());
  // First step: the same mapper and latents; the images differ by rounding.
  EXPECT_NE(r.stage1_losses[0], plain.stage1_losses[0]);
  EXPECT_NEAR(r.stage1_losses[0], plain.stage1_losses[0],
              2e-2 * std::abs(plain.stage1_losses[0]));
  for (double l : r.stage2_losses) EXPECT_TRUE(std::isfinite(l));
  const nlohmann::json j = ReadJson(r.result_path);
  EXPECT_EQ(j["options"]["source_precision"], "bf16");
  EXPECT_EQ(j["options"]["channels_last"], true);
  EXPECT_EQ(ReadJson(plain.result_path)["options"]["source_precision"], "fp32");
  EXPECT_EQ(j["options"]["conv_mode"], "fused");
  fast.out_dir = dir_a;
  EXPECT_FALSE(RunJob(fast, DemoModels()).stage1_resumed);
}

// Layer selection on a bfloat16 copy of G_t: recorded with stage 2's settings,
// not part of the stage-1 fingerprint (the checkpoint is reused), and the
// selection's noise takes the same draws as in float32, so the first stage-2
// step (G_t is still G_s; only the choice of layers can differ) has exactly
// the float32 job's loss.
TEST(AdaptJob, Bf16LayerSelection) {
  const std::string dir = FreshDir("selection_bf16");
  const JobResult plain = RunJob(SmallJob(dir, AdaptMethod::kIpl, 4), DemoModels());
  EXPECT_EQ(ReadJson(plain.result_path)["options"]["stage2"]["selection_precision"], "fp32");
  JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 4);  // the same directory: stage 1 reused
  o.selection_precision = Precision::kBf16;
  const JobResult r = RunJob(o, DemoModels());
  EXPECT_TRUE(r.stage1_resumed);
  ASSERT_EQ(r.stage2_losses.size(), plain.stage2_losses.size());
  EXPECT_EQ(r.stage2_losses[0], plain.stage2_losses[0]);
  for (double l : r.stage2_losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_EQ(ReadJson(r.result_path)["options"]["stage2"]["selection_precision"], "bf16");
}

// The stage-2 step on a bfloat16 copy of G_t (float32 master weights):
// recorded, the stage-1 checkpoint reused, the losses finite and the first
// one near the float32 job's, the result a float32 generator that moved.
TEST(AdaptJob, Bf16Training) {
  const std::string dir = FreshDir("train_bf16");
  const JobResult plain = RunJob(SmallJob(dir, AdaptMethod::kIpl, 4), DemoModels());
  JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 4);
  o.selection_precision = Precision::kBf16;
  o.train_precision = Precision::kBf16;
  const JobResult r = RunJob(o, DemoModels());
  EXPECT_TRUE(r.stage1_resumed);
  ASSERT_EQ(r.stage2_losses.size(), plain.stage2_losses.size());
  EXPECT_NEAR(r.stage2_losses[0], plain.stage2_losses[0], 5e-2);
  for (double l : r.stage2_losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_EQ(r.adapted->parameters().front().scalar_type(), torch::kFloat32);
  EXPECT_NE(GeneratorImpl::Digest(*r.adapted), GeneratorImpl::Digest(*plain.adapted));
  const nlohmann::json j = ReadJson(r.result_path);
  EXPECT_EQ(j["options"]["stage2"]["train_precision"], "bf16");
  EXPECT_EQ(j["options"]["stage2"]["selection_precision"], "bf16");
}

// Running out of device memory is RESOURCE_EXHAUSTED with a message that
// names the part of the job and the batch sizes to lower (simulated: the
// progress callback throws LibTorch's out-of-memory error in stage 2).
TEST(AdaptJob, OutOfMemoryIsResourceExhausted) {
  JobOptions o = SmallJob(FreshDir("oom"), AdaptMethod::kIpl, 3);
  JobCallbacks cb;
  cb.on_progress = [](const JobProgress& p) {
    if (p.stage == 2) {
      throw c10::OutOfMemoryError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                                  "CUDA out of memory. Tried to allocate 2.00 GiB");
    }
  };
  try {
    RunJob(o, DemoModels(), cb);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_EQ(e.reason(), "OUT_OF_MEMORY");
    const std::string message = e.what();
    for (const char* part : {"stage 2", "Tried to allocate 2.00 GiB", "stage1.batch 8",
                             "stage2.batch 2", "stage2.auto_layer_batch 8", "stage-1 checkpoint"}) {
      EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
    }
  }
  // The CPU allocators' failures are the same error.
  cb.on_progress = [](const JobProgress&) { throw std::bad_alloc(); };
  try {
    RunJob(SmallJob(FreshDir("oom_cpu"), AdaptMethod::kNada, 3), DemoModels(), cb);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_EQ(e.reason(), "OUT_OF_MEMORY");
    EXPECT_NE(std::string(e.what()).find("out of memory on the CPU"), std::string::npos)
        << e.what();
  }
}

// A diverging job (a learning rate far too large) fails at the first step
// whose loss is not finite, naming stage, step and the setting to lower, and
// writes no result.
TEST(AdaptJob, NonFiniteLossFailsTheJob) {
  for (int stage : {1, 2}) {
    const std::string dir = FreshDir("nan" + std::to_string(stage));
    JobOptions o = SmallJob(dir, AdaptMethod::kIpl, 6);
    (stage == 1 ? o.adapt.stage1.lr : o.adapt.stage2.lr) = 1e30;
    try {
      RunJob(o, DemoModels());
      ADD_FAILURE() << "stage " << stage << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.reason(), "NON_FINITE_LOSS") << e.what();
      const std::string message = e.what();
      EXPECT_NE(message.find("stage " + std::to_string(stage) + " step "), std::string::npos)
          << message;
      EXPECT_NE(message.find("lower stage" + std::to_string(stage) + ".lr"), std::string::npos)
          << message;
    }
    EXPECT_FALSE(fs::exists(dir + "/generator_delta.safetensors"));
    EXPECT_FALSE(fs::exists(dir + "/result.json"));
  }
}

// A stage-1 checkpoint that does not parse (cut short, or not a checkpoint at
// all) is logged and stage 1 trains again, to the same generator.
TEST(AdaptJob, UnreadableStage1CheckpointRetrainsStage1) {
  const std::string dir = FreshDir("bad_checkpoint");
  const JobResult first = RunJob(SmallJob(dir, AdaptMethod::kIpl, 4), DemoModels());
  const std::string checkpoint = dir + "/stage1_checkpoint.safetensors";
  const auto size = fs::file_size(checkpoint);
  for (const std::string& damage : {std::string("truncate"), std::string("garbage")}) {
    if (damage == "truncate") {
      fs::resize_file(checkpoint, size / 2);
    } else {
      std::ofstream(checkpoint, std::ios::trunc) << "not a checkpoint";
    }
    std::vector<std::string> logs;
    JobCallbacks cb;
    cb.on_log = [&](const std::string& line) { logs.push_back(line); };
    const JobResult again = RunJob(SmallJob(dir, AdaptMethod::kIpl, 4), DemoModels(), cb);
    EXPECT_FALSE(again.stage1_resumed) << damage;
    EXPECT_EQ(GeneratorImpl::Digest(*again.adapted), GeneratorImpl::Digest(*first.adapted))
        << damage;
    bool said = false;
    for (const std::string& line : logs) said |= line.find("could not be read") != std::string::npos;
    EXPECT_TRUE(said) << damage;
    // Written anew, and good: the next run loads it.
    EXPECT_TRUE(RunJob(SmallJob(dir, AdaptMethod::kIpl, 4), DemoModels()).stage1_resumed) << damage;
  }
}

TEST(AdaptJob, RejectsBadOptions) {
  JobOptions o = SmallJob(FreshDir("bad"), AdaptMethod::kIpl, 2);
  o.adapt.target_class.clear();
  try {
    RunJob(o, DemoModels());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
  // Out of range (settings.h), and what only the models can tell.
  for (auto bad : std::vector<std::function<void(JobOptions&)>>{
           [](JobOptions& b) { b.adapt.stage2.ema_decay = 2; },
           [](JobOptions& b) { b.adapt.stage1.lr = -1; },
           [](JobOptions& b) { b.adapt.stage2.auto_layer_k = 9; }}) {  // the demo G has 8 rows
    JobOptions b = SmallJob(FreshDir("bad"), AdaptMethod::kIpl, 2);
    bad(b);
    try {
      RunJob(b, DemoModels());
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(" must be "), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(ParseMethod("gan"), Error);
  EXPECT_EQ(ParseMethod("nada"), AdaptMethod::kNada);
}

}  // namespace
}  // namespace restyle::engine
