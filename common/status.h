// Status helpers shared by the front, the worker and the CLI.
//
// Errors are absl::Status everywhere in the service. An error that a program
// may act on carries an ErrorDetail (proto/restyle/v1/error.proto) as a
// payload: a reason in UPPER_SNAKE_CASE ("QUEUE_FULL"), metadata ("field":
// "spec.target_text") and, where waiting helps, a retry delay. The RPC edge
// (grpc_status.h) sends it to clients; clients read it back from there.
//
//   return ErrorWithReason(absl::StatusCode::kResourceExhausted, "QUEUE_FULL",
//                          "the adaptation lane holds 1000 jobs; retry later",
//                          {{"lane", "adaptation"}}, absl::Seconds(30));
//   RESTYLE_ASSIGN_OR_RETURN(Job job, store.GetJob(id));
//   if (ErrorReason(status) == "LEASE_LOST") ...
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_COMMON_STATUS_H_
#define RESTYLE_COMMON_STATUS_H_

#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "restyle/v1/error.pb.h"

// Debian's Abseil (20220623) has neither macro.
#define RESTYLE_STATUS_CONCAT_INNER_(a, b) a##b
#define RESTYLE_STATUS_CONCAT_(a, b) RESTYLE_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function unless it is OK.
#define RESTYLE_RETURN_IF_ERROR(expr)                   \
  do {                                                  \
    const ::absl::Status restyle_status_ = (expr);      \
    if (!restyle_status_.ok()) return restyle_status_;  \
  } while (false)

// `lhs = *rexpr` when rexpr (an absl::StatusOr) is OK, else returns its
// status. `lhs` may declare a variable: RESTYLE_ASSIGN_OR_RETURN(Job j, Get()).
#define RESTYLE_ASSIGN_OR_RETURN(lhs, rexpr) \
  RESTYLE_ASSIGN_OR_RETURN_IMPL_(RESTYLE_STATUS_CONCAT_(restyle_statusor_, __LINE__), lhs, rexpr)
#define RESTYLE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

namespace restyle {

// The ErrorDetail domain of every Restyle error.
inline constexpr char kErrorDomain[] = "restyle.v1";

using ErrorMetadata = std::map<std::string, std::string>;

// A status with an ErrorDetail. A zero `retry_delay` means none.
absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message, const ErrorMetadata& metadata = {},
                             absl::Duration retry_delay = absl::ZeroDuration());

// INVALID_ARGUMENT, reason INVALID_FIELD, metadata {"field": field}: the
// message should name the field and say what it takes.
absl::Status InvalidField(absl::string_view field, absl::string_view message);

// The status's ErrorDetail (an empty one when it has none).
v1::ErrorDetail ErrorDetailOf(const absl::Status& status);
// `status` with `detail` as its ErrorDetail (replacing any).
absl::Status WithErrorDetail(absl::Status status, const v1::ErrorDetail& detail);
// The ErrorDetail's reason, or "" when there is none.
std::string ErrorReason(const absl::Status& status);

// A reason for a status that has none: the code's name ("NOT_FOUND").
std::string DefaultReason(absl::StatusCode code);

// For logs and people: "CODE: message (REASON)", without payload bytes.
std::string StatusText(const absl::Status& status);

// `status` with `context + ": "` before its message, keeping its payloads.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace restyle

#endif  // RESTYLE_COMMON_STATUS_H_
