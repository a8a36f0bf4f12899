#include "worker/engine/clip/preprocess.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>
#include <string>

#include "worker/engine/common/error.h"

namespace restyle::engine {

std::pair<int64_t, int64_t> ClipResizedSize(int64_t height, int64_t width, int64_t n_px) {
  const int64_t short_side = std::min(height, width);
  const int64_t long_side = std::max(height, width);
  // Python: int(requested_new_short * long / short), float division.
  const auto new_long = static_cast<int64_t>(static_cast<double>(n_px) *
                                             static_cast<double>(long_side) /
                                             static_cast<double>(short_side));
  return width <= height ? std::make_pair(new_long, n_px) : std::make_pair(n_px, new_long);
}

std::pair<int64_t, int64_t> ClipCropOffset(int64_t height, int64_t width, int64_t n_px) {
  // std::nearbyint rounds half to even in the default rounding mode, like
  // Python's round().
  const auto top = static_cast<int64_t>(std::nearbyint((height - n_px) / 2.0));
  const auto left = static_cast<int64_t>(std::nearbyint((width - n_px) / 2.0));
  return {top, left};
}

torch::Tensor PreprocessForClip(const torch::Tensor& images, int64_t n_px) {
  CheckArgument(n_px > 0, "n_px must be positive, got " + std::to_string(n_px));
  CheckArgument(images.defined(), "images are undefined");
  std::ostringstream shape;
  shape << images.sizes();
  CheckArgument(images.dim() == 4 && images.size(1) == 3 && images.size(0) > 0 &&
                    images.size(2) > 0 && images.size(3) > 0,
                "images must have shape (N, 3, H, W), got " + shape.str());
  CheckArgument(at::isFloatingType(images.scalar_type()),
                "images must be floating point, got " +
                    std::string(c10::toString(images.scalar_type())));

  // Normalize(mean=-1, std=2) exactly as torchvision does it: sub then div.
  torch::Tensor x = images.sub(-1.0).div(2.0);

  const auto [new_h, new_w] = ClipResizedSize(x.size(2), x.size(3), n_px);
  if (new_h != x.size(2) || new_w != x.size(3)) {
    x = at::upsample_bicubic2d(x, {new_h, new_w}, /*align_corners=*/false);
  }
  CheckArgument(new_h >= n_px && new_w >= n_px, "resized image smaller than the crop");
  const auto [top, left] = ClipCropOffset(new_h, new_w, n_px);
  x = x.slice(2, top, top + n_px).slice(3, left, left + n_px);

  const auto options = x.options();
  const torch::Tensor mean =
      at::tensor(c10::ArrayRef<float>(kClipMean.data(), 3), options.dtype(at::kFloat))
          .to(x.scalar_type())
          .view({-1, 1, 1});
  const torch::Tensor std =
      at::tensor(c10::ArrayRef<float>(kClipStd.data(), 3), options.dtype(at::kFloat))
          .to(x.scalar_type())
          .view({-1, 1, 1});
  return x.sub(mean).div(std);
}

}  // namespace restyle::engine
