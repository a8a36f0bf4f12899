#include "common/job_spec.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "worker/engine/adapt/job_texts.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine_boundary.h"

namespace restyle {
namespace {

using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// A request setting as text of the table's form, by key.
struct SettingText {
  std::string key;
  std::string text;
};

std::string Number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// The enum's common prefix: "NOISE_MODE_" from NOISE_MODE_UNSPECIFIED.
std::string EnumPrefix(const google::protobuf::EnumDescriptor& type) {
  const std::string zero = type.value(0)->name();
  const size_t cut = zero.rfind("UNSPECIFIED");
  return cut == std::string::npos ? "" : zero.substr(0, cut);
}

// The set fields of `message` (recursively), as table keys and text.
absl::Status CollectSet(const Message& message, const std::string& prefix,
                        absl::string_view field_prefix, std::vector<SettingText>* out) {
  const Reflection& r = *message.GetReflection();
  const google::protobuf::Descriptor& d = *message.GetDescriptor();
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor& f = *d.field(i);
    const std::string key = prefix + f.name();
    if (f.is_repeated()) {
      const int n = r.FieldSize(message, &f);
      if (n == 0) continue;
      if (f.cpp_type() != FieldDescriptor::CPPTYPE_DOUBLE || n != 2) {
        return InvalidField(absl::StrCat(field_prefix, key),
                            absl::StrCat(field_prefix, key, " needs two numbers, got ", n));
      }
      out->push_back({key, Number(r.GetRepeatedDouble(message, &f, 0)) + "," +
                               Number(r.GetRepeatedDouble(message, &f, 1))});
      continue;
    }
    if (f.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (r.HasField(message, &f)) {
        RESTYLE_RETURN_IF_ERROR(
            CollectSet(r.GetMessage(message, &f), key + ".", field_prefix, out));
      }
      continue;
    }
    if (f.cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
      const EnumValueDescriptor* value = r.GetEnum(message, &f);
      if (value->number() != 0) out->push_back({key, ChoiceOfEnumValue(*value)});
      continue;
    }
    if (!r.HasField(message, &f)) continue;
    switch (f.cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT64:
        out->push_back({key, std::to_string(r.GetInt64(message, &f))});
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        out->push_back({key, Number(r.GetDouble(message, &f))});
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        out->push_back({key, r.GetBool(message, &f) ? "true" : "false"});
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        out->push_back({key, r.GetString(message, &f)});
        break;
      default:
        return absl::InternalError(absl::StrCat("settings field ", key, " has an unsupported type"));
    }
  }
  return absl::OkStatus();
}

// Sets the field at `key`'s path in `message` from the table's text form.
void SetFromText(Message& message, const std::string& key, const std::string& text) {
  const size_t dot = key.find('.');
  const Reflection& r = *message.GetReflection();
  const FieldDescriptor* f = message.GetDescriptor()->FindFieldByName(key.substr(0, dot));
  if (f == nullptr) return;
  if (dot != std::string::npos) {
    SetFromText(*r.MutableMessage(&message, f), key.substr(dot + 1), text);
    return;
  }
  if (f->is_repeated()) {
    r.ClearField(&message, f);
    const size_t comma = text.find(',');
    r.AddDouble(&message, f, std::stod(text.substr(0, comma)));
    r.AddDouble(&message, f, std::stod(text.substr(comma + 1)));
    return;
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64: r.SetInt64(&message, f, std::stoll(text)); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r.SetDouble(&message, f, std::stod(text)); break;
    case FieldDescriptor::CPPTYPE_BOOL: r.SetBool(&message, f, text == "true"); break;
    case FieldDescriptor::CPPTYPE_STRING: r.SetString(&message, f, text); break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto& type = *f->enum_type();
      for (int i = 1; i < type.value_count(); ++i) {
        if (ChoiceOfEnumValue(*type.value(i)) == text) r.SetEnum(&message, f, type.value(i));
      }
      break;
    }
    default: break;
  }
}

// The field path of a table key in a request.
std::string FieldOfKey(const std::string& key, absl::string_view field_prefix) {
  for (const auto& [table_key, field] : SpecSettingFields()) {
    if (key == table_key) return absl::StrCat(field_prefix, ".", field);
  }
  return absl::StrCat(field_prefix, ".settings.", key);
}

// An engine message about `key` ("stage1.lr must be > 0, got -1") about the
// field instead.
absl::Status SettingError(const std::string& key, const std::string& message,
                          absl::string_view field_prefix) {
  const std::string field = FieldOfKey(key, field_prefix);
  const std::string text =
      absl::StartsWith(message, key) ? field + message.substr(key.size()) : field + ": " + message;
  return InvalidField(field, text);
}

}  // namespace

const std::vector<std::string>& WorkerSettingKeys() {
  static const std::vector<std::string>* keys = new std::vector<std::string>{
      "stage2.selection_precision", "stage2.train_precision", "resume",  "label",
      "device",                     "cuda_math",              "cudnn_autotune",
      "conv_mode",                  "frozen_conv_mode",       "source_precision",
      "channels_last"};
  return *keys;
}

const std::vector<std::pair<std::string, std::string>>& SpecSettingFields() {
  static const auto* fields = new std::vector<std::pair<std::string, std::string>>{
      {"method", "method"}, {"source_class", "source_text"}, {"target_class", "target_text"}};
  return *fields;
}

