#include "worker/engine/stylegan2/layers.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/fused_tail.h"

namespace restyle::engine {
namespace {

constexpr double kSqrt2 = 1.4142135623730951;

thread_local bool batch_invariant = false;

// A stride-1 convolution; through oneDNN at every shape under
// BatchInvariantGuard.
torch::Tensor Conv(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                   int64_t pad_h, int64_t pad_w, int64_t groups = 1) {
  if (BatchInvariantFor(x) && at::hasMKLDNN()) {
    return at::mkldnn_convolution(x, weight.contiguous(),
                                  bias.defined() ? c10::optional<torch::Tensor>(bias)
                                                 : c10::nullopt,
                                  {pad_h, pad_w}, {1, 1}, {1, 1}, groups);
  }
  return at::conv2d(x, weight, bias, /*stride=*/1, {pad_h, pad_w}, /*dilation=*/1, groups);
}

// x (N,in) times m (in,out); one sample at a time under BatchInvariantGuard.
torch::Tensor MatmulRows(const torch::Tensor& x, const torch::Tensor& m) {
  if (!BatchInvariantFor(x) || x.dim() != 2 || x.size(0) == 1) return at::matmul(x, m);
  std::vector<torch::Tensor> rows;
  rows.reserve(x.size(0));
  for (int64_t i = 0; i < x.size(0); ++i) rows.push_back(at::matmul(x.narrow(0, i, 1), m));
  return at::cat(rows, 0);
}

// at::linear, one sample at a time under BatchInvariantGuard.
torch::Tensor Linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias = {}) {
  if (!BatchInvariantFor(x) || x.dim() != 2 || x.size(0) == 1) return at::linear(x, weight, bias);
  std::vector<torch::Tensor> rows;
  rows.reserve(x.size(0));
  for (int64_t i = 0; i < x.size(0); ++i) rows.push_back(at::linear(x.narrow(0, i, 1), weight, bias));
  return at::cat(rows, 0);
}

// The batch-1 formulation folds style and demodulation into the weight.
bool FoldsAtBatch1(const torch::Tensor& x) { return x.size(0) == 1 && !BatchInvariantFor(x); }

std::shared_ptr<torch::nn::Module> KernelHolder(const torch::Tensor& kernel,
                                                torch::Tensor* alias) {
  auto holder = std::make_shared<torch::nn::Module>("KernelHolder");
  *alias = holder->register_buffer("kernel", kernel);
  return holder;
}

// Depthwise correlation of every channel with the flipped `kernel` after
// padding `pad` on all four sides: upfirdn2d(up 1, down 1, pad (pad,pad)).
torch::Tensor DepthwiseBlur(const torch::Tensor& x, const torch::Tensor& kernel, int64_t pad,
                            const torch::Tensor& bias = {}) {
  const int64_t c = x.size(1);
  auto k = kernel.flip({0, 1}).to(x.dtype()).view({1, 1, kernel.size(0), kernel.size(1)})
               .expand({c, 1, kernel.size(0), kernel.size(1)})
               .contiguous();
  return Conv(x, k, bias, pad, pad, /*groups=*/c);
}

// The taps of a stride-2 transposed convolution that land on output phase
// `phase` (0: even, 1: odd positions) along one dimension of a kernel of
// size k: T[2i+phase] = sum_m x[i-m] w[phase+2m], i.e. correlating x (padded
// by taps-1 on both sides) with w[phase::2] reversed, which is the slice
// [k-1-phase-2(taps-1)::2] of the kernel flipped once.
int64_t PhaseTapCount(int64_t k, int64_t phase) { return (k - phase + 1) / 2; }
int64_t PhaseTapStart(int64_t k, int64_t phase) {
  return k - 1 - phase - 2 * (PhaseTapCount(k, phase) - 1);
}

// The positions of output phase (row_phase, col_phase) of an (N,C,H,W)
// tensor: every second row from row_phase, every second column from
// col_phase (a view, for writing a phase in place).
torch::Tensor PhaseOf(const torch::Tensor& y, int64_t row_phase, int64_t col_phase) {
  using torch::indexing::Slice;
  return y.index({Slice(), Slice(), Slice(row_phase, c10::nullopt, 2),
                  Slice(col_phase, c10::nullopt, 2)});
}

}  // namespace

