// Building blocks of the StyleGAN2 generator in the rosinality
// (stylegan2-pytorch) layout: every parameter and buffer is registered under
// its original name, so a converted checkpoint loads by a strict name-by-name
// copy.
//
// Constructors allocate parameters uninitialised (loading overwrites them);
// ResetParameters(rng) applies the reference initialisation.
//
// Each layer can run in two exact formulations (ConvMode):
//  * kReference: the reference's arithmetic. The modulated, demodulated
//    weight is built per sample and the convolution is a grouped conv with
//    one group per sample; upsampling convs are the stride-2 transposed conv
//    of that weight (LibTorch's conv_transpose2d, as the reference) followed
//    by the blur. Two algorithms differ from the reference's: the blur runs
//    as one depthwise conv instead of upfirdn2d's one-channel conv over N*C
//    images (bitwise the same results, 3-14x faster), and the ToRGB skip
//    upsampling by phases (see kFused; same sums, other order).
//  * kFused: the same function rewritten. At batch > 1 the style scales the
//    activations instead of the weight (x * s, one convolution with the
//    shared weight for the whole batch, then * demodulation coefficients per
//    sample and output channel). At batch 1 the style, demodulation and the
//    sqrt(2) gain (leaky_relu(a)*c == leaky_relu(a*c) for c > 0) are folded
//    into the weight of a plain convolution whose bias is the activation
//    bias (added by the blur for upsampling convs), leaving one pass for the
//    noise and one for the leaky ReLU. The blur is a depthwise conv; the
//    ToRGB upsample, upfirdn2d(up 2, pad (2,1)), is one depthwise 2x2 conv
//    giving its four output phases, interleaved.
//    Upsampling convs run as four phase convolutions (ConvTransposeStride2).
//    Without grad mode the elementwise steps run in place, folded as above
//    (StyledTail: one CUDA kernel where built, fused_tail.h); under grad mode
//    (training) they run in the reference's order and rounding (demodulate,
//    add noise, add bias, leaky ReLU, * sqrt(2)), which keeps gradients
//    through pre-activations at ~0 on the reference's side (StyledTailTrain:
//    one CUDA kernel forward and one backward where built, fused_tail.h).
//  * kFusedTransposed: kFused with LibTorch's own stride-2 transposed
//    convolution for the upsampling convs instead of the four phase
//    convolutions (on CUDA, cuDNN's data-gradient kernels; on the CPU the
//    phases are 2-3x faster, and bfloat16 has no CPU kernel: phases there).
//  * kFusedSubpixel: kFused with each upsampling convolution and the blur
//    after it composed into ONE ordinary 3x3 convolution at the input
//    resolution with four outputs per channel (one per output phase), then
//    a pixel shuffle (UpsampleBlurSubpixel). Linear maps compose, so it is
//    the same function; the blur pass and the (2H+1)^2 intermediate are
//    gone and the convolution is the plain kind that cuDNN runs best, for
//    4x the upsampling convolution's multiply-adds (about 1.6x a block's).
// All are differentiable with standard ops; results agree to float rounding.
// The fused ones also run with channels-last activations
// (SynthesisOptions::channels_last).
//
// Thread-safety: modules are not thread-safe to mutate; concurrent forward
// calls on one module are safe (no state is written during forward).
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_LAYERS_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_LAYERS_H_

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "worker/engine/stylegan2/modes.h"

namespace restyle::engine {

// Resolves kAuto.
ConvMode ResolveConvMode(ConvMode mode);

// Batch-invariant arithmetic on the calling thread while one is alive: the
// generator's forward without gradients then computes each sample of a batch
// bit for bit as it computes that sample alone, so a served image does not
// depend on which requests shared its batch. On the CPU in float32 it
//  * never folds the style into the weight at batch 1 (the batch > 1
//    formulation at every batch size),
//  * runs the linear layers and the demodulation sums one sample at a time
//    (LibTorch's CPU GEMM sums in another order from 3 rows up), and
//  * runs every convolution through oneDNN (LibTorch takes its own im2col
//    kernel for one small input, e.g. 512x4x4, and oneDNN otherwise).
// Slower at batch 1 than the folded formulation (docs/benchmarks.md). On other
// devices and dtypes it changes nothing: cuDNN and cuBLAS choose kernels per
// shape, so images agree with their batch-1 selves to float rounding only.
// Under grad mode it changes nothing either.
class BatchInvariantGuard {
 public:
  BatchInvariantGuard();
  ~BatchInvariantGuard();
  BatchInvariantGuard(const BatchInvariantGuard&) = delete;
  BatchInvariantGuard& operator=(const BatchInvariantGuard&) = delete;

