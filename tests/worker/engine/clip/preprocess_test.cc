// CLIP preprocessing against IPL's CLIPLoss.preprocess (golden "preprocess" cases).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include "tests/golden/golden.h"
#include "worker/engine/clip/preprocess.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

using restyle::testing::CasesOfKind;
using restyle::testing::ExpectMatches;
using restyle::testing::GoldenCase;

TEST(ClipPreprocessGolden, EveryCase) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("preprocess")) {
    SCOPED_TRACE(c.name);
    const auto n_px = static_cast<int64_t>(c.Scalar("n_px"));
    const torch::Tensor input = c.Tensor("input");
    const auto& scalars = c.meta.at("scalars");
    if (scalars.contains("resized_hw")) {
      const auto [h, w] = ClipResizedSize(input.size(2), input.size(3), n_px);
      EXPECT_EQ(h, scalars.at("resized_hw")[0].get<int64_t>());
      EXPECT_EQ(w, scalars.at("resized_hw")[1].get<int64_t>());
      if (scalars.contains("crop_top_left")) {
        const auto [top, left] = ClipCropOffset(h, w, n_px);
        EXPECT_EQ(top, scalars.at("crop_top_left")[0].get<int64_t>());
        EXPECT_EQ(left, scalars.at("crop_top_left")[1].get<int64_t>());
      }
    }
    if (scalars.contains("clip_mean")) {
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(kClipMean[i], scalars.at("clip_mean")[i].get<float>());
        EXPECT_EQ(kClipStd[i], scalars.at("clip_std")[i].get<float>());
      }
    }
    torch::Tensor output;
    {
      torch::NoGradGuard no_grad;
      output = PreprocessForClip(input, n_px);
    }
    ExpectMatches(c.name, "output", output, c.Tensor("output"));

    // Differentiable: gradients reach the generator image.
    const torch::Tensor x = input.clone().requires_grad_(true);
    PreprocessForClip(x, n_px).sum().backward();
    ASSERT_TRUE(x.grad().defined());
    EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(ClipPreprocess, RoundsCropHalfToEven) {
  // Python round(): 4.5 -> 4, 5.5 -> 6, 0.5 -> 0.
  EXPECT_EQ(ClipCropOffset(73, 64, 64).first, 4);
  EXPECT_EQ(ClipCropOffset(75, 64, 64).first, 6);
  EXPECT_EQ(ClipCropOffset(65, 64, 64).first, 0);
  EXPECT_EQ(ClipResizedSize(1024, 1024, 224), (std::pair<int64_t, int64_t>(224, 224)));
  EXPECT_EQ(ClipResizedSize(40, 46, 64), (std::pair<int64_t, int64_t>(64, 73)));
}

TEST(ClipPreprocess, SameSizeIsOnlyNormalisation) {
  const torch::Tensor x = at::rand({1, 3, 8, 8}) * 2 - 1;
  const torch::Tensor y = PreprocessForClip(x, 8);
  const torch::Tensor mean = at::tensor({kClipMean[0], kClipMean[1], kClipMean[2]}).view({-1, 1, 1});
  const torch::Tensor std = at::tensor({kClipStd[0], kClipStd[1], kClipStd[2]}).view({-1, 1, 1});
  EXPECT_TRUE(at::equal(y, ((x + 1) / 2 - mean) / std));
}

TEST(ClipPreprocess, RejectsBadInputs) {
  auto expect_invalid = [](const torch::Tensor& x, int64_t n) {
    try {
      PreprocessForClip(x, n);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  };
  expect_invalid(at::zeros({3, 8, 8}), 4);
  expect_invalid(at::zeros({1, 1, 8, 8}), 4);
  expect_invalid(at::zeros({1, 3, 8, 8}, at::kByte), 4);
  expect_invalid(at::zeros({1, 3, 8, 8}), 0);
}

}  // namespace
}  // namespace restyle::engine