torch::Tensor ConvTransposeStride2(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& bias, int64_t groups) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const int64_t out = weight.size(0), k = weight.size(2);
  CheckArgument(weight.size(3) == k && k >= 2, "ConvTransposeStride2: square kernel >= 2 expected");
  const int64_t oh = 2 * (h - 1) + k, ow = 2 * (w - 1) + k;
  auto y = at::empty({n, out, oh, ow}, x.options().memory_format(x.suggest_memory_format()));
  using torch::indexing::Slice;
  const auto flipped = weight.flip({2, 3});
  for (int64_t a = 0; a < 2; ++a) {
    const int64_t pad_h = PhaseTapCount(k, a) - 1;
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t pad_w = PhaseTapCount(k, b) - 1;
      auto taps = flipped
                      .index({Slice(), Slice(), Slice(PhaseTapStart(k, a), c10::nullopt, 2),
                              Slice(PhaseTapStart(k, b), c10::nullopt, 2)})
                      .contiguous();
      PhaseOf(y, a, b).copy_(Conv(x, taps, bias, pad_h, pad_w, groups));
    }
  }
  return y;
}

torch::Tensor SubpixelWeight(const torch::Tensor& weight, const torch::Tensor& blur_kernel) {
  using torch::indexing::Slice;
  const int64_t out = weight.size(0), in = weight.size(1);
  CheckArgument(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
                    blur_kernel.dim() == 2 && blur_kernel.size(0) == 4 && blur_kernel.size(1) == 4,
                "SubpixelWeight: a 3x3 weight and a 4x4 blur kernel expected");
  // The transposed convolution puts w[t] at output 2m + t (t in 0..2); the
  // blur (padding 1) reads positions u-1..u+2 with the flipped kernel fk, so
  // output u = 2m + t' - 2 gets x[m] * K[t'] with K = w (zero-padded by 3)
  // correlated with fk: t' in 0..5. Output phase r takes t' = 4 - 2e + r
  // from input m = p + e - 1 (e in 0..2): a 3x3 convolution with padding 1
  // whose taps are K flipped, from 1 - r in steps of 2.
  const auto fk = blur_kernel.flip({0, 1}).to(weight.dtype()).view({1, 1, 4, 4});
  auto composed = at::conv2d(at::constant_pad_nd(weight.reshape({out * in, 1, 3, 3}),
                                                 {3, 3, 3, 3}),
                             fk)
                      .flip({2, 3});  // (out*in, 1, 6, 6)
  std::vector<torch::Tensor> phases;
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) {
      phases.push_back(composed.index({Slice(), 0, Slice(1 - a, c10::nullopt, 2),
                                       Slice(1 - b, c10::nullopt, 2)}));
    }
  }
  return at::stack(phases, 1)                 // (out*in, 4, 3, 3)
      .view({out, in, 4, 3, 3})
      .permute({0, 2, 1, 3, 4})
      .reshape({out * 4, in, 3, 3});
}

torch::Tensor UpsampleBlurSubpixel(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& blur_kernel, const torch::Tensor& bias) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), out = weight.size(0);
  auto y = Conv(x, SubpixelWeight(weight, blur_kernel),
                bias.defined() ? bias.repeat_interleave(4) : bias, 1, 1);
  // Pixel shuffle into x's memory format: channel o*4 + a*2 + b of input
  // position (p, q) is output (o, 2p + a, 2q + b).
  auto shuffled = at::empty({n, out, 2 * h, 2 * w},
                            y.options().memory_format(x.suggest_memory_format()));
  shuffled.view({n, out, h, 2, w, 2})
      .copy_(y.view({n, out, 2, 2, h, w}).permute({0, 1, 4, 2, 5, 3}));
  return shuffled;
}

