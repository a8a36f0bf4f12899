#include "common/status.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/duration.pb.h"

namespace restyle {
namespace {

constexpr char kDetailUrl[] = "type.googleapis.com/restyle.v1.ErrorDetail";

}  // namespace

absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message, const ErrorMetadata& metadata,
                             absl::Duration retry_delay) {
  v1::ErrorDetail detail;
  detail.set_reason(std::string(reason));
  detail.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) (*detail.mutable_metadata())[key] = value;
  if (retry_delay > absl::ZeroDuration()) {
    const int64_t ms = absl::ToInt64Milliseconds(retry_delay);
    detail.mutable_retry_delay()->set_seconds(ms / 1000);
    detail.mutable_retry_delay()->set_nanos(static_cast<int32_t>((ms % 1000) * 1000000));
  }
  return WithErrorDetail(absl::Status(code, message), detail);
}

absl::Status InvalidField(absl::string_view field, absl::string_view message) {
  return ErrorWithReason(absl::StatusCode::kInvalidArgument, "INVALID_FIELD", message,
                         {{"field", std::string(field)}});
}

v1::ErrorDetail ErrorDetailOf(const absl::Status& status) {
  v1::ErrorDetail detail;
  if (auto payload = status.GetPayload(kDetailUrl)) {
    detail.ParseFromString(std::string(*payload));
  }
  return detail;
}

absl::Status WithErrorDetail(absl::Status status, const v1::ErrorDetail& detail) {
  if (status.ok()) return status;
  status.SetPayload(kDetailUrl, absl::Cord(detail.SerializeAsString()));
  return status;
}

std::string ErrorReason(const absl::Status& status) { return ErrorDetailOf(status).reason(); }

std::string DefaultReason(absl::StatusCode code) { return absl::StatusCodeToString(code); }

std::string StatusText(const absl::Status& status) {
  if (status.ok()) return "OK";
  const std::string reason = ErrorReason(status);
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message(),
                      reason.empty() ? "" : absl::StrCat(" (", reason, ")"));
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace restyle
