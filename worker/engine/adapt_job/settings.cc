#include "worker/engine/adapt_job/settings.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "worker/engine/common/error.h"
#include "worker/engine/common/parse.h"

namespace restyle::engine {
namespace {

using Json = nlohmann::json;

// Where a setting lives in JobOptions.
template <typename T>
using Field = T& (*)(JobOptions&);

template <typename T>
const T& Read(Field<T> field, const JobOptions& o) {
  return field(const_cast<JobOptions&>(o));
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// An interval of valid reals (or integers).
struct Range {
  double lo = -kInf;
  bool lo_open = false;
  double hi = kInf;
  bool hi_open = false;

  bool Contains(double v) const {
    if (!std::isfinite(v)) return false;
    if (lo_open ? !(v > lo) : !(v >= lo)) return false;
    if (hi_open ? !(v < hi) : !(v <= hi)) return false;
    return true;
  }
  std::string Describe() const {
    if (!std::isfinite(lo) && !std::isfinite(hi)) return "";
    if (!std::isfinite(hi)) return (lo_open ? "> " : ">= ") + Number(lo);
    return std::string("in ") + (lo_open ? "(" : "[") + Number(lo) + ", " + Number(hi) +
           (hi_open ? ")" : "]");
  }
  static std::string Number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.10g", v);
    return buf;
  }
};

Range AtLeast(double lo) { return {lo, false}; }
Range Positive() { return {0, true}; }
Range Unit() { return {0, false, 1, false}; }           // [0, 1]
Range UnitHalfOpen() { return {0, false, 1, true}; }    // [0, 1)

// A setting with its accessors. Values move as JSON of the setting's kind
// (integer, number, bool, string, [a, b]).
struct Entry {
  JobSetting info;
  std::function<Json(const JobOptions&)> get;
  std::function<void(JobOptions&, const Json&)> set;
  std::function<bool(const Json&)> ok;
};

JobSetting Info(const char* key, const char* flag, SettingKind kind, const char* section,
                const char* help, std::string range = "", std::string choices = "") {
  return {key, flag, kind, std::move(choices), section, help, std::move(range)};
}

Entry Integer(const char* key, const char* flag, const char* section, const char* help,
              Field<int64_t> field, int64_t min, int64_t max = std::numeric_limits<int64_t>::max()) {
  Range range = AtLeast(static_cast<double>(min));
  if (max != std::numeric_limits<int64_t>::max()) range.hi = static_cast<double>(max);
  return {Info(key, flag, SettingKind::kInteger, section, help, range.Describe()),
          [field](const JobOptions& o) { return Json(Read(field, o)); },
          [field](JobOptions& o, const Json& v) { field(o) = v.get<int64_t>(); },
          [min, max](const Json& v) { return v.get<int64_t>() >= min && v.get<int64_t>() <= max; }};
}

// Steps of a stage, at most: a job of more would run for weeks, and is
// surely a typo (the paper's runs are 300 + 300).
constexpr int64_t kMaxIterations = 1000000;

Entry Seed(const char* key, const char* flag, const char* section, const char* help,
           Field<uint64_t> field) {
  return {Info(key, flag, SettingKind::kInteger, section, help, ">= 0"),
          [field](const JobOptions& o) { return Json(Read(field, o)); },
          [field](JobOptions& o, const Json& v) { field(o) = static_cast<uint64_t>(v.get<int64_t>()); },
          [](const Json& v) { return v.get<int64_t>() >= 0; }};
}

Entry Real(const char* key, const char* flag, const char* section, const char* help,
           Field<double> field, Range range) {
  return {Info(key, flag, SettingKind::kReal, section, help, range.Describe()),
          [field](const JobOptions& o) { return Json(Read(field, o)); },
          [field](JobOptions& o, const Json& v) { field(o) = v.get<double>(); },
          [range](const Json& v) { return range.Contains(v.get<double>()); }};
}

Entry Pair(const char* key, const char* flag, const char* section, const char* help,
           Field<double> first, Field<double> second, Range range) {
  return {Info(key, flag, SettingKind::kPair, section, help,
               range.Describe().empty() ? "" : "each " + range.Describe()),
          [first, second](const JobOptions& o) {
            return Json::array({Read(first, o), Read(second, o)});
          },
          [first, second](JobOptions& o, const Json& v) {
            first(o) = v[0].get<double>();
            second(o) = v[1].get<double>();
          },
          [range](const Json& v) {
            return range.Contains(v[0].get<double>()) && range.Contains(v[1].get<double>());
          }};
}

Entry Bool(const char* key, const char* flag, const char* section, const char* help,
           Field<bool> field) {
  return {Info(key, flag, SettingKind::kBool, section, help),
          [field](const JobOptions& o) { return Json(Read(field, o)); },
          [field](JobOptions& o, const Json& v) { field(o) = v.get<bool>(); },
          [](const Json&) { return true; }};
}

Entry Text(const char* key, const char* flag, const char* section, const char* help,
           Field<std::string> field, bool non_empty) {
  return {Info(key, flag, SettingKind::kText, section, help, non_empty ? "non-empty" : ""),
          [field](const JobOptions& o) { return Json(Read(field, o)); },
          [field](JobOptions& o, const Json& v) { field(o) = v.get<std::string>(); },
          [non_empty](const Json& v) { return !non_empty || !v.get<std::string>().empty(); }};
}

template <typename E>
Entry Enum(const char* key, const char* flag, const char* section, const char* help,
           Field<E> field, std::vector<std::pair<std::string, E>> names) {
  std::string choices;
  for (const auto& [name, value] : names) choices += (choices.empty() ? "" : "|") + name;
  return {Info(key, flag, SettingKind::kEnum, section, help, "", choices),
          [key = std::string(key), field, names](const JobOptions& o) {
            for (const auto& [name, value] : names) {
              if (value == Read(field, o)) return Json(name);
            }
            Fail(ErrorCode::kInvalidArgument, key + " has a value that cannot be named here");
          },
          [field, names](JobOptions& o, const Json& v) {
            for (const auto& [name, value] : names) {
              if (name == v.get<std::string>()) field(o) = value;
            }
          },
          [](const Json&) { return true; }};
}

std::vector<Entry> MakeEntries() {
  using C = ConvMode;
  const std::vector<std::pair<std::string, ConvMode>> conv_modes = {
      {"auto", C::kAuto},
      {"fused", C::kFused},
      {"fused-transposed", C::kFusedTransposed},
      {"fused-subpixel", C::kFusedSubpixel},
      {"reference", C::kReference}};
  const std::vector<std::pair<std::string, Precision>> precisions = {{"fp32", Precision::kFp32},
                                                                     {"bf16", Precision::kBf16}};
  std::vector<Entry> e;
  // --- the job ---------------------------------------------------------------
  e.push_back(Enum<AdaptMethod>(
      "method", "method", "job", "IPL (prompt mapper, then generator) or the NADA baseline",
      [](JobOptions& o) -> AdaptMethod& { return o.adapt.method; },
      {{"ipl", AdaptMethod::kIpl}, {"nada", AdaptMethod::kNada}}));
  e.push_back(Text("source_class", "source-text", "job",
                   "the source domain's class word, as in \"a photo of a photo\"",
                   [](JobOptions& o) -> std::string& { return o.adapt.source_class; }, true));
  e.push_back(Text("target_class", "target", "job", "the target domain, e.g. \"ukiyo-e\"",
                   [](JobOptions& o) -> std::string& { return o.adapt.target_class; }, true));
  // --- stage 1 ---------------------------------------------------------------
  e.push_back(Integer("stage1.batch", "stage1-batch", "stage 1", "latent codes per mapper step",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage1.batch; }, 2));
  e.push_back(Integer("stage1.iterations", "stage1-iters", "stage 1", "mapper steps (IPL only)",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage1.iterations; }, 1,
                      kMaxIterations));
  e.push_back(Real("stage1.lr", "stage1-lr", "stage 1", "Adam learning rate of the mapper",
                   [](JobOptions& o) -> double& { return o.adapt.stage1.lr; }, Positive()));
  e.push_back(Pair(
      "stage1.betas", "stage1-betas", "stage 1", "Adam betas of the mapper",
      [](JobOptions& o) -> double& { return o.adapt.stage1.beta1; },
      [](JobOptions& o) -> double& { return o.adapt.stage1.beta2; }, UnitHalfOpen()));
  e.push_back(Real("stage1.eps", "stage1-eps", "stage 1", "Adam epsilon of the mapper",
                   [](JobOptions& o) -> double& { return o.adapt.stage1.eps; }, Positive()));
  e.push_back(Text("stage1.ctx_init", "ctx-init", "stage 1",
                   "the prompt the mapper learns around; its word count is n_ctx",
                   [](JobOptions& o) -> std::string& { return o.adapt.stage1.ctx_init; }, true));
  e.push_back(Real("stage1.lambda_l", "lambda-l", "stage 1",
                   "weight of the domain regulariser (target and source terms)",
                   [](JobOptions& o) -> double& { return o.adapt.stage1.lambda_l; }, AtLeast(0)));
  e.push_back(Real("stage1.lambda_src", "lambda-src", "stage 1",
                   "weight of the source term inside the regulariser",
                   [](JobOptions& o) -> double& { return o.adapt.stage1.lambda_src; },
                   AtLeast(0)));
  e.push_back(Seed("stage1.seed", "stage1-seed", "stage 1", "seed of stage 1's latents and noise",
                   [](JobOptions& o) -> uint64_t& { return o.adapt.stage1.seed; }));
  // --- stage 2 ---------------------------------------------------------------
  e.push_back(Integer("stage2.batch", "stage2-batch", "stage 2", "latent codes per generator step",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage2.batch; }, 1));
  e.push_back(Integer("stage2.iterations", "stage2-iters", "stage 2", "generator steps",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage2.iterations; }, 1,
                      kMaxIterations));
  e.push_back(Real("stage2.lr", "stage2-lr", "stage 2", "Adam learning rate of the generator",
                   [](JobOptions& o) -> double& { return o.adapt.stage2.lr; }, Positive()));
  e.push_back(Pair(
      "stage2.betas", "stage2-betas", "stage 2", "Adam betas of the generator",
      [](JobOptions& o) -> double& { return o.adapt.stage2.beta1; },
      [](JobOptions& o) -> double& { return o.adapt.stage2.beta2; }, UnitHalfOpen()));
  e.push_back(Real("stage2.eps", "stage2-eps", "stage 2", "Adam epsilon of the generator",
                   [](JobOptions& o) -> double& { return o.adapt.stage2.eps; }, Positive()));
  e.push_back(Integer("stage2.auto_layer_iters", "auto-layer-iters", "stage 2",
                      "W+ steps of the layer selection before each step (0: train every layer)",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage2.auto_layer_iters; },
                      0));
  e.push_back(Integer("stage2.auto_layer_batch", "auto-layer-batch", "stage 2",
                      "latent codes per layer selection",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage2.auto_layer_batch; },
                      1));
  e.push_back(Integer("stage2.auto_layer_k", "auto-layer-k", "stage 2",
                      "layers trained per step (0: two thirds of the W+ rows, 12 at 1024)",
                      [](JobOptions& o) -> int64_t& { return o.adapt.stage2.auto_layer_k; }, 0));
  e.push_back(Real("stage2.auto_layer_lr", "auto-layer-lr", "stage 2",
                   "SGD learning rate on W+ during layer selection",
                   [](JobOptions& o) -> double& { return o.adapt.stage2.auto_layer_lr; },
                   Positive()));
  e.push_back(Real("stage2.ema_decay", "ema-decay", "stage 2",
                   "the result is the EMA generator: G_ema = d*G_ema + (1-d)*G_t",
                   [](JobOptions& o) -> double& { return o.adapt.stage2.ema_decay; }, Unit()));
  e.push_back(Bool("stage2.base_text_without_class", "base-text-without-class", "stage 2",
                   "reference quirk: the base text is ctx_init without the class word",
                   [](JobOptions& o) -> bool& { return o.adapt.stage2.base_text_without_class; }));
  e.push_back(Enum<Precision>(
      "stage2.selection_precision", "selection-precision", "stage 2",
      "layer selection on a bfloat16 copy of the generator (for CUDA)",
      [](JobOptions& o) -> Precision& { return o.selection_precision; }, precisions));
  e.push_back(Enum<Precision>(
      "stage2.train_precision", "train-precision", "stage 2",
      "the step's forward and backward on a bfloat16 copy, float32 master weights (for CUDA)",
      [](JobOptions& o) -> Precision& { return o.train_precision; }, precisions));
  e.push_back(Seed("stage2.seed", "stage2-seed", "stage 2", "seed of stage 2's latents and noise",
                   [](JobOptions& o) -> uint64_t& { return o.adapt.stage2.seed; }));
  // --- both stages -----------------------------------------------------------
  e.push_back(Enum<NoiseMode>(
      "noise", "noise", "both stages", "generator noise in training: fresh per call, or the stored buffers",
      [](JobOptions& o) -> NoiseMode& { return o.adapt.noise; },
      {{"random", NoiseMode::kRandom}, {"stored", NoiseMode::kStored}}));
  e.push_back(Bool("reproduce_torch1_zero_grad", "reproduce-torch1-zero-grad", "both stages",
                   "reference quirk: Adam keeps stepping parameters whose gradient was zeroed",
                   [](JobOptions& o) -> bool& { return o.adapt.reproduce_torch1_zero_grad; }));
  // --- samples and outputs ----------------------------------------------------
  e.push_back(Real("sample_truncation", "sample-truncation", "outputs",
                   "truncation of previews, samples and quality sets (1: none)",
                   [](JobOptions& o) -> double& { return o.adapt.sample_truncation; },
                   AtLeast(0)));
  e.push_back(Integer("mean_latent_samples", "mean-latent-samples", "outputs",
                      "latents averaged for the truncation centre",
                      [](JobOptions& o) -> int64_t& { return o.adapt.mean_latent_samples; }, 1));
  e.push_back(Integer("preview_every", "preview-every", "outputs",
                      "a preview PNG every N stage-2 steps (0: none)",
                      [](JobOptions& o) -> int64_t& { return o.preview_every; }, 0));
  e.push_back(Integer("preview_samples", "preview-samples", "outputs", "images per preview",
                      [](JobOptions& o) -> int64_t& { return o.preview_samples; }, 1));
  e.push_back(Integer("grid_samples", "grid-samples", "outputs", "columns of samples.png",
                      [](JobOptions& o) -> int64_t& { return o.grid_samples; }, 1));
  e.push_back(Integer("quality_samples", "quality-samples", "outputs",
                      "images per set in the quality report",
                      [](JobOptions& o) -> int64_t& { return o.quality_samples; }, 2));
  e.push_back(Seed("sample_seed", "sample-seed", "outputs",
                   "seed of the preview, sample and quality latents",
                   [](JobOptions& o) -> uint64_t& { return o.sample_seed; }));
  e.push_back(Integer("max_loss_points", "max-loss-points", "outputs",
                      "per-step losses in result.json, averaged down to at most N per stage",
                      [](JobOptions& o) -> int64_t& { return o.max_loss_points; }, 1));
  e.push_back(Bool("resume", "resume", "outputs",
                   "reuse a matching stage-1 checkpoint in the output directory",
                   [](JobOptions& o) -> bool& { return o.resume; }));
  e.push_back(Text("label", "label", "outputs", "the job's name in reports (\"\": the method's)",
                   [](JobOptions& o) -> std::string& { return o.label; }, false));
  // --- compute ----------------------------------------------------------------
  e.push_back(Enum<JobDevice>("device", "device", "compute", "where the job runs",
                              [](JobOptions& o) -> JobDevice& { return o.device; },
                              {{"cpu", JobDevice::kCpu}, {"cuda", JobDevice::kCuda}}));
  e.push_back(Enum<CudaMath>("cuda_math", "cuda-math", "compute",
                             "CUDA matrix arithmetic: TF32 tensor cores or plain float32",
                             [](JobOptions& o) -> CudaMath& { return o.cuda_math; },
                             {{"tf32", CudaMath::kTf32}, {"fp32", CudaMath::kFp32}}));
  e.push_back(Bool("cudnn_autotune", "cudnn-autotune", "compute",
                   "let cuDNN time its convolution algorithms (off: reproducible CUDA runs)",
                   [](JobOptions& o) -> bool& { return o.cudnn_autotune; }));
  e.push_back(Enum<ConvMode>("conv_mode", "conv-mode", "compute",
                             "formulation of the trained generator's convolutions",
                             [](JobOptions& o) -> ConvMode& { return o.adapt.conv_mode; },
                             conv_modes));
  e.push_back(Enum<ConvMode>("frozen_conv_mode", "frozen-conv-mode", "compute",
                             "formulation of generator calls without gradients",
                             [](JobOptions& o) -> ConvMode& { return o.adapt.frozen_conv_mode; },
                             conv_modes));
  e.push_back(Enum<Precision>("source_precision", "source-precision", "compute",
                              "the frozen source's images from a bfloat16 copy (for CUDA)",
                              [](JobOptions& o) -> Precision& { return o.source_precision; },
                              precisions));
  e.push_back(Bool("channels_last", "channels-last", "compute",
                   "generator activations in NHWC order (for CUDA)",
                   [](JobOptions& o) -> bool& { return o.adapt.channels_last; }));
  return e;
}

