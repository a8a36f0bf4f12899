// A request's JobSpec and the engine's JobOptions, through the engine's
// settings table (worker/engine/adapt_job/settings.h), so that the front
// checks a request with the same table, ranges and messages the worker runs
// it with. No LibTorch.
//
// The table's keys fall in three groups, and every key in exactly one:
//  * request settings: a field of restyle.v1.AdaptSettings whose path is the
//    key ("stage1.lr" is AdaptSettings.stage1.lr), typed by the key's kind
//    (integer: int64, real: double, bool, text: string, pair: repeated
//    double of two, enum: a proto enum whose value names are the choices);
//  * job keys, fields of JobSpec: method, source_class (source_text),
//    target_class (target_text);
//  * the worker's keys (WorkerSettingKeys): how and where one machine runs a
//    job (device, precision, formulation, resume, label).
// tests/common/job_spec_test.cc proves the partition and the ranges.
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_COMMON_JOB_SPEC_H_
#define RESTYLE_COMMON_JOB_SPEC_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "restyle/v1/job.pb.h"
#include "restyle/v1/settings.pb.h"
#include "worker/engine/adapt_job/job_options.h"

namespace restyle::engine {
class Tokenizer;
struct JobSetting;
}  // namespace restyle::engine

namespace restyle {

// The table keys a request cannot set.
const std::vector<std::string>& WorkerSettingKeys();

// The table's job keys and their JobSpec fields: {"method", "method"},
// {"source_class", "source_text"}, {"target_class", "target_text"}.
const std::vector<std::pair<std::string, std::string>>& SpecSettingFields();

// The engine options of `spec`: the paper's defaults, then the spec's
// method, texts and seed, then its settings. Every setting's range is
// checked. INVALID_ARGUMENT (reason INVALID_FIELD, metadata "field") names
// the field as `field_prefix` + its path ("spec.settings.stage1.lr must be >
// 0, got -1"). The source generator, the worker's keys and checks that need
// the model are not this function's.
absl::StatusOr<engine::JobOptions> JobOptionsFromSpec(const v1::JobSpec& spec,
                                                      absl::string_view field_prefix = "spec");

// Every text the job will tokenize fits CLIP's 77 positions (the engine's
// own check, worker/engine/adapt/job_texts.h): INVALID_ARGUMENT (reason
// INVALID_FIELD) naming the field whose text is too long (the target text,
// the source text or spec.settings.stage1.ctx_init) and its token count.
absl::Status CheckSpecTexts(const engine::Tokenizer& tokenizer, const engine::JobOptions& options,
                            absl::string_view field_prefix = "spec");

// Every request setting's value in `options`, defaults included.
v1::AdaptSettings EffectiveSettings(const engine::JobOptions& options);

// Sets request setting `key` ("stage1.lr") of `settings` from the table's
// text form ("0.02", "true", "0.5,0.9", "stored"), parsed by the table's
// kind (ranges are checked when the job is created). INVALID_ARGUMENT
// naming the key for a value of the wrong kind, or a key that is not a
// request setting.
absl::Status SetAdaptSetting(v1::AdaptSettings& settings, const std::string& key,
                             const std::string& text);

// The table's settings a request sets in AdaptSettings (not the JobSpec
// fields, not the worker's), in the table's order.
std::vector<const engine::JobSetting*> RequestSettings();

// "random" for NOISE_MODE_RANDOM: a proto enum value as a table choice (the
// name without the enum's prefix, lower case, '_' as '-'); "" for the zero
// value.
std::string ChoiceOfEnumValue(const google::protobuf::EnumValueDescriptor& value);

}  // namespace restyle

#endif  // RESTYLE_COMMON_JOB_SPEC_H_
