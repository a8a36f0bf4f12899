// `restyled --check`: the front's data directory against its database, for
// after a crash, a restore or a disk incident, and for the fault tests.
//   - every artifact record has its file, of the recorded size and sha256;
//   - every SUCCEEDED job (its generator not deleted) has the generator
//     delta and the result record of the attempt that succeeded, and
//     exactly one SUCCEEDED event;
//   - temporary files of uploads a crash cut short (`*.tmp-*`) are counted:
//     they are no artifact and nothing refers to them.
// Read only; safe while restyled runs (SQLite's WAL).
#ifndef RESTYLE_SERVER_DATA_CHECK_H_
#define RESTYLE_SERVER_DATA_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/artifact_store.h"
#include "server/job_store.h"

namespace restyle::server {

struct DataCheckReport {
  int64_t jobs = 0;
  int64_t succeeded = 0;
  int64_t artifacts = 0;
  int64_t bytes = 0;
  int64_t leftover_temporaries = 0;
  // One line each, naming the job or artifact; empty when all is well.
  std::vector<std::string> problems;
};

absl::StatusOr<DataCheckReport> CheckDataDir(JobStore& store, const std::string& artifact_root);

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_DATA_CHECK_H_