const std::vector<Entry>& Entries() {
  static const std::vector<Entry>* entries = new std::vector<Entry>(MakeEntries());
  return *entries;
}

// The entry of a setting of JobSettings() (the two lists share their order).
const Entry& EntryOf(const JobSetting& setting);

// What a value of the kind looks like, for messages.
std::string KindWanted(const JobSetting& s) {
  switch (s.kind) {
    case SettingKind::kInteger: return "a whole number";
    case SettingKind::kReal: return "a finite number";
    case SettingKind::kBool: return "true or false";
    case SettingKind::kText: return "a string";
    case SettingKind::kPair: return "two numbers \"a,b\"";
    case SettingKind::kEnum: return "one of " + s.choices;
  }
  return "";
}

[[noreturn]] void WrongKind(const JobSetting& s, const std::string& got) {
  Fail(ErrorCode::kInvalidArgument, s.key + " needs " + KindWanted(s) + ", got " + got);
}

// `text` as JSON of the setting's kind.
Json FromText(const JobSetting& s, const std::string& text) {
  const std::string quoted = "\"" + text + "\"";
  switch (s.kind) {
    case SettingKind::kInteger: {
      int64_t v = 0;
      if (!ParseInt64(text, &v)) WrongKind(s, quoted);
      return Json(v);
    }
    case SettingKind::kReal: {
      double v = 0;
      if (!ParseFiniteDouble(text, &v)) WrongKind(s, quoted);
      return Json(v);
    }
    case SettingKind::kBool:
      if (text == "true" || text == "1" || text == "yes") return Json(true);
      if (text == "false" || text == "0" || text == "no") return Json(false);
      WrongKind(s, quoted);
    case SettingKind::kPair: {
      const size_t comma = text.find(',');
      double a = 0, b = 0;
      if (comma == std::string::npos || !ParseFiniteDouble(text.substr(0, comma), &a) ||
          !ParseFiniteDouble(text.substr(comma + 1), &b)) {
        WrongKind(s, quoted);
      }
      return Json::array({a, b});
    }
    case SettingKind::kEnum: {
      std::stringstream choices(s.choices);
      for (std::string choice; std::getline(choices, choice, '|');) {
        if (choice == text) return Json(text);
      }
      WrongKind(s, quoted);
    }
    case SettingKind::kText:
      return Json(text);
  }
  WrongKind(s, quoted);
}

