// A job's settings by name: every field of JobOptions that a person or a
// tool chooses, with its type, its valid range and a line of help, in one
// table. restyle-train's flags, its --help and --dry-run, settings files
// (--config, which also takes a job's result.json) and result.json's
// "options" record are all made from this table, so they cannot drift apart.
//
//   JobOptions o;
//   SetJobSetting(o, "stage1.lr", "0.02");          // by key ...
//   SetJobSetting(o, "lambda-src", "1");            // ... or by flag name
//   ApplyJobSettingsJson(o, R"({"stage2": {"ema_decay": 0.995}})");
//   ValidateJobOptions(o);                          // every range, one message
//   std::string json = JobSettingsJson(o);          // nested by key
//
// Keys are the paths in result.json's "options" ("stage1.lr" is
// options.stage1.lr). Values given as text are parsed by the setting's kind:
//   integer  a whole decimal number          real  a finite decimal number
//   bool     true|false (also 1|0, yes|no)   text  any string
//   pair     two reals "a,b" (Adam's betas)  enum  one of the listed words
// Errors are Error(kInvalidArgument) naming the key, what it takes and what
// it got, e.g. `stage1.lr must be > 0, got -1`.
//
// Thread-safety: the table is immutable; the functions touch only their
// arguments.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_SETTINGS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_SETTINGS_H_

#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/adapt_job/job_options.h"

namespace restyle::engine {

enum class SettingKind { kInteger, kReal, kBool, kText, kPair, kEnum };

struct JobSetting {
  std::string key;      // "stage1.lr"
  std::string flag;     // "stage1-lr" (restyle-train's flag, without "--")
  SettingKind kind;
  std::string choices;  // kEnum: "ipl|nada"; otherwise ""
  std::string section;  // "job", "stage 1", "stage 2", "both stages",
                        // "outputs", "compute"
  std::string help;     // one line: what it does (and what 0 means, if special)
  std::string range;    // what valid values are ("> 0", "in [0, 1]"), "" = any
};

// Every setting, in the order --help lists them.
const std::vector<JobSetting>& JobSettings();

// The setting whose key or flag is `name` ("stage1.lr" or "stage1-lr"), or
// nullptr.
const JobSetting* FindJobSetting(std::string_view name);

// The kind's placeholder for help texts: "N", "X", "true|false", "TEXT",
// "A,B" or the enum's choices.
std::string SettingValueName(const JobSetting& setting);

// The setting's help for command lines: its line of help, then "[default
// V; range]" with the paper's default ("[required]" for the target).
std::string SettingHelp(const JobSetting& setting);

// Parses `value` by the setting's kind and stores it in `options`. Throws
// Error(kInvalidArgument) for an unknown name or a value of the wrong kind
// (ranges are ValidateJobOptions' business, so that settings can be given in
// any order).
void SetJobSetting(JobOptions& options, std::string_view name, const std::string& value);

// The setting's current value as text (the form SetJobSetting parses).
std::string GetJobSetting(const JobOptions& options, const JobSetting& setting);

// "" when the setting's value is in range, else the problem:
// "stage1.lr must be > 0, got -1".
std::string SettingProblem(const JobOptions& options, const JobSetting& setting);

// Throws Error(kInvalidArgument) with the first setting out of range. Checks
// what needs no model; RunJob adds the checks that need one (e.g. that
// stage2.auto_layer_k fits the generator).
void ValidateJobOptions(const JobOptions& options);

// Every setting as JSON text, nested by key ({"stage1": {"lr": 0.05, ...}}),
// indented by `indent` spaces (-1: one line).
std::string JobSettingsJson(const JobOptions& options, int indent = 2);

// Applies a JSON object of settings, nested ({"stage1": {"lr": 0.05}}) or
// flat ({"stage1.lr": 0.05}); values as JSON numbers/bools/strings/arrays or
// as text. A job's whole result.json is accepted too (its "options" are
// used), so a job can be run again with the settings it ran with; keys that
// only record how it ran ("threads", "demo") are skipped. Throws
// Error(kInvalidArgument) for malformed JSON, unknown keys or bad values.
void ApplyJobSettingsJson(JobOptions& options, const std::string& json_text);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_SETTINGS_H_
