// The request's typed settings and the engine's settings table stay one:
// every table key is a field of AdaptSettings (same path, kind and range), a
// JobSpec field, or the worker's; every AdaptSettings field is a key. And the
// conversion both ways, with errors that name the request field.
#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine/clip/tokenizer.h"

namespace restyle {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Every leaf field of AdaptSettings by key.
void Leaves(const Descriptor& d, const std::string& prefix,
            std::map<std::string, const FieldDescriptor*>* out) {
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor* f = d.field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Leaves(*f->message_type(), prefix + f->name() + ".", out);
    } else {
      (*out)[prefix + f->name()] = f;
    }
  }
}

bool KindMatches(const engine::JobSetting& s, const FieldDescriptor& f) {
  using engine::SettingKind;
  switch (s.kind) {
    case SettingKind::kInteger:
      return !f.is_repeated() && f.type() == FieldDescriptor::TYPE_INT64 && f.has_presence();
    case SettingKind::kReal:
      return !f.is_repeated() && f.type() == FieldDescriptor::TYPE_DOUBLE && f.has_presence();
    case SettingKind::kBool:
      return !f.is_repeated() && f.type() == FieldDescriptor::TYPE_BOOL && f.has_presence();
    case SettingKind::kText:
      return !f.is_repeated() && f.type() == FieldDescriptor::TYPE_STRING && f.has_presence();
    case SettingKind::kPair:
      return f.is_repeated() && f.type() == FieldDescriptor::TYPE_DOUBLE;
    case SettingKind::kEnum: {
      if (f.type() != FieldDescriptor::TYPE_ENUM) return false;
      std::set<std::string> choices;
      for (int i = 1; i < f.enum_type()->value_count(); ++i) {
        choices.insert(ChoiceOfEnumValue(*f.enum_type()->value(i)));
      }
      std::set<std::string> table;
      size_t begin = 0;
      for (size_t bar; (bar = s.choices.find('|', begin)) != std::string::npos; begin = bar + 1) {
        table.insert(s.choices.substr(begin, bar - begin));
      }
      table.insert(s.choices.substr(begin));
      return choices == table;
    }
  }
  return false;
}

TEST(JobSpecTest, EverySettingHasItsFieldAndEveryFieldItsSetting) {
  std::map<std::string, const FieldDescriptor*> fields;
  Leaves(*v1::AdaptSettings::descriptor(), "", &fields);
  std::set<std::string> spec_keys;
  for (const auto& [key, field] : SpecSettingFields()) {
    spec_keys.insert(key);
    const FieldDescriptor* f = v1::JobSpec::descriptor()->FindFieldByName(field);
    ASSERT_NE(f, nullptr) << field;
    const engine::JobSetting* s = engine::FindJobSetting(key);
    ASSERT_NE(s, nullptr) << key;
    EXPECT_TRUE(s->kind == engine::SettingKind::kText ? f->type() == FieldDescriptor::TYPE_STRING
                                                      : KindMatches(*s, *f))
        << key;
  }
  const std::set<std::string> worker_keys(WorkerSettingKeys().begin(), WorkerSettingKeys().end());
  std::set<std::string> table_keys;
  for (const engine::JobSetting& s : engine::JobSettings()) {
    table_keys.insert(s.key);
    const int groups = int(fields.count(s.key)) + int(spec_keys.count(s.key)) +
                       int(worker_keys.count(s.key));
    EXPECT_EQ(groups, 1) << s.key << " must be exactly one of: an AdaptSettings field, a JobSpec "
                         << "field, a worker key";
    auto it = fields.find(s.key);
    if (it == fields.end()) continue;
    const FieldDescriptor& f = *it->second;
    EXPECT_TRUE(KindMatches(s, f)) << s.key << ": the field's type is not the setting's kind";
    EXPECT_EQ(f.options().GetExtension(v1::range), s.range) << s.key << ": ranges differ";
  }
  for (const auto& [key, f] : fields) {
    EXPECT_TRUE(table_keys.count(key)) << "AdaptSettings." << key << " is no setting of the table";
  }
  for (const std::string& key : worker_keys) EXPECT_TRUE(table_keys.count(key)) << key;
}