// A JSON value (from a settings file) as JSON of the setting's kind; strings
// are parsed as text for every kind.
Json FromJson(const JobSetting& s, const Json& v) {
  if (v.is_string()) return FromText(s, v.get<std::string>());
  switch (s.kind) {
    case SettingKind::kInteger:
      if (v.is_number_integer()) return Json(v.get<int64_t>());
      if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e18) {
          return Json(static_cast<int64_t>(d));
        }
      }
      break;
    case SettingKind::kReal:
      if (v.is_number() && std::isfinite(v.get<double>())) return Json(v.get<double>());
      break;
    case SettingKind::kBool:
      if (v.is_boolean()) return v;
      break;
    case SettingKind::kPair:
      if (v.is_array() && v.size() == 2 && v[0].is_number() && v[1].is_number()) {
        return Json::array({v[0].get<double>(), v[1].get<double>()});
      }
      break;
    case SettingKind::kEnum:
    case SettingKind::kText:
      break;
  }
  WrongKind(s, v.dump());
}

std::string ToText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) return ToText(v[0]) + "," + ToText(v[1]);
  return v.dump();
}

// Flattens nested objects into "a.b" keys; arrays and scalars are values.
void Flatten(const Json& j, const std::string& prefix,
             std::vector<std::pair<std::string, Json>>* out) {
  for (const auto& [key, value] : j.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (value.is_object()) {
      Flatten(value, path, out);
    } else {
      out->emplace_back(path, value);
    }
  }
}

}  // namespace