 private:
  bool previous_;
};
// Whether the batch-invariant arithmetic applies to `x` on this thread.
bool BatchInvariantFor(const torch::Tensor& x);

// "auto", "reference", "fused", "fused-transposed", "fused-subpixel".
const char* ConvModeName(ConvMode mode);
// The inverse of ConvModeName; false for any other name.
bool ParseConvMode(const std::string& name, ConvMode* mode);

// 2-D blur kernel from a 1-D one: outer product normalised to sum 1 (times
// `scale`, e.g. factor^2 for upsampling).
torch::Tensor MakeBlurKernel(const std::vector<double>& kernel_1d, double scale = 1.0);

// upfirdn2d as the reference's native CPU fallback computes it, per channel:
// zero-insert upsampling by `up`, pad (pad0 before, pad1 after; negative
// crops), correlate with the FLIPPED kernel, keep every `down`-th sample.
// `x` is (N,C,H,W); `kernel` (kh,kw).
torch::Tensor Upfirdn2d(const torch::Tensor& x, const torch::Tensor& kernel, int64_t up,
                        int64_t down, int64_t pad0, int64_t pad1);

// The stride-2, padding-0 transposed convolution of x by a weight in
// convolution layout (out, in/groups, k, k), i.e. conv_transpose2d with that
// weight transposed per group, computed as four ordinary convolutions, one
// per output phase (even/odd row x even/odd column), interleaved. Same sums,
// different order; on CPU the ordinary convolutions take the oneDNN path,
// which the transposed one does not in this LibTorch (2-3x slower, plus a
// zero-filled scratch buffer). `bias` (out) is optional.
torch::Tensor ConvTransposeStride2(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& bias = {}, int64_t groups = 1);

// The weight of one ordinary convolution (padding 1) whose pixel shuffle by 2
// is the stride-2 transposed convolution by `weight` (out, in, 3, 3) followed
// by the depthwise blur with `blur_kernel` (4x4, padding 1), both as the
// upsampling ModulatedConv2d runs them: (4*out, in, 3, 3), the output
// channels ordered o*4 + row_phase*2 + col_phase as pixel_shuffle expects.
// Differentiable in `weight`.
torch::Tensor SubpixelWeight(const torch::Tensor& weight, const torch::Tensor& blur_kernel);

// blur(conv_transpose_stride2(x, weight)) (+ bias per output channel) as
// pixel_shuffle(conv2d(x, SubpixelWeight(weight, blur_kernel), padding 1), 2).
// Keeps x's memory format.
torch::Tensor UpsampleBlurSubpixel(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& blur_kernel,
                                   const torch::Tensor& bias = {});

// Fused leaky ReLU: leaky_relu(x + bias (per channel, dim 1), 0.2) * sqrt(2).
torch::Tensor FusedLeakyRelu(const torch::Tensor& x, const torch::Tensor& bias);

// Equalised linear layer: weight (out,in) used as weight * lr_mul / sqrt(in),
// bias used as bias * lr_mul; optional fused leaky ReLU.
struct EqualLinearOptions {
  int64_t in = 0;
  int64_t out = 0;
  double lr_mul = 1.0;
  double bias_init = 0.0;
  bool fused_lrelu = false;
};
class EqualLinearImpl : public torch::nn::Module {
 public:
  explicit EqualLinearImpl(const EqualLinearOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  // Re-draws weight ~ N(0,1)/lr_mul and sets bias to bias_init.
  void ResetParameters(at::Generator& rng);

  EqualLinearOptions options;
  torch::Tensor weight;  // "weight" (out,in)
  torch::Tensor bias;    // "bias" (out)
};
TORCH_MODULE(EqualLinear);

// x * rsqrt(mean(x^2, dim 1) + 1e-8). No parameters.
class PixelNormImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(PixelNorm);

// Modulated convolution: "weight" (1,out,in,k,k), "modulation.{weight,bias}"
// (EqualLinear style_dim -> in, bias init 1), and for upsampling
// "blur.kernel" (a buffer, the 4x4 blur kernel * 4).
struct ModulatedConv2dOptions {
  int64_t in = 0;
  int64_t out = 0;
  int64_t kernel_size = 3;
  int64_t style_dim = 512;
  bool demodulate = true;
  bool upsample = false;
  std::vector<double> blur_kernel = {1, 3, 3, 1};
};
class ModulatedConv2dImpl : public torch::nn::Module {
 public:
  explicit ModulatedConv2dImpl(const ModulatedConv2dOptions& options);
  // Full reference semantics (demodulation applied inside).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& style,
                        ConvMode mode = ConvMode::kAuto);
  // kFused building block: the convolution WITHOUT the demodulation factor,
  // plus the (N,out) demodulation coefficients (undefined when demodulate is
  // false). forward(kFused) == conv * demod[:, :, None, None]. `mode`
  // (kFused or kFusedTransposed) picks the upsampling convolution.
  std::pair<torch::Tensor, torch::Tensor> FusedParts(const torch::Tensor& x,
                                                     const torch::Tensor& style,
                                                     ConvMode mode = ConvMode::kFused);
  // kFused at batch 1: conv with the weight modulated by style (1,style_dim),
  // demodulated, and multiplied by `gain`; `bias` (out) is added by the conv
  // (or by the blur when upsampling). Undefined bias: none.
  torch::Tensor FoldedForward(const torch::Tensor& x, const torch::Tensor& style, double gain,
                              const torch::Tensor& bias, ConvMode mode = ConvMode::kFused);
  void ResetParameters(at::Generator& rng);

