// How the CLI shows things to people: durations, sizes, job states, a
// progress bar, aligned tables, and `restyle get`'s descriptions; and the
// protobuf JSON form for -o json.
//
// Thread-safety: pure functions.
#ifndef RESTYLE_CLIENT_FORMAT_H_
#define RESTYLE_CLIENT_FORMAT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "restyle/v1/restyle_service.pb.h"

namespace restyle::client {

// "0.4s", "41s", "3m05s", "1h02m".
std::string HumanDuration(absl::Duration d);
// "12s ago"-style age of a timestamp, as "12s", "5m", "3h", "2d" ("" when unset).
std::string Age(const google::protobuf::Timestamp& t, absl::Time now);
// "420 KiB", "120 MiB", "1.5 GiB".
std::string FormatBytes(int64_t bytes);
// "queued", "running", "cancelling", "succeeded", "failed", "cancelled".
std::string StateName(v1::JobState state);
// "loading", "training mapper", "fine-tuning generator", "exporting".
std::string StageName(v1::JobStage stage);
// What a job is doing in a few words: "queued #3", "stage 2 120/300", "succeeded".
std::string Activity(const v1::Job& job);

// One line of a stage's progress, e.g.
// "stage 1/2 mapper     [########........]  120/300  loss 0.4120  190 img/s  ETA 12s".
// `stages` is 2 for IPL, 1 for NADA; `bar_width` 0 leaves the bar out;
// `timing` ends the line ("ETA 12s", "done in 41s"; "" nothing). A loss
// is shown when the progress has one.
std::string ProgressLine(const v1::JobProgress& progress, int stages, int bar_width,
                         const std::string& timing);

// The worker's ETA said for what it covers: "ETA 12s" in the last stage;
// in an earlier one it includes the later stages, "job ETA 28s"; "" when
// the progress has none.
std::string WorkerEta(const v1::JobProgress& progress, int stages);

// The stage's number: 1 for the mapper, `stages` for the generator.
int StageNumber(const v1::JobProgress& progress, int stages);

// A job's end for people: "jobs/x succeeded in 1m02s: generators/x
// (target similarity 0.21 -> 0.29, diversity 0.35 -> 0.31)".
std::string Outcome(const v1::Job& job);

// `restyle get` / `restyle generator`: "Key:  value" lines.
std::string DescribeJob(const v1::Job& job, absl::Time now);
std::string DescribeGenerator(const v1::Generator& generator, absl::Time now);

// The protobuf JSON mapping on one line (-o json).
std::string JsonLine(const google::protobuf::Message& message);

// What a list-like command prints with -o json: one JSON document in the
// shape of the API's List*Response, {"<key>": [item, ...]} with each item in
// the protobuf JSON mapping, the list always present (also when empty), and
// "nextPageToken" when `next_page_token` is not empty.
std::string JsonList(const std::string& key, const std::vector<std::string>& items_json,
                     const std::string& next_page_token = "");
template <typename T>
std::string JsonList(const std::string& key, const google::protobuf::RepeatedPtrField<T>& items,
                     const std::string& next_page_token = "") {
  std::vector<std::string> json;
  for (const T& item : items) json.push_back(JsonLine(item));
  return JsonList(key, json, next_page_token);
}

// Columns padded to their widest cell, two spaces apart; the first row is
// the header.
std::string Table(const std::vector<std::vector<std::string>>& rows);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_FORMAT_H_