// Unset fields are the paper's defaults.
TEST(JobSpecTest, AnEmptySpecIsThePaperDefaults) {
  v1::JobSpec spec;
  spec.set_target_text("ukiyo-e");
  absl::StatusOr<engine::JobOptions> options = JobOptionsFromSpec(spec);
  ASSERT_TRUE(options.ok()) << options.status();
  engine::JobOptions defaults;
  defaults.adapt.target_class = "ukiyo-e";
  EXPECT_EQ(engine::JobSettingsJson(*options), engine::JobSettingsJson(defaults));
  // And the effective settings say every default.
  const v1::AdaptSettings effective = EffectiveSettings(*options);
  EXPECT_EQ(effective.stage1().iterations(), 300);
  EXPECT_DOUBLE_EQ(effective.stage1().lr(), 0.05);
  EXPECT_EQ(effective.stage2().betas_size(), 2);
  EXPECT_EQ(effective.noise(), v1::NOISE_MODE_RANDOM);
  EXPECT_TRUE(effective.stage2().base_text_without_class());
}

TEST(JobSpecTest, EverySettingRoundTrips) {
  v1::JobSpec spec;
  spec.set_target_text("anime painting");
  spec.set_source_text("face");
  spec.set_method(v1::METHOD_NADA);
  spec.set_seed(11);
  v1::AdaptSettings& s = *spec.mutable_settings();
  s.mutable_stage1()->set_batch(4);
  s.mutable_stage1()->set_lr(0.125);
  s.mutable_stage1()->add_betas(0.5);
  s.mutable_stage1()->add_betas(0.75);
  s.mutable_stage1()->set_ctx_init("a picture of a");
  s.mutable_stage2()->set_iterations(7);
  s.mutable_stage2()->set_ema_decay(0.5);
  s.mutable_stage2()->set_base_text_without_class(false);
  s.mutable_stage2()->set_seed(99);  // wins over spec.seed + 1
  s.set_noise(v1::NOISE_MODE_STORED);
  s.set_sample_truncation(1);
  absl::StatusOr<engine::JobOptions> o = JobOptionsFromSpec(spec);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->adapt.method, engine::AdaptMethod::kNada);
  EXPECT_EQ(o->adapt.source_class, "face");
  EXPECT_EQ(o->adapt.stage1.seed, 11u);
  EXPECT_EQ(o->adapt.stage2.seed, 99u);
  EXPECT_EQ(o->sample_seed, 13u);
  EXPECT_EQ(o->adapt.stage1.beta2, 0.75);
  EXPECT_EQ(o->adapt.noise, engine::NoiseMode::kStored);
  v1::AdaptSettings effective = EffectiveSettings(*o);
  // Everything set comes back as set; the rest are defaults.
  EXPECT_EQ(effective.stage1().batch(), 4);
  EXPECT_EQ(effective.stage1().lr(), 0.125);
  EXPECT_EQ(effective.stage1().betas(1), 0.75);
  EXPECT_EQ(effective.stage1().ctx_init(), "a picture of a");
  EXPECT_EQ(effective.stage2().iterations(), 7);
  EXPECT_FALSE(effective.stage2().base_text_without_class());
  EXPECT_EQ(effective.noise(), v1::NOISE_MODE_STORED);
  // A spec made of the effective settings gives the same options.
  v1::JobSpec again = spec;
  *again.mutable_settings() = effective;
  absl::StatusOr<engine::JobOptions> o2 = JobOptionsFromSpec(again);
  ASSERT_TRUE(o2.ok()) << o2.status();
  EXPECT_EQ(engine::JobSettingsJson(*o2), engine::JobSettingsJson(*o));
}