namespace {

// upfirdn2d(up 2, pad (2,1)) with a 4x4 kernel, per channel, by phases:
// out[2p] = x[p-1] fk[0] + x[p] fk[2], out[2p+1] = x[p] fk[1] + x[p+1] fk[3]
// with fk the flipped kernel. One depthwise 2x2 convolution (padding 1)
// computes all four phases as 4 output channels per input channel; each
// phase is then a crop of it.
torch::Tensor FusedUpsample(const torch::Tensor& x, const torch::Tensor& kernel) {
  using torch::indexing::Slice;
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  CheckArgument(kernel.size(0) == 4 && kernel.size(1) == 4,
                "upsample: the phase formulation needs a 4x4 kernel");
  auto fk = kernel.flip({0, 1}).to(x.dtype());
  std::vector<torch::Tensor> phases;
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) {
      phases.push_back(fk.index({Slice(a, c10::nullopt, 2), Slice(b, c10::nullopt, 2)}));
    }
  }
  auto k = at::stack(phases).view({1, 4, 2, 2}).expand({c, 4, 2, 2}).reshape({4 * c, 1, 2, 2});
  auto all = Conv(x, k, {}, 1, 1, /*groups=*/c).view({n, c, 2, 2, h + 1, w + 1});
  auto y = at::empty({n, c, 2 * h, 2 * w}, x.options().memory_format(x.suggest_memory_format()));
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) {
      PhaseOf(y, a, b).copy_(all.index({Slice(), Slice(), a, b, Slice(a, a + h), Slice(b, b + w)}));
    }
  }
  return y;
}

}  // namespace

BatchInvariantGuard::BatchInvariantGuard() : previous_(batch_invariant) {
  batch_invariant = true;
}

BatchInvariantGuard::~BatchInvariantGuard() { batch_invariant = previous_; }

bool BatchInvariantFor(const torch::Tensor& x) {
  return batch_invariant && x.is_cpu() && x.scalar_type() == at::kFloat &&
         !torch::autograd::GradMode::is_enabled();
}

ConvMode ResolveConvMode(ConvMode mode) {
  return mode == ConvMode::kAuto ? ConvMode::kFused : mode;
}

const char* ConvModeName(ConvMode mode) {
  switch (mode) {
    case ConvMode::kAuto: return "auto";
    case ConvMode::kReference: return "reference";
    case ConvMode::kFused: return "fused";
    case ConvMode::kFusedTransposed: return "fused-transposed";
    case ConvMode::kFusedSubpixel: return "fused-subpixel";
  }
  return "?";
}

bool ParseConvMode(const std::string& name, ConvMode* mode) {
  for (ConvMode m : {ConvMode::kAuto, ConvMode::kReference, ConvMode::kFused,
                     ConvMode::kFusedTransposed, ConvMode::kFusedSubpixel}) {
    if (name == ConvModeName(m)) {
      *mode = m;
      return true;
    }
  }
  return false;
}

torch::Tensor MakeBlurKernel(const std::vector<double>& kernel_1d, double scale) {
  auto k = torch::tensor(kernel_1d, torch::kFloat32);
  auto k2 = k.view({-1, 1}) * k.view({1, -1});
  k2 = k2 / k2.sum();
  if (scale != 1.0) k2 = k2 * scale;
  return k2;
}

torch::Tensor Upfirdn2d(const torch::Tensor& x, const torch::Tensor& kernel, int64_t up,
                        int64_t down, int64_t pad0, int64_t pad1) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto y = x.reshape({n * c, 1, h, w});
  if (up > 1) {
    y = at::constant_pad_nd(y.view({n * c, h, 1, w, 1}), {0, up - 1, 0, 0, 0, up - 1})
            .reshape({n * c, 1, h * up, w * up});
  }
  y = at::constant_pad_nd(y, {pad0, pad1, pad0, pad1});
  auto k = kernel.flip({0, 1}).to(x.dtype()).view({1, 1, kernel.size(0), kernel.size(1)});
  y = at::conv2d(y, k);
  if (down > 1) {
    using torch::indexing::Slice;
    y = y.index({Slice(), Slice(), Slice(c10::nullopt, c10::nullopt, down),
                 Slice(c10::nullopt, c10::nullopt, down)});
  }
  return y.reshape({n, c, y.size(2), y.size(3)});
}

torch::Tensor FusedLeakyRelu(const torch::Tensor& x, const torch::Tensor& bias) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = bias.size(0);
  return at::leaky_relu(x + bias.view(shape), 0.2) * kSqrt2;
}

// ---------------------------------------------------------------- EqualLinear

EqualLinearImpl::EqualLinearImpl(const EqualLinearOptions& opts)
    : torch::nn::Module("EqualLinear"), options(opts) {
  weight = register_parameter("weight", torch::empty({opts.out, opts.in}));
  bias = register_parameter("bias", torch::full({opts.out}, opts.bias_init));
}

void EqualLinearImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  weight.copy_(at::randn(weight.sizes(), rng).div_(options.lr_mul));
  bias.fill_(options.bias_init);
}