const std::vector<JobSetting>& JobSettings() {
  static const std::vector<JobSetting>* settings = [] {
    auto* v = new std::vector<JobSetting>;
    for (const Entry& e : Entries()) v->push_back(e.info);
    return v;
  }();
  return *settings;
}

const JobSetting* FindJobSetting(std::string_view name) {
  for (const JobSetting& s : JobSettings()) {
    if (s.key == name || s.flag == name) return &s;
  }
  return nullptr;
}

namespace {

const Entry& EntryOf(const JobSetting& setting) {
  const std::vector<JobSetting>& settings = JobSettings();
  const size_t i = static_cast<size_t>(&setting - settings.data());
  if (&setting < settings.data() || i >= settings.size()) {
    Fail(ErrorCode::kInvalidArgument, "setting \"" + setting.key + "\" is not from JobSettings()");
  }
  return Entries()[i];
}

// The entry whose key or flag is `name`; Error(kInvalidArgument) for none.
const Entry& EntryNamed(std::string_view name) {
  const JobSetting* s = FindJobSetting(name);
  if (s == nullptr) Fail(ErrorCode::kInvalidArgument, "unknown setting \"" + std::string(name) + "\"");
  return EntryOf(*s);
}

}  // namespace

std::string SettingValueName(const JobSetting& s) {
  switch (s.kind) {
    case SettingKind::kInteger: return "N";
    case SettingKind::kReal: return "X";
    case SettingKind::kBool: return "true|false";
    case SettingKind::kText: return "TEXT";
    case SettingKind::kPair: return "A,B";
    case SettingKind::kEnum: return s.choices;
  }
  return "";
}

