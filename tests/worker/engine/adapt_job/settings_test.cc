// The settings table (settings.h): every setting round-trips through text and
// JSON, every range is enforced with a message naming the key, and settings
// files apply all or nothing.
#include "worker/engine/adapt_job/settings.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "tests/worker/engine/adapt_job/job_test_util.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

using Json = nlohmann::json;

// Throws Error(kInvalidArgument) whose message contains `part`.
template <typename F>
void ExpectInvalid(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << part;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "\"" << e.what() << "\" does not mention " << part;
  }
}

TEST(JobSettings, KeysAndFlagsAreUniqueAndDescribed) {
  std::set<std::string> keys, flags;
  for (const JobSetting& s : JobSettings()) {
    EXPECT_TRUE(keys.insert(s.key).second) << s.key;
    EXPECT_TRUE(flags.insert(s.flag).second) << s.flag;
    EXPECT_FALSE(s.help.empty()) << s.key;
    EXPECT_EQ(FindJobSetting(s.key), &s);
    EXPECT_EQ(FindJobSetting(s.flag), &s);
    EXPECT_EQ(s.kind == SettingKind::kEnum, !s.choices.empty()) << s.key;
  }
  EXPECT_EQ(FindJobSetting("stage1.learning_rate"), nullptr);
}

// The defaults with a target text: the paper's settings.
JobOptions Defaults() {
  JobOptions o;
  o.adapt.target_class = "disney";
  return o;
}

// The paper's defaults (docs/method.md) are valid (once there is a target),
// and every setting is reachable: text in, the same text out, and the change
// shows in the JSON.
TEST(JobSettings, EverySettingRoundTripsThroughText) {
  const JobOptions defaults = Defaults();
  ValidateJobOptions(defaults);
  ExpectInvalid([] { ValidateJobOptions(JobOptions{}); }, "target_class must be non-empty");
  for (const JobSetting& s : JobSettings()) {
    JobOptions o = Defaults();
    const std::string before = GetJobSetting(o, s);
    const std::string value = OtherSettingValue(s, before);
    SetJobSetting(o, s.flag, value);
    EXPECT_EQ(GetJobSetting(o, s), value) << s.key;
    EXPECT_NE(JobSettingsJson(o), JobSettingsJson(defaults)) << s.key << " does not reach JSON";
    // Only this setting changed.
    for (const JobSetting& other : JobSettings()) {
      if (&other != &s) EXPECT_EQ(GetJobSetting(o, other), GetJobSetting(defaults, other)) << s.key;
    }
  }
}

TEST(JobSettings, JsonRoundTripsEverySetting) {
  JobOptions o;
  for (const JobSetting& s : JobSettings()) SetJobSetting(o, s.key, OtherSettingValue(s, GetJobSetting(o, s)));
  JobOptions back;
  ApplyJobSettingsJson(back, JobSettingsJson(o));
  EXPECT_EQ(JobSettingsJson(back), JobSettingsJson(o));
  EXPECT_NE(JobSettingsJson(back), JobSettingsJson(JobOptions{}));
}

TEST(JobSettings, PaperDefaults) {
  const JobOptions o;
  const Json j = Json::parse(JobSettingsJson(o));
  EXPECT_EQ(j["stage1"]["batch"], 32);
  EXPECT_EQ(j["stage1"]["iterations"], 300);
  EXPECT_EQ(j["stage1"]["lr"], 0.05);
  EXPECT_EQ(j["stage1"]["ctx_init"], "a photo of a");
  EXPECT_EQ(j["stage1"]["lambda_l"], 1.0);
  EXPECT_EQ(j["stage1"]["lambda_src"], 0.0);
  EXPECT_EQ(j["stage2"]["batch"], 2);
  EXPECT_DOUBLE_EQ(j["stage2"]["lr"].get<double>(), 0.002 * 4 / 5);
  EXPECT_EQ(j["stage2"]["auto_layer_iters"], 1);
  EXPECT_EQ(j["stage2"]["auto_layer_batch"], 8);
  EXPECT_EQ(j["stage2"]["ema_decay"], 0.99);
  EXPECT_EQ(j["sample_truncation"], 0.7);
}