torch::Tensor EqualLinearImpl::forward(const torch::Tensor& x) {
  const double scale = options.lr_mul / std::sqrt(static_cast<double>(options.in));
  if (options.fused_lrelu) {
    return FusedLeakyRelu(Linear(x, weight * scale), bias * options.lr_mul);
  }
  return Linear(x, weight * scale, bias * options.lr_mul);
}

torch::Tensor PixelNormImpl::forward(const torch::Tensor& x) {
  return x * at::rsqrt(x.pow(2).mean({1}, /*keepdim=*/true) + 1e-8);
}

// ----------------------------------------------------------- ModulatedConv2d

ModulatedConv2dImpl::ModulatedConv2dImpl(const ModulatedConv2dOptions& opts)
    : torch::nn::Module("ModulatedConv2d"), options(opts) {
  scale = 1.0 / std::sqrt(static_cast<double>(opts.in * opts.kernel_size * opts.kernel_size));
  weight = register_parameter(
      "weight", torch::empty({1, opts.out, opts.in, opts.kernel_size, opts.kernel_size}));
  modulation = register_module(
      "modulation", EqualLinear(EqualLinearOptions{opts.style_dim, opts.in, 1.0, 1.0, false}));
  if (opts.upsample) {
    blur = register_module("blur", KernelHolder(MakeBlurKernel(opts.blur_kernel, 4.0),
                                                &blur_kernel));
  }
}

void ModulatedConv2dImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  weight.copy_(at::randn(weight.sizes(), rng));
  modulation->ResetParameters(rng);
}

torch::Tensor ModulatedConv2dImpl::ReferenceForward(const torch::Tensor& x,
                                                    const torch::Tensor& style) {
  const int64_t b = x.size(0), in = options.in, out = options.out, k = options.kernel_size;
  const int64_t h = x.size(2), w = x.size(3);
  auto s = modulation->forward(style).view({b, 1, in, 1, 1});
  auto wt = scale * weight * s;
  if (options.demodulate) {
    auto demod = at::rsqrt(wt.pow(2).sum({2, 3, 4}) + 1e-8);
    wt = wt * demod.view({b, out, 1, 1, 1});
  }
  auto xg = x.reshape({1, b * in, h, w});
  if (options.upsample) {
    // The reference's own transposed convolution here, not the phase split:
    // trainer gradients on the golden data are sensitive to its summation
    // order (see AdaptOptions::conv_mode).
    wt = wt.view({b, out, in, k, k}).transpose(1, 2).reshape({b * in, out, k, k});
    auto y = at::conv_transpose2d(xg, wt, {}, /*stride=*/2, /*padding=*/0, /*output_padding=*/0,
                                  /*groups=*/b);
    return DepthwiseBlur(y.view({b, out, y.size(2), y.size(3)}), blur_kernel, 1);
  }
  wt = wt.view({b * out, in, k, k});
  auto y = at::conv2d(xg, wt, {}, 1, k / 2, 1, /*groups=*/b);
  return y.view({b, out, y.size(2), y.size(3)});
}

torch::Tensor ModulatedConv2dImpl::UpsampleConv(const torch::Tensor& x, const torch::Tensor& wt,
                                                ConvMode mode, const torch::Tensor& bias) const {
  if (mode == ConvMode::kFusedSubpixel && wt.size(2) == 3 && wt.size(3) == 3 &&
      blur_kernel.size(0) == 4 && blur_kernel.size(1) == 4) {
    return UpsampleBlurSubpixel(x, wt, blur_kernel, bias);
  }
  // LibTorch's CPU transposed convolution has no bfloat16 kernel: phases there.
  if (mode == ConvMode::kFusedTransposed &&
      !(x.is_cpu() && x.scalar_type() == at::kBFloat16)) {
    // Keeps x's layout: cuDNN returns channels-last for channels-last input,
    // LibTorch 1.13's CPU kernel always NCHW.
    auto y = at::conv_transpose2d(x, wt.transpose(0, 1), {}, /*stride=*/2)
                 .contiguous(x.suggest_memory_format());
    return DepthwiseBlur(y, blur_kernel, 1, bias);
  }
  return DepthwiseBlur(ConvTransposeStride2(x, wt), blur_kernel, 1, bias);
}

