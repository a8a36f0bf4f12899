// A port that answers gRPC without the Restyle API (the worker or health
// port given as --server), or answers HTTP/1.x (a metrics port), is said as
// such, with the exit code of an unreachable server; Restyle's own
// UNIMPLEMENTED (with a reason) is not.
#include "client/connection.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "client/exit_codes.h"
#include "common/status.h"

namespace restyle::client {
namespace {

std::unique_ptr<Connection> ConnectionTo(const std::string& server) {
  ConnectionOptions options;
  options.server = server;
  return *Connection::Create(options);  // no call is made
}

TEST(Explain, UnimplementedWithoutAReasonIsAnotherPort) {
  const absl::Status status = absl::UnimplementedError("");
  ASSERT_TRUE(IsWrongService(status));
  EXPECT_EQ(ExitCodeOfFailure(status), kExitUnreachable);
  const std::string m = ConnectionTo("127.0.0.1:8701")->Explain(status);
  EXPECT_TRUE(absl::StartsWith(
      m, "127.0.0.1:8701 does not serve the Restyle API (restyle.v1.RestyleService): is it the worker or "
         "health port? The API port is 8700 by default"))
      << m;
  const std::string health = ConnectionTo("127.0.0.1:8703")->Explain(status, "grpc.health.v1.Health");
  EXPECT_TRUE(absl::StartsWith(health, "127.0.0.1:8703 does not serve gRPC health checks (grpc.health.v1.Health)"))
      << health;
}

TEST(Explain, AnHttpPortIsSaidAsOne) {
  const absl::Status status = absl::UnavailableError(
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8703: Trying to connect an "
      "http1.x server");
  EXPECT_EQ(ExitCodeOfFailure(status), kExitUnreachable);
  const std::string m = ConnectionTo("127.0.0.1:8703")->Explain(status);
  EXPECT_TRUE(absl::StartsWith(m, "127.0.0.1:8703 answers HTTP/1.x, not gRPC: is it a metrics port?")) << m;
}

TEST(Explain, RestylesOwnUnimplementedKeepsItsMessage) {
  const absl::Status status = ErrorWithReason(absl::StatusCode::kUnimplemented, "NOT_SUPPORTED", "not here");
  EXPECT_FALSE(IsWrongService(status));
  EXPECT_EQ(ExitCodeOfFailure(status), kExitError);
  EXPECT_EQ(ConnectionTo("127.0.0.1:8700")->Explain(status), "unimplemented: not here");
}

TEST(ExitCodeOfFailure, ByCode) {
  EXPECT_EQ(ExitCodeOfFailure(absl::UnavailableError("Connection refused")), kExitUnreachable);
  EXPECT_EQ(ExitCodeOfFailure(absl::DeadlineExceededError("")), kExitUnreachable);
  EXPECT_EQ(ExitCodeOfFailure(absl::InvalidArgumentError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeOfFailure(absl::NotFoundError("x")), kExitError);
}

}  // namespace
}  // namespace restyle::client