std::string ChoiceOfEnumValue(const EnumValueDescriptor& value) {
  if (value.number() == 0) return "";
  const std::string prefix = EnumPrefix(*value.type());
  std::string name = value.name();
  if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
  name = absl::AsciiStrToLower(name);
  return absl::StrReplaceAll(name, {{"_", "-"}});
}

absl::StatusOr<engine::JobOptions> JobOptionsFromSpec(const v1::JobSpec& spec,
                                                      absl::string_view field_prefix) {
  std::vector<SettingText> set;
  const std::string settings_prefix = absl::StrCat(field_prefix, ".settings.");
  RESTYLE_RETURN_IF_ERROR(CollectSet(spec.settings(), "", settings_prefix, &set));
  engine::JobOptions options;
  if (spec.has_seed()) {
    if (spec.seed() < 0) {
      return InvalidField(absl::StrCat(field_prefix, ".seed"),
                          absl::StrCat(field_prefix, ".seed must be >= 0, got ", spec.seed()));
    }
    engine::SetJobSeed(options, static_cast<uint64_t>(spec.seed()));
  }
  std::vector<SettingText> job_keys = {{"target_class", spec.target_text()}};
  if (!spec.source_text().empty()) job_keys.push_back({"source_class", spec.source_text()});
  if (spec.method() != v1::METHOD_UNSPECIFIED) {
    const EnumValueDescriptor* method = v1::Method_descriptor()->FindValueByNumber(spec.method());
    if (method == nullptr) {
      return InvalidField(absl::StrCat(field_prefix, ".method"),
                          absl::StrCat(field_prefix, ".method: unknown method ", spec.method(),
                                       " (METHOD_IPL or METHOD_NADA)"));
    }
    job_keys.push_back({"method", ChoiceOfEnumValue(*method)});
  }
  for (const SettingText& s : job_keys) set.insert(set.begin(), s);
  for (const SettingText& s : set) {
    const absl::Status status =
        worker::RunTorchFree("", [&] { engine::SetJobSetting(options, s.key, s.text); });
    if (!status.ok()) return SettingError(s.key, std::string(status.message()), field_prefix);
  }
  for (const engine::JobSetting& setting : engine::JobSettings()) {
    std::string problem;
    const absl::Status status =
        worker::RunTorchFree("", [&] { problem = engine::SettingProblem(options, setting); });
    if (!status.ok()) return status;
    if (!problem.empty()) return SettingError(setting.key, problem, field_prefix);
  }
  return options;
}

absl::Status CheckSpecTexts(const engine::Tokenizer& tokenizer, const engine::JobOptions& options,
                            absl::string_view field_prefix) {
  auto check = [&](const engine::AdaptOptions& adapt) {
    return worker::RunTorchFree("", [&] { engine::CheckJobTexts(tokenizer, adapt); });
  };
  const absl::Status status = check(options.adapt);
  if (status.ok() || status.code() != absl::StatusCode::kInvalidArgument) return status;
  // Which text is too long: with both classes one word, only ctx_init can
  // be; with the source one word, the target.
  engine::AdaptOptions short_classes = options.adapt;
  short_classes.source_class = short_classes.target_class = "x";
  engine::AdaptOptions short_source = options.adapt;
  short_source.source_class = "x";
  std::string field = "settings.stage1.ctx_init";
  if (check(short_classes).ok()) field = check(short_source).ok() ? "source_text" : "target_text";
  field = absl::StrCat(field_prefix, ".", field);
  return InvalidField(field, absl::StrCat(field, ": ", status.message()));
}

std::vector<const engine::JobSetting*> RequestSettings() {
  std::vector<const engine::JobSetting*> out;
  const std::vector<std::string>& worker = WorkerSettingKeys();
  for (const engine::JobSetting& s : engine::JobSettings()) {
    const bool spec_field = std::any_of(SpecSettingFields().begin(), SpecSettingFields().end(),
                                        [&](const auto& f) { return f.first == s.key; });
    if (!spec_field && std::find(worker.begin(), worker.end(), s.key) == worker.end()) {
      out.push_back(&s);
    }
  }
  return out;
}

absl::Status SetAdaptSetting(v1::AdaptSettings& settings, const std::string& key,
                             const std::string& text) {
  const std::vector<const engine::JobSetting*> request = RequestSettings();
  const auto it = std::find_if(request.begin(), request.end(),
                               [&](const engine::JobSetting* s) { return s->key == key; });
  if (it == request.end()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a setting a request sets"));
  }
  engine::JobOptions probe;
  std::string canonical;
  RESTYLE_RETURN_IF_ERROR(worker::RunTorchFree("", [&] {
    engine::SetJobSetting(probe, key, text);
    canonical = engine::GetJobSetting(probe, **it);
  }));
  SetFromText(settings, key, canonical);
  return absl::OkStatus();
}

v1::AdaptSettings EffectiveSettings(const engine::JobOptions& options) {
  v1::AdaptSettings out;
  for (const engine::JobSetting* setting : RequestSettings()) {
    SetFromText(out, setting->key, engine::GetJobSetting(options, *setting));
  }
  return out;
}

}  // namespace restyle
