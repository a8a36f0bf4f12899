// Preprocessing of generator images into CLIP's input space.
//
// Reproduces IPL's CLIPLoss.preprocess (torchvision 0.14 tensor path):
//   (x + 1) / 2                       generator range [-1, 1] -> [0, 1]
//   resize, short side -> n_px        bicubic (A = -0.75), align_corners false,
//                                     no antialias; long side int(n_px*long/short)
//   centre crop n_px x n_px           top = round((h - n_px) / 2) with Python's
//                                     round-half-to-even, same for left
//   (x - mean) / std                  CLIP's per-channel mean and std
// Every step is a differentiable ATen op, so gradients flow to the input
// (used while training the generator). No clamping of the float output.
//
// Thread-safety: pure functions, safe to call concurrently.
#ifndef RESTYLE_WORKER_ENGINE_CLIP_PREPROCESS_H_
#define RESTYLE_WORKER_ENGINE_CLIP_PREPROCESS_H_

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <utility>

namespace restyle::engine {

// CLIP's normalisation constants (clip.clip._transform).
inline constexpr std::array<float, 3> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr std::array<float, 3> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

// Size (h, w) after torchvision Resize(n_px) of an h x w image: the short
// side becomes n_px, the long side int(n_px * long / short) (truncated).
std::pair<int64_t, int64_t> ClipResizedSize(int64_t height, int64_t width, int64_t n_px);

// Top-left corner (top, left) of torchvision CenterCrop(n_px) on an
// h x w image: int(round((h - n_px) / 2)) with round-half-to-even.
std::pair<int64_t, int64_t> ClipCropOffset(int64_t height, int64_t width, int64_t n_px);

// images: (N, 3, H, W) floating point in the generator range [-1, 1].
// Returns (N, 3, n_px, n_px) in the same dtype, ready for
// ClipModel::EncodeImage. Error(kInvalidArgument) for another rank, channel
// count, a non-float dtype, an empty image or n_px <= 0.
torch::Tensor PreprocessForClip(const torch::Tensor& images, int64_t n_px);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_CLIP_PREPROCESS_H_