// Each bad value is INVALID_ARGUMENT naming the request field and the range.
TEST(JobSpecTest, BadValuesNameTheirField) {
  struct Case {
    std::function<void(v1::JobSpec&)> set;
    std::string field;
    std::string says;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage1()->set_lr(-1); },
       "spec.settings.stage1.lr", "must be > 0, got -1"},
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage2()->set_ema_decay(1.5); },
       "spec.settings.stage2.ema_decay", "must be in [0, 1], got 1.5"},
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage1()->set_batch(1); },
       "spec.settings.stage1.batch", "must be >= 2, got 1"},
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage2()->add_betas(0.5); },
       "spec.settings.stage2.betas", "needs two numbers, got 1"},
      {[](v1::JobSpec& s) {
         s.mutable_settings()->mutable_stage2()->add_betas(0.5);
         s.mutable_settings()->mutable_stage2()->add_betas(1.5);
       },
       "spec.settings.stage2.betas", "must be each in [0, 1)"},
      {[](v1::JobSpec& s) { s.mutable_settings()->set_quality_samples(1); },
       "spec.settings.quality_samples", "must be >= 2"},
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage1()->set_ctx_init(""); },
       "spec.settings.stage1.ctx_init", "must be non-empty"},
      {[](v1::JobSpec& s) { s.mutable_settings()->mutable_stage1()->set_lr(std::nan("")); },
       "spec.settings.stage1.lr", "needs a finite number"},
      {[](v1::JobSpec& s) { s.set_target_text(""); }, "spec.target_text", "must be non-empty"},
      {[](v1::JobSpec& s) { s.set_method(static_cast<v1::Method>(9)); }, "spec.method",
       "unknown method 9"},
      {[](v1::JobSpec& s) { s.mutable_settings()->set_noise(static_cast<v1::NoiseMode>(7)); },
       "spec.settings.noise", "needs one of random|stored"},
      {[](v1::JobSpec& s) { s.set_seed(-2); }, "spec.seed", "must be >= 0"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec;
    spec.set_target_text("ukiyo-e");
    c.set(spec);
    absl::StatusOr<engine::JobOptions> o = JobOptionsFromSpec(spec);
    ASSERT_FALSE(o.ok()) << c.field;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(ErrorReason(o.status()), "INVALID_FIELD") << c.field;
    EXPECT_EQ(ErrorDetailOf(o.status()).metadata().at("field"), c.field);
    const std::string message(o.status().message());
    EXPECT_EQ(message.rfind(c.field, 0), 0u) << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
  }
}

// A text CLIP cannot read whole is refused, naming the field whose text is
// too long; what fits passes.
TEST(JobSpecTest, TextsOverClipsContextNameTheirField) {
  const std::unique_ptr<engine::Tokenizer> tokenizer =
      engine::Tokenizer::FromFile(engine::DefaultVocabPath());
  std::string long_text;
  for (int i = 0; i < 75; ++i) long_text += "word ";
  struct Case {
    std::function<void(v1::JobSpec&)> set;
    std::string field;  // "" = fits
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec&) {}, ""},
      {[&](v1::JobSpec& s) { s.set_target_text(long_text); }, "spec.target_text"},
      {[&](v1::JobSpec& s) { s.set_source_text(long_text); }, "spec.source_text"},
      {[&](v1::JobSpec& s) { s.mutable_settings()->mutable_stage1()->set_ctx_init(long_text); },
       "spec.settings.stage1.ctx_init"},
      {[&](v1::JobSpec& s) {
         s.set_source_text(long_text);
         s.set_target_text(long_text);
       },
       "spec.target_text"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec;
    spec.set_target_text("ukiyo-e");
    c.set(spec);
    absl::StatusOr<engine::JobOptions> options = JobOptionsFromSpec(spec);
    ASSERT_TRUE(options.ok()) << options.status();
    const absl::Status s = CheckSpecTexts(*tokenizer, *options);
    if (c.field.empty()) {
      EXPECT_TRUE(s.ok()) << s;
      continue;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(ErrorDetailOf(s).metadata().at("field"), c.field) << s.message();
    EXPECT_NE(s.message().find("tokens, CLIP reads at most 77"), absl::string_view::npos) << s.message();
  }
}

}  // namespace
}  // namespace restyle
