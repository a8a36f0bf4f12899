#include "worker/engine_boundary.h"

#include <gtest/gtest.h>
#include <torch/types.h>

#include <new>

#include "common/status.h"
#include "worker/engine/common/error.h"

namespace restyle::worker {
namespace {

TEST(EngineBoundaryTest, OkPassesThrough) {
  EXPECT_TRUE(RunEngine("noop", [] {}).ok());
  absl::StatusOr<int> v = CallEngine("value", [] { return 7; });
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
}

TEST(EngineBoundaryTest, EngineErrorsKeepTheirCodeAndMessage) {
  const std::pair<engine::ErrorCode, absl::StatusCode> cases[] = {
      {engine::ErrorCode::kInvalidArgument, absl::StatusCode::kInvalidArgument},
      {engine::ErrorCode::kNotFound, absl::StatusCode::kNotFound},
      {engine::ErrorCode::kDataLoss, absl::StatusCode::kDataLoss},
      {engine::ErrorCode::kFailedPrecondition, absl::StatusCode::kFailedPrecondition},
      {engine::ErrorCode::kCancelled, absl::StatusCode::kCancelled},
      {engine::ErrorCode::kUnimplemented, absl::StatusCode::kUnimplemented},
      {engine::ErrorCode::kResourceExhausted, absl::StatusCode::kResourceExhausted},
      {engine::ErrorCode::kInternal, absl::StatusCode::kInternal},
  };
  for (const auto& [in, out] : cases) {
    absl::Status s = RunEngine("loading generator g1", [in = in] { engine::Fail(in, "bad file x"); });
    EXPECT_EQ(s.code(), out) << engine::ErrorCodeName(in);
    EXPECT_EQ(s.message(), "loading generator g1: bad file x");
  }
}

TEST(EngineBoundaryTest, TorchErrorsBecomeStatuses) {
  absl::Status s = RunEngine("matmul", [] {
    torch::matmul(torch::ones({2, 3}), torch::ones({4, 5}));
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("matmul: LibTorch error"), absl::string_view::npos) << s;
  absl::Status idx = RunEngine("index", [] { torch::ones({2}).select(0, 5); });
  EXPECT_EQ(idx.code(), absl::StatusCode::kInvalidArgument) << idx;
}

TEST(EngineBoundaryTest, ReasonsBecomeErrorDetails) {
  absl::Status s = RunEngine("job", [] {
    engine::FailWithReason(engine::ErrorCode::kInternal, "NON_FINITE_LOSS", "stage 2 step 3");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrorReason(s), "NON_FINITE_LOSS");
  EXPECT_EQ(s.message(), "job: stage 2 step 3");
  // Without LibTorch, the same mapping; an empty `what` adds no prefix.
  absl::Status t = RunTorchFree("", [] {
    engine::FailWithReason(engine::ErrorCode::kInvalidArgument, "X_Y", "stage1.lr must be > 0");
  });
  EXPECT_EQ(t.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(t), "X_Y");
  EXPECT_EQ(t.message(), "stage1.lr must be > 0");
  EXPECT_EQ(ErrorReason(RunEngine("plain", [] { engine::Fail(engine::ErrorCode::kNotFound, "x"); })),
            "");
}

TEST(EngineBoundaryTest, OutOfMemoryIsResourceExhausted) {
  absl::Status s = RunEngine("alloc", [] { throw std::bad_alloc(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(s), "OUT_OF_MEMORY");
  absl::StatusOr<int> v = CallEngine("value", []() -> int { throw std::runtime_error("boom"); });
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(v.status().message(), "value: boom");
}

}  // namespace
}  // namespace restyle::worker