std::string SettingHelp(const JobSetting& s) {
  static const JobOptions* defaults = new JobOptions;
  std::string value = GetJobSetting(*defaults, s);
  if (s.kind == SettingKind::kText) value = "\"" + value + "\"";
  return s.help + " [" + (s.key == "target_class" ? "required" : "default " + value) +
         (s.range.empty() ? "" : "; " + s.range) + "]";
}

void SetJobSetting(JobOptions& options, std::string_view name, const std::string& value) {
  const Entry& e = EntryNamed(name);
  e.set(options, FromText(e.info, value));
}

std::string GetJobSetting(const JobOptions& options, const JobSetting& setting) {
  return ToText(EntryOf(setting).get(options));
}

std::string SettingProblem(const JobOptions& options, const JobSetting& setting) {
  const Entry& e = EntryOf(setting);
  const Json value = e.get(options);
  if (e.ok(value)) return "";
  return setting.key + " must be " + setting.range + ", got " +
         (value.is_string() ? "\"" + ToText(value) + "\"" : ToText(value));
}

void ValidateJobOptions(const JobOptions& options) {
  for (const JobSetting& s : JobSettings()) {
    const std::string problem = SettingProblem(options, s);
    if (!problem.empty()) Fail(ErrorCode::kInvalidArgument, problem);
  }
}

