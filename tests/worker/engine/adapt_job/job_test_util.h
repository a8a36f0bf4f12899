// Shared helpers of the job runner tests.
#ifndef RESTYLE_TESTS_WORKER_ENGINE_ADAPT_JOB_JOB_TEST_UTIL_H_
#define RESTYLE_TESTS_WORKER_ENGINE_ADAPT_JOB_JOB_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "worker/engine/adapt_job/job.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine/common/threads.h"

namespace restyle::engine {

// The embedded demo models, loaded once per test binary.
inline const JobModels& DemoModels() {
  static const JobModels* models = [] {
    // The tiny models run fastest on one thread (and deterministically so).
    SetThreadCount(1);
    JobOptions o;
    o.demo = true;
    return new JobModels(LoadJobModels(o));
  }();
  return *models;
}

// An empty directory <test temp dir>/adapt_job_test_<name>.
inline std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/adapt_job_test_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

// A demo job of `iters` steps per stage, small batches and sample sets.
inline JobOptions SmallJob(const std::string& out_dir, AdaptMethod method, int64_t iters) {
  JobOptions o;
  o.demo = true;
  o.out_dir = out_dir;
  o.adapt.method = method;
  o.adapt.target_class = "disney";
  o.adapt.stage1.iterations = iters;
  o.adapt.stage1.batch = 8;
  o.adapt.stage2.iterations = iters;
  o.adapt.stage2.batch = 2;
  o.adapt.mean_latent_samples = 256;
  o.preview_every = 0;
  o.quality_samples = 8;
  o.grid_samples = 4;
  SetJobSeed(o, 7);
  return o;
}

// A value of the setting's kind that differs from `current`.
inline std::string OtherSettingValue(const JobSetting& s, const std::string& current) {
  switch (s.kind) {
    case SettingKind::kInteger: return std::to_string(std::stoll(current) + 3);
    case SettingKind::kReal: return current == "0.25" ? "0.5" : "0.25";
    case SettingKind::kBool: return current == "true" ? "false" : "true";
    case SettingKind::kText: return current + " x";
    case SettingKind::kPair: return current == "0.25,0.5" ? "0.5,0.25" : "0.25,0.5";
    case SettingKind::kEnum: {
      const std::string first = s.choices.substr(0, s.choices.find('|'));
      const std::string last = s.choices.substr(s.choices.rfind('|') + 1);
      return current == first ? last : first;
    }
  }
  return "";
}

}  // namespace restyle::engine

#endif  // RESTYLE_TESTS_WORKER_ENGINE_ADAPT_JOB_JOB_TEST_UTIL_H_