std::pair<torch::Tensor, torch::Tensor> ModulatedConv2dImpl::FusedParts(
    const torch::Tensor& x, const torch::Tensor& style, ConvMode mode) {
  const int64_t b = x.size(0), in = options.in, k = options.kernel_size;
  auto s = modulation->forward(style);  // (b, in)
  auto wt = weight.squeeze(0) * scale;  // (out, in, k, k)
  auto xs = x * s.view({b, in, 1, 1});
  torch::Tensor y;
  if (options.upsample) {
    y = UpsampleConv(xs, wt, mode);
  } else {
    y = Conv(xs, wt, {}, k / 2, k / 2);
  }
  torch::Tensor demod;
  if (options.demodulate) {
    // sum_{i,kh,kw} (w[o,i] s[b,i])^2 = sum_i s[b,i]^2 * sum_k w[o,i,k]^2
    auto wsq = wt.pow(2).sum({2, 3});  // (out, in)
    demod = at::rsqrt(MatmulRows(s.pow(2), wsq.t()) + 1e-8);  // (b, out)
  }
  return {y, demod};
}

torch::Tensor ModulatedConv2dImpl::FoldedForward(const torch::Tensor& x,
                                                 const torch::Tensor& style, double gain,
                                                 const torch::Tensor& bias, ConvMode mode) {
  const int64_t in = options.in, out = options.out, k = options.kernel_size;
  auto s = modulation->forward(style);  // (1, in)
  auto wt = weight.squeeze(0) * scale * s.view({1, in, 1, 1});  // (out, in, k, k)
  if (options.demodulate) {
    wt = wt * (at::rsqrt(wt.pow(2).sum({1, 2, 3}) + 1e-8) * gain).view({out, 1, 1, 1});
  } else if (gain != 1.0) {
    wt = wt * gain;
  }
  if (options.upsample) return UpsampleConv(x, wt, mode, bias);
  return Conv(x, wt, bias, k / 2, k / 2);
}

torch::Tensor ModulatedConv2dImpl::forward(const torch::Tensor& x, const torch::Tensor& style,
                                           ConvMode mode) {
  CheckArgument(x.dim() == 4 && x.size(1) == options.in,
                "ModulatedConv2d: expected input (N," + std::to_string(options.in) +
                    ",H,W), got " + c10::str(x.sizes()));
  mode = ResolveConvMode(mode);
  if (mode == ConvMode::kReference) return ReferenceForward(x, style);
  auto [y, demod] = FusedParts(x, style, mode);
  if (demod.defined()) y = y * demod.view({x.size(0), options.out, 1, 1});
  return y;
}

// ---------------------------------------------------------------- StyledConv

StyledConvImpl::StyledConvImpl(const ModulatedConv2dOptions& opts)
    : torch::nn::Module("StyledConv") {
  conv = register_module("conv", ModulatedConv2d(opts));
  noise_module = register_module("noise", std::make_shared<torch::nn::Module>("NoiseInjection"));
  noise_weight = noise_module->register_parameter("weight", torch::zeros({1}));
  activate_module =
      register_module("activate", std::make_shared<torch::nn::Module>("FusedLeakyReLU"));
  activate_bias = activate_module->register_parameter("bias", torch::zeros({opts.out}));
}

void StyledConvImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  conv->ResetParameters(rng);
  noise_weight.zero_();
  activate_bias.zero_();
}