// Out-of-range values, each caught by validation with a message naming the
// key; every setting that has a range is covered.
TEST(JobSettings, RangesAreEnforced) {
  const std::map<std::string, std::string> bad = {
      {"source_class", ""},
      {"target_class", ""},
      {"stage1.batch", "1"},
      {"stage1.iterations", "0"},
      {"stage1.lr", "0"},
      {"stage1.betas", "0.9,1"},
      {"stage1.eps", "-1e-8"},
      {"stage1.ctx_init", ""},
      {"stage1.lambda_l", "-1"},
      {"stage1.lambda_src", "-0.5"},
      {"stage1.seed", "-1"},
      {"stage2.batch", "0"},
      {"stage2.iterations", "0"},
      {"stage2.lr", "-0.002"},
      {"stage2.betas", "-0.1,0.99"},
      {"stage2.eps", "0"},
      {"stage2.auto_layer_iters", "-1"},
      {"stage2.auto_layer_batch", "0"},
      {"stage2.auto_layer_k", "-2"},
      {"stage2.auto_layer_lr", "0"},
      {"stage2.ema_decay", "1.01"},
      {"stage2.seed", "-3"},
      {"sample_truncation", "-0.1"},
      {"mean_latent_samples", "0"},
      {"preview_every", "-1"},
      {"preview_samples", "0"},
      {"grid_samples", "0"},
      {"quality_samples", "1"},
      {"sample_seed", "-1"},
      {"max_loss_points", "0"},
  };
  for (const JobSetting& s : JobSettings()) {
    if (!s.range.empty()) EXPECT_EQ(bad.count(s.key), 1u) << s.key << " has a range no test covers";
  }
  for (const auto& [key, value] : bad) {
    JobOptions o = Defaults();
    SetJobSetting(o, key, value);  // parses: ranges are checked by validation
    const JobSetting& s = *FindJobSetting(key);
    EXPECT_EQ(SettingProblem(o, s).rfind(key + " must be " + s.range + ", got ", 0), 0u)
        << SettingProblem(o, s);
    ExpectInvalid([&] { ValidateJobOptions(o); }, key + " must be");
  }
  // Boundaries that are valid.
  JobOptions o = Defaults();
  for (const auto& [key, value] : std::map<std::string, std::string>{
           {"stage2.ema_decay", "1"}, {"stage2.betas", "0,0"}, {"stage2.auto_layer_iters", "0"},
           {"stage2.auto_layer_k", "0"}, {"preview_every", "0"}, {"stage1.lambda_src", "0"}}) {
    SetJobSetting(o, key, value);
  }
  ValidateJobOptions(o);
}

TEST(JobSettings, ValuesOfTheWrongKindAreRejected) {
  JobOptions o;
  ExpectInvalid([&] { SetJobSetting(o, "stage1.batch", "8.5"); }, "stage1.batch needs a whole number");
  ExpectInvalid([&] { SetJobSetting(o, "stage1.batch", "8x"); }, "got \"8x\"");
  ExpectInvalid([&] { SetJobSetting(o, "stage1.lr", "inf"); }, "stage1.lr needs a finite number");
  ExpectInvalid([&] { SetJobSetting(o, "stage1.lr", ""); }, "stage1.lr needs");
  ExpectInvalid([&] { SetJobSetting(o, "resume", "maybe"); }, "resume needs true or false");
  ExpectInvalid([&] { SetJobSetting(o, "stage2.betas", "0.9;0.99"); }, "two numbers");
  ExpectInvalid([&] { SetJobSetting(o, "device", "tpu"); }, "one of cpu|cuda");
  ExpectInvalid([&] { SetJobSetting(o, "conv_mode", "fused-"); }, "one of auto|fused|");
  ExpectInvalid([&] { SetJobSetting(o, "stage1_lr", "1"); }, "unknown setting \"stage1_lr\"");
  EXPECT_EQ(JobSettingsJson(o), JobSettingsJson(JobOptions{}));  // nothing changed
}

TEST(JobSettings, JsonFilesNestedFlatOrResultJson) {
  JobOptions nested, flat, text, from_result;
  ApplyJobSettingsJson(nested, R"({"stage1": {"lr": 0.02, "betas": [0.5, 0.9]},
                                  "stage2": {"auto_layer_k": 4}, "channels_last": true})");
  ApplyJobSettingsJson(flat, R"({"stage1.lr": 0.02, "stage1.betas": [0.5, 0.9],
                                "stage2.auto_layer_k": 4, "channels_last": true})");
  ApplyJobSettingsJson(text, R"({"stage1.lr": "0.02", "stage1.betas": "0.5,0.9",
                                "stage2.auto_layer_k": "4", "channels_last": "true"})");
  // A job's result.json: its "options" (with record-only keys) are used.
  ApplyJobSettingsJson(from_result, R"({"format": "restyle-adapt-result", "label": "IPL",
      "options": {"stage1": {"lr": 0.02, "betas": [0.5, 0.9]}, "stage2": {"auto_layer_k": 4},
                  "channels_last": true, "threads": 2, "demo": true}})");
  EXPECT_EQ(nested.adapt.stage1.lr, 0.02);
  EXPECT_EQ(nested.adapt.stage1.beta1, 0.5);
  EXPECT_EQ(nested.adapt.stage1.beta2, 0.9);
  EXPECT_EQ(nested.adapt.stage2.auto_layer_k, 4);
  EXPECT_TRUE(nested.adapt.channels_last);
  for (const JobOptions* o : {&flat, &text, &from_result}) {
    EXPECT_EQ(JobSettingsJson(*o), JobSettingsJson(nested));
  }
}

TEST(JobSettings, BadJsonFilesChangeNothing) {
  JobOptions o;
  const std::string before = JobSettingsJson(o);
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1": {"lr": 0.02, "lrr": 1}})"); },
                "unknown key \"stage1.lrr\"");
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1": {"lr": 0.02}, "resume": 1})"); },
                "resume needs true or false, got 1");
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1": {"batch": 2.5}})"); },
                "stage1.batch needs a whole number, got 2.5");
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1": {"betas": [0.9]}})"); },
                "stage1.betas needs two numbers");
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1": )"); }, "not valid JSON");
  ExpectInvalid([&] { ApplyJobSettingsJson(o, "[1, 2]"); }, "expected a JSON object");
  // A flag name is not a key in a file.
  ExpectInvalid([&] { ApplyJobSettingsJson(o, R"({"stage1-lr": 0.02})"); }, "unknown key");
  EXPECT_EQ(JobSettingsJson(o), before);
}

}  // namespace
}  // namespace restyle::engine
