// absl::Time and absl::Duration to and from google.protobuf.Timestamp and
// Duration (millisecond-exact both ways).
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_COMMON_TIME_H_
#define RESTYLE_COMMON_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace restyle {

google::protobuf::Timestamp ToProtoTime(absl::Time time);
absl::Time FromProtoTime(const google::protobuf::Timestamp& time);
google::protobuf::Duration ToProtoDuration(absl::Duration duration);
absl::Duration FromProtoDuration(const google::protobuf::Duration& duration);

}  // namespace restyle

#endif  // RESTYLE_COMMON_TIME_H_