  ModulatedConv2dOptions options;
  double scale;  // 1/sqrt(in*k*k)
  torch::Tensor weight;
  EqualLinear modulation{nullptr};
  std::shared_ptr<torch::nn::Module> blur;  // holds buffer "kernel" when upsampling
  torch::Tensor blur_kernel;                // alias of blur's "kernel"

 private:
  torch::Tensor ReferenceForward(const torch::Tensor& x, const torch::Tensor& style);
  // blur(stride-2 transposed convolution of x by wt (out,in,k,k)) (+ bias):
  // the convolution by phases for kFused, LibTorch's for kFusedTransposed,
  // conv and blur composed for kFusedSubpixel.
  torch::Tensor UpsampleConv(const torch::Tensor& x, const torch::Tensor& wt, ConvMode mode,
                             const torch::Tensor& bias = {}) const;
};
TORCH_MODULE(ModulatedConv2d);

// Modulated conv + noise injection ("noise.weight", shape (1)) + fused leaky
// ReLU ("activate.bias", shape (out)).
class StyledConvImpl : public torch::nn::Module {
 public:
  explicit StyledConvImpl(const ModulatedConv2dOptions& options);
  // `noise`: (N or 1, 1, H, W) at the output resolution; undefined = fresh
  // N(0,1) noise drawn with `rng` (or the global generator when null).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& style,
                        const torch::Tensor& noise, ConvMode mode = ConvMode::kAuto,
                        c10::optional<at::Generator> rng = c10::nullopt);
  void ResetParameters(at::Generator& rng);

  ModulatedConv2d conv{nullptr};
  std::shared_ptr<torch::nn::Module> noise_module;     // "noise" with parameter "weight"
  std::shared_ptr<torch::nn::Module> activate_module;  // "activate" with parameter "bias"
  torch::Tensor noise_weight;
  torch::Tensor activate_bias;
};
TORCH_MODULE(StyledConv);

// Modulated 1x1 conv to RGB without demodulation, "bias" (1,3,1,1), and
// when upsampling the skip, "upsample.kernel" (4x4 blur kernel * 4).
class ToRgbImpl : public torch::nn::Module {
 public:
  ToRgbImpl(int64_t in, int64_t style_dim, bool upsample,
            const std::vector<double>& blur_kernel = {1, 3, 3, 1});
  // Returns conv(x) + bias (+ upsampled `skip` when defined).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& style,
                        const torch::Tensor& skip, ConvMode mode = ConvMode::kAuto);
  void ResetParameters(at::Generator& rng);

  ModulatedConv2d conv{nullptr};
  torch::Tensor bias;
  std::shared_ptr<torch::nn::Module> upsample;  // holds buffer "kernel"
  torch::Tensor upsample_kernel;
};
TORCH_MODULE(ToRgb);

// The learned 4x4 constant: parameter "input" (1,C,4,4), repeated over the batch.
class ConstantInputImpl : public torch::nn::Module {
 public:
  explicit ConstantInputImpl(int64_t channels);
  torch::Tensor forward(int64_t batch);
  void ResetParameters(at::Generator& rng);
  torch::Tensor input;
};
TORCH_MODULE(ConstantInput);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_LAYERS_H_
