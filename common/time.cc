#include "common/time.h"

namespace restyle {

google::protobuf::Timestamp ToProtoTime(absl::Time time) {
  google::protobuf::Timestamp out;
  const int64_t ns = absl::ToUnixNanos(time);
  out.set_seconds(ns >= 0 ? ns / 1000000000 : -((-ns + 999999999) / 1000000000));
  out.set_nanos(static_cast<int32_t>(ns - out.seconds() * 1000000000));
  return out;
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& time) {
  return absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
}

google::protobuf::Duration ToProtoDuration(absl::Duration duration) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(duration);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

}  // namespace restyle