torch::Tensor StyledConvImpl::forward(const torch::Tensor& x, const torch::Tensor& style,
                                      const torch::Tensor& noise, ConvMode mode,
                                      c10::optional<at::Generator> rng) {
  mode = ResolveConvMode(mode);
  const bool in_place = !torch::autograd::GradMode::is_enabled();
  auto noise_for = [&](const torch::Tensor& y) {
    torch::Tensor n = noise;
    if (!n.defined()) {
      // Drawn in float32 at narrower dtypes, so a bfloat16 copy of a generator
      // takes the same draws from `rng` as the float32 one, rounded.
      const bool narrow = y.scalar_type() == at::kBFloat16 || y.scalar_type() == at::kHalf;
      const auto dtype = narrow ? at::kFloat : y.scalar_type();
      n = at::randn({y.size(0), 1, y.size(2), y.size(3)}, rng, y.options().dtype(dtype));
    }
    CheckArgument(n.dim() == 4 && n.size(1) == 1 && n.size(2) == y.size(2) &&
                      n.size(3) == y.size(3) && (n.size(0) == 1 || n.size(0) == y.size(0)),
                  "StyledConv: noise of shape " + c10::str(n.sizes()) + " for output " +
                      c10::str(y.sizes()));
    return n.to(y.dtype());
  };
  if (mode == ConvMode::kReference || !in_place) {
    // The reference's elementwise order and rounding: (conv (demodulated) +
    // noise * weight + bias), leaky ReLU, * sqrt(2). The fused formulation
    // uses it too under autograd (training): folding sqrt(2) and the bias
    // into one addcmul (below) moves pre-activations at ~0 across zero often
    // enough to move a W+ gradient of the golden layer-selection case by
    // 4e-3 of its max; this order keeps it within 5e-7.
    if (IsFused(mode)) {
      auto [conv_out, demod] = conv->FusedParts(x, style, mode);
      const torch::Tensor n = noise_for(conv_out);
      if (demod.defined() && StyledTailTrainUsesKernels(conv_out)) {
        return StyledTailTrain(conv_out, demod, n, noise_weight, activate_bias);
      }
      auto y = demod.defined() ? conv_out * demod.view({x.size(0), conv_out.size(1), 1, 1})
                               : conv_out;
      return FusedLeakyRelu(y + noise_weight * n, activate_bias);
    }
    auto y = conv->forward(x, style, mode);
    return FusedLeakyRelu(y + noise_weight * noise_for(y), activate_bias);
  }
  // sqrt(2) folded into weight or gain, bias and noise weight:
  // lrelu(a)*c == lrelu(a*c) for c > 0.
  torch::Tensor y, gain, bias;
  if (FoldsAtBatch1(x)) {
    y = conv->FoldedForward(x, style, kSqrt2, activate_bias * kSqrt2, mode);
  } else {
    auto [conv_out, demod] = conv->FusedParts(x, style, mode);
    const int64_t b = conv_out.size(0), c = conv_out.size(1);
    y = conv_out;
    gain = demod.defined() ? demod * kSqrt2 : torch::full({b, c}, kSqrt2, conv_out.options());
    bias = activate_bias * kSqrt2;
  }
  return StyledTail(y, gain, bias, noise_for(y), noise_weight * kSqrt2);
}

// --------------------------------------------------------------------- ToRgb

ToRgbImpl::ToRgbImpl(int64_t in, int64_t style_dim, bool do_upsample,
                     const std::vector<double>& blur_kernel)
    : torch::nn::Module("ToRGB") {
  if (do_upsample) {
    upsample = register_module("upsample", KernelHolder(MakeBlurKernel(blur_kernel, 4.0),
                                                        &upsample_kernel));
  }
  ModulatedConv2dOptions o;
  o.in = in;
  o.out = 3;
  o.kernel_size = 1;
  o.style_dim = style_dim;
  o.demodulate = false;
  o.blur_kernel = blur_kernel;
  conv = register_module("conv", ModulatedConv2d(o));
  bias = register_parameter("bias", torch::zeros({1, 3, 1, 1}));
}

void ToRgbImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  conv->ResetParameters(rng);
  bias.zero_();
}

torch::Tensor ToRgbImpl::forward(const torch::Tensor& x, const torch::Tensor& style,
                                 const torch::Tensor& skip, ConvMode mode) {
  mode = ResolveConvMode(mode);
  torch::Tensor y;
  if (IsFused(mode) && FoldsAtBatch1(x)) {
    y = conv->FoldedForward(x, style, 1.0, bias.view({3}));
  } else {
    y = conv->forward(x, style, mode) + bias;
  }
  if (skip.defined()) {
    CheckArgument(upsample != nullptr, "ToRGB: a skip input needs an upsampling ToRGB");
    y = y + FusedUpsample(skip, upsample_kernel);
  }
  return y;
}

// ------------------------------------------------------------- ConstantInput

ConstantInputImpl::ConstantInputImpl(int64_t channels) : torch::nn::Module("ConstantInput") {
  input = register_parameter("input", torch::empty({1, channels, 4, 4}));
}

void ConstantInputImpl::ResetParameters(at::Generator& rng) {
  torch::NoGradGuard no_grad;
  input.copy_(at::randn(input.sizes(), rng));
}

torch::Tensor ConstantInputImpl::forward(int64_t batch) {
  return input.repeat({batch, 1, 1, 1});
}

}  // namespace restyle::engine