std::string JobSettingsJson(const JobOptions& options, int indent) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();  // in the table's order
  for (const Entry& e : Entries()) {
    nlohmann::ordered_json* node = &j;
    const std::string& key = e.info.key;
    size_t begin = 0;
    for (size_t dot; (dot = key.find('.', begin)) != std::string::npos; begin = dot + 1) {
      node = &(*node)[key.substr(begin, dot - begin)];
    }
    (*node)[key.substr(begin)] = e.get(options);
  }
  return j.dump(indent);
}

void ApplyJobSettingsJson(JobOptions& options, const std::string& json_text) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    Fail(ErrorCode::kInvalidArgument, std::string("settings: not valid JSON: ") + e.what());
  }
  if (j.is_object() && j.value("format", "") == "restyle-adapt-result") j = j["options"];
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, "settings: expected a JSON object");
  std::vector<std::pair<std::string, Json>> values;
  Flatten(j, "", &values);
  // Apply only once everything parsed: a bad file changes nothing.
  JobOptions updated = options;
  for (const auto& [key, value] : values) {
    if (key == "threads" || key == "demo" || key == "world") continue;  // how a job ran, not a setting
    const JobSetting* setting = FindJobSetting(key);
    if (setting == nullptr || setting->key != key) {  // a flag name is not a key
      Fail(ErrorCode::kInvalidArgument, "settings: unknown key \"" + key + "\"");
    }
    const Entry& e = EntryOf(*setting);
    e.set(updated, FromJson(e.info, value));
  }
  options = std::move(updated);
}

}  // namespace restyle::engine
