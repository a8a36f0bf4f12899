// Unit tests of the StyleGAN2 generator: loading (config inference, strict
// errors, the 1024 config-f layout), deltas, mixing / truncation invariants,
// image conversion and PNG output.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/golden/golden.h"
#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/generator.h"
#include "worker/engine/stylegan2/fused_tail.h"
#include "worker/engine/stylegan2/layers.h"
#include "worker/engine/stylegan2/sha256.h"
#ifdef RESTYLE_HAVE_PNG
#include "worker/engine/image/png.h"
#endif

namespace restyle::engine {
namespace {

namespace fs = std::filesystem;

Sg2Config TinyConfig(int64_t size = 32) {
  Sg2Config c;
  c.size = size;
  c.style_dim = 16;
  c.n_mlp = 3;
  for (int64_t r = 4; r <= size; r *= 2) c.channels.push_back(r <= 8 ? 12 : 8);
  return c;
}

std::string TempPath(const std::string& name) {
  return (fs::temp_directory_path() /
          ("restyle_sg2_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

void ExpectSameState(const torch::nn::Module& a, const torch::nn::Module& b) {
  auto sa = StateDict(a), sb = StateDict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) {
    ASSERT_TRUE(sb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, sb.at(name))) << name;
  }
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sg2Config, OfficialTables) {
  auto c = Sg2Config::Official(256);
  EXPECT_EQ(c.channels, (std::vector<int64_t>{512, 512, 512, 512, 512, 256, 128}));
  EXPECT_EQ(c.n_latent(), 14);
  EXPECT_EQ(c.num_noise_layers(), 13);
  auto f = Sg2Config::Official(1024);
  EXPECT_EQ(f.channels.back(), 32);
  EXPECT_EQ(f.n_latent(), 18);
  EXPECT_THROW(Sg2Config::Official(2048), Error);
}

TEST(Generator, NamesAndConfigInference) {
  auto c = TinyConfig(32);
  auto g = RandomGenerator(c, 7);
  auto sd = StateDict(*g);
  for (const char* name :
       {"style.1.weight", "style.3.bias", "input.input", "conv1.conv.weight",
        "conv1.conv.modulation.weight", "conv1.conv.modulation.bias", "conv1.noise.weight",
        "conv1.activate.bias", "to_rgb1.conv.weight", "to_rgb1.conv.modulation.bias",
        "to_rgb1.bias", "convs.0.conv.blur.kernel", "convs.5.conv.weight",
        "to_rgbs.2.upsample.kernel", "to_rgbs.2.bias", "noises.noise_0", "noises.noise_6"}) {
    EXPECT_TRUE(sd.count(name)) << name;
  }
  EXPECT_FALSE(sd.count("style.0.weight"));
  EXPECT_FALSE(sd.count("convs.1.conv.blur.kernel"));
  EXPECT_FALSE(sd.count("to_rgb1.upsample.kernel"));
  EXPECT_EQ(sd.at("noises.noise_6").sizes(), (std::vector<int64_t>{1, 1, 32, 32}));
  EXPECT_EQ(sd.at("convs.2.conv.weight").sizes(), (std::vector<int64_t>{1, 8, 12, 3, 3}));
  // 1+3*2 mapping, 1 input, 5+4 conv1/to_rgb1, 6 convs x 5 + 3 blur, 3 to_rgbs x 5, 7 noises.
  EXPECT_EQ(sd.size(), 6u + 1 + 5 + 4 + 6 * 5 + 3 + 3 * 5 + 7);
  auto inferred = Sg2Config::FromTensors(sd, "random");
  EXPECT_EQ(inferred.size, c.size);
  EXPECT_EQ(inferred.style_dim, c.style_dim);
  EXPECT_EQ(inferred.n_mlp, c.n_mlp);
  EXPECT_EQ(inferred.channels, c.channels);
  // Same seed, same weights; other seed, other weights.
  ExpectSameState(*g, *RandomGenerator(c, 7));
  EXPECT_FALSE(torch::equal(sd.at("input.input"), StateDict(*RandomGenerator(c, 8)).at("input.input")));
}

TEST(Generator, StrictLoadingListsEveryProblem) {
  auto sd = StateDict(*RandomGenerator(TinyConfig(), 1));
  sd.erase("convs.3.noise.weight");
  sd["convs.3.extra"] = torch::zeros({1});
  sd["to_rgbs.1.bias"] = torch::zeros({1, 4, 1, 1});
  try {
    GeneratorFromTensors(sd, "broken.safetensors");
    FAIL() << "loading should fail";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(msg.find("convs.3.noise.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("convs.3.extra"), std::string::npos) << msg;
    EXPECT_NE(msg.find("to_rgbs.1.bias"), std::string::npos) << msg;
  }
  auto no_input = StateDict(*RandomGenerator(TinyConfig(), 1));
  no_input.erase("input.input");
  EXPECT_THROW(GeneratorFromTensors(no_input, "x"), Error);
}

TEST(Generator, SaveLoadRoundTripWithLatentAvg) {
  auto g = RandomGenerator(TinyConfig(16), 3);
  g->latent_avg = g->MeanLatent(64);
  const auto path = TempPath("roundtrip.safetensors");
  SaveGenerator(path, *g);
  auto h = LoadGenerator(path);
  ExpectSameState(*g, *h);
  ASSERT_TRUE(h->latent_avg.defined());
  EXPECT_TRUE(torch::equal(g->latent_avg, h->latent_avg));
  fs::remove(path);
}

TEST(Generator, Config1024LoadsAndRuns) {
  auto c = Sg2Config::Official(1024);
  const auto path = TempPath("ffhq1024.safetensors");
  {
    auto g = RandomGenerator(c, 11);
    SaveGenerator(path, *g);
  }
  auto g = LoadGenerator(path);
  fs::remove(path);
  EXPECT_EQ(g->config().channels, c.channels);
  EXPECT_EQ(g->config().n_latent(), 18);
  auto sd = StateDict(*g);
  EXPECT_EQ(sd.at("convs.15.conv.weight").sizes(), (std::vector<int64_t>{1, 32, 32, 3, 3}));
  EXPECT_EQ(sd.at("noises.noise_16").sizes(), (std::vector<int64_t>{1, 1, 1024, 1024}));
  torch::NoGradGuard no_grad;
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  auto img = g->Generate({torch::randn({1, 512})}, o).image;
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 3, 1024, 1024}));
  EXPECT_TRUE(torch::isfinite(img).all().item<bool>());
}

TEST(Generator, DeltaRoundTripAndDigestMismatch) {
  auto base = RandomGenerator(TinyConfig(), 21);
  Generator target(base->Clone());
  {
    torch::NoGradGuard no_grad;
    target->conv1->conv->weight.add_(0.5);
    target->convs->ptr<StyledConvImpl>(2)->activate_bias.add_(1.0);
  }
  // Clone is deep: the base is unchanged.
  EXPECT_FALSE(torch::equal(base->conv1->conv->weight, target->conv1->conv->weight));
  const auto path = TempPath("delta.safetensors");
  target->SaveDelta(path, *base);
  auto contents = ReadSafetensors(path);
  EXPECT_EQ(contents.tensors.size(), 2u);
  EXPECT_TRUE(contents.tensors.count("conv1.conv.weight"));
  EXPECT_TRUE(contents.tensors.count("convs.2.activate.bias"));
  EXPECT_EQ(contents.metadata.at("base_sha256"), GeneratorImpl::Digest(*base));
  auto loaded = LoadWithDelta(*base, path);
  ExpectSameState(*loaded, *target);
  auto other = RandomGenerator(TinyConfig(), 22);
  try {
    LoadWithDelta(*other, path);
    FAIL() << "digest mismatch must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition);
  }
  fs::remove(path);
}

TEST(Generator, MixingAndTruncationInvariants) {
  torch::NoGradGuard no_grad;
  auto g = RandomGenerator(TinyConfig(), 5);
  const int64_t n_latent = g->config().n_latent();
  auto w = torch::randn({3, 16}), w2 = torch::randn({3, 16});
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  auto single = g->Generate({w}, o);
  EXPECT_TRUE(torch::equal(single.latent, w.unsqueeze(1).expand({3, n_latent, 16})));
  // inject_index = n_latent: only the first style is used.
  o.inject_index = n_latent;
  auto mixed_all = g->Generate({w, w2}, o);
  EXPECT_TRUE(torch::allclose(mixed_all.image, single.image, 1e-6, 1e-6));
  o.inject_index = 3;
  auto mixed = g->Generate({w, w2}, o);
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(mixed.latent.index({Slice(), Slice(0, 3)}),
                           w.unsqueeze(1).expand({3, 3, 16})));
  EXPECT_TRUE(torch::equal(mixed.latent.index({Slice(), Slice(3)}),
                           w2.unsqueeze(1).expand({3, n_latent - 3, 16})));
  // The same W+ through Synthesize gives the same image.
  EXPECT_TRUE(torch::allclose(g->Synthesize(mixed.latent, o).image, mixed.image, 1e-6, 1e-6));
  // Random inject index is reproducible with a seeded rng and lies in [1, n_latent-1].
  o.inject_index = -1;
  o.rng = at::detail::createCPUGenerator(9);
  auto r1 = g->Generate({w, w2}, o).latent;
  o.rng = at::detail::createCPUGenerator(9);
  EXPECT_TRUE(torch::equal(r1, g->Generate({w, w2}, o).latent));
  EXPECT_TRUE(torch::equal(r1.select(1, 0), w));
  EXPECT_TRUE(torch::equal(r1.select(1, n_latent - 1), w2));
  // Truncation 0 gives the truncation latent's image; truncation 1 changes nothing.
  o = SynthesisOptions();
  o.noise = NoiseMode::kStored;
  auto mean = g->MeanLatent(256, at::detail::createCPUGenerator(1));
  o.truncation_latent = mean;
  o.truncation = 0.0;
  auto t0 = g->Generate({w}, o);
  EXPECT_TRUE(torch::allclose(t0.latent, mean.view({1, 1, 16}).expand({3, n_latent, 16})));
  o.truncation = 0.5;
  auto t5 = g->Generate({w}, o);
  EXPECT_TRUE(torch::allclose(t5.latent.select(1, 0), mean + 0.5 * (w - mean)));
  // Missing truncation latent is an argument error.
  o.truncation_latent = torch::Tensor();
  EXPECT_THROW(g->Generate({w}, o), Error);
  // z input == mapping then w input.
  auto z = torch::randn({2, 16});
  SynthesisOptions oz;
  oz.noise = NoiseMode::kStored;
  oz.input_is_latent = false;
  EXPECT_TRUE(torch::equal(g->Generate({z}, oz).latent.select(1, 0), g->Mapping(z)));
}

TEST(Generator, NoiseModes) {
  torch::NoGradGuard no_grad;
  auto g = RandomGenerator(TinyConfig(), 6);
  auto w = torch::randn({2, 16});
  SynthesisOptions o;
  o.noise = NoiseMode::kRandom;
  o.rng = at::detail::createCPUGenerator(3);
  auto a = g->Generate({w}, o).image;
  o.rng = at::detail::createCPUGenerator(3);
  auto b = g->Generate({w}, o).image;
  EXPECT_TRUE(torch::equal(a, b));
  o.rng = at::detail::createCPUGenerator(4);
  EXPECT_FALSE(torch::equal(a, g->Generate({w}, o).image));
  // Given noise equal to the stored buffers reproduces stored mode.
  SynthesisOptions s;
  s.noise = NoiseMode::kStored;
  SynthesisOptions given;
  given.noise = NoiseMode::kGiven;
  given.noise_tensors = g->noise_buffers;
  EXPECT_TRUE(torch::equal(g->Generate({w}, s).image, g->Generate({w}, given).image));
  given.noise_tensors.pop_back();
  EXPECT_THROW(g->Generate({w}, given), Error);
}

// after_block is called once per resolution block, in order, and does not
// change the result.
TEST(Generator, AfterBlockVisitsEveryResolution) {
  torch::NoGradGuard no_grad;
  auto g = RandomGenerator(TinyConfig(32), 7);
  auto w = torch::randn({2, 16});
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  const torch::Tensor plain = g->Generate({w}, o).image;
  std::vector<int64_t> seen;
  o.after_block = [&](int64_t resolution) { seen.push_back(resolution); };
  EXPECT_TRUE(torch::equal(g->Generate({w}, o).image, plain));
  EXPECT_EQ(seen, (std::vector<int64_t>{4, 8, 16, 32}));
}

// The phase (polyphase) formulation of the stride-2 transposed convolution
// against LibTorch's own, for odd and even kernels, with and without bias,
// and its gradients.
TEST(Layers, ConvTransposeStride2MatchesTransposedConvolution) {
  torch::manual_seed(3);
  for (int64_t k : {3, 4}) {
    for (bool with_bias : {false, true}) {
      auto x = torch::randn({2, 5, 6, 7}, torch::requires_grad());
      auto w = torch::randn({4, 5, k, k}, torch::requires_grad());
      auto bias = with_bias ? torch::randn({4}) : torch::Tensor();
      auto ref = at::conv_transpose2d(x, w.transpose(0, 1), bias, 2);
      auto got = ConvTransposeStride2(x, w, bias);
      ASSERT_EQ(got.sizes(), ref.sizes()) << "k=" << k;
      EXPECT_LE((got - ref).abs().max().item<double>(), 1e-5 * ref.abs().max().item<double>())
          << "k=" << k << " bias=" << with_bias;
      auto seed = torch::randn_like(ref);
      auto gref = torch::autograd::grad({ref}, {x, w}, {seed});
      auto ggot = torch::autograd::grad({got}, {x, w}, {seed});
      for (int i = 0; i < 2; ++i) {
        EXPECT_LE((ggot[i] - gref[i]).abs().max().item<double>(),
                  1e-5 * gref[i].abs().max().item<double>())
            << "gradient " << i << " k=" << k;
      }
    }
  }
}

// The ToRGB skip upsampling (four output phases of one depthwise 2x2 conv)
// against upfirdn2d's definition (zero insertion, pad (2,1), flipped kernel).
TEST(Layers, SkipUpsamplingMatchesUpfirdn2d) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  ToRgb to_rgb(6, 8, /*upsample=*/true);
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(5);
  to_rgb->ResetParameters(rng);  // parameters start uninitialised
  to_rgb->conv->weight.zero_();  // output = bias (zero) + upsampled skip
  to_rgb->bias.zero_();
  auto skip = torch::randn({2, 3, 5, 7});
  auto x = torch::randn({2, 6, 10, 14});
  auto style = torch::randn({2, 8});
  auto expected = Upfirdn2d(skip, to_rgb->upsample_kernel, 2, 1, 2, 1);
  for (ConvMode mode : {ConvMode::kReference, ConvMode::kFused}) {
    auto got = to_rgb->forward(x, style, skip, mode);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LE((got - expected).abs().max().item<double>(), 1e-6);
  }
}

// The upsampling convolution and blur composed into one convolution and a
// pixel shuffle, against the two run one after the other (LibTorch's
// transposed convolution, the depthwise blur), with and without a bias, for
// both memory formats, and its gradients in x and the weight. On
// $RESTYLE_TEST_DEVICE.
TEST(Layers, SubpixelUpsamplingIsTransposedConvThenBlur) {
  const auto device = ::restyle::testing::TestDevice();
  torch::manual_seed(12);
  const auto blur = MakeBlurKernel({1, 3, 3, 1}, 4.0).to(device);
  const auto flipped = blur.flip({0, 1});
  for (bool channels_last : {false, true}) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(std::string(channels_last ? "nhwc" : "nchw") + (with_bias ? " bias" : ""));
      auto x = torch::randn({2, 5, 6, 7}, device);
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      x.requires_grad_(true);
      auto weight = torch::randn({4, 5, 3, 3}, device).requires_grad_(true);
      auto bias = with_bias ? torch::randn({4}, device) : torch::Tensor();
      auto t = at::conv_transpose2d(x, weight.transpose(0, 1), {}, 2);  // (2,4,15,17)
      auto expected = at::conv2d(t, flipped.view({1, 1, 4, 4}).expand({4, 1, 4, 4}), bias, 1,
                                 1, 1, /*groups=*/4);
      auto got = UpsampleBlurSubpixel(x, weight, blur, bias);
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 4, 12, 14}));
      ASSERT_EQ(expected.sizes(), got.sizes());
      EXPECT_TRUE(got.is_contiguous(channels_last ? at::MemoryFormat::ChannelsLast
                                                  : at::MemoryFormat::Contiguous));
      const double scale = expected.abs().max().item<double>();
      EXPECT_LE((got - expected).abs().max().item<double>(), 1e-5 * scale);
      auto probe = torch::randn_like(expected);
      auto g_ref = torch::autograd::grad({(expected * probe).sum()}, {x, weight});
      auto g_got = torch::autograd::grad({(got * probe).sum()}, {x, weight});
      for (int i = 0; i < 2; ++i) {
        const double gs = g_ref[i].abs().max().item<double>();
        ASSERT_GT(gs, 0);
        EXPECT_LE((g_got[i] - g_ref[i]).abs().max().item<double>(), 1e-5 * gs) << "grad " << i;
      }
    }
  }
}

TEST(Layers, ConvModeNamesRoundTrip) {
  for (ConvMode mode : {ConvMode::kAuto, ConvMode::kReference, ConvMode::kFused,
                        ConvMode::kFusedTransposed, ConvMode::kFusedSubpixel}) {
    ConvMode parsed = ConvMode::kAuto;
    ASSERT_TRUE(ParseConvMode(ConvModeName(mode), &parsed)) << ConvModeName(mode);
    EXPECT_EQ(parsed, mode);
  }
  ConvMode untouched = ConvMode::kReference;
  EXPECT_FALSE(ParseConvMode("fast", &untouched));
  EXPECT_FALSE(ParseConvMode("", &untouched));
  EXPECT_EQ(untouched, ConvMode::kReference);
}

TEST(Generator, FormulationsAgreeAtBatch) {
  torch::manual_seed(31);  // LibTorch's default generator starts from a random seed
  torch::NoGradGuard no_grad;
  auto g = RandomGenerator(TinyConfig(), 8);
  auto w = torch::randn({5, 16});
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  o.conv = ConvMode::kReference;
  auto ref = g->Generate({w}, o).image;
  const double scale = ref.abs().max().item<double>();
  for (ConvMode mode : {ConvMode::kFused, ConvMode::kFusedTransposed, ConvMode::kFusedSubpixel}) {
    o.conv = mode;
    auto fused = g->Generate({w}, o).image;
    EXPECT_LE((ref - fused).abs().max().item<double>(), 1e-5 * scale) << ConvModeName(mode);
  }
}

// Channels-last activations: the same function up to float rounding, with
// and without autograd (W+ and weight gradients), at batch 1 (weights folded)
// and above (shared convolution); every recorded activation really is NHWC
// (a layer that silently fell back to NCHW would fail), and the image comes
// back contiguous. On $RESTYLE_TEST_DEVICE (bench/gpu_check.sh runs it on CUDA,
// where each convolution's layout is cuDNN's choice).
TEST(Generator, ChannelsLastIsTheSameFunctionInNhwc) {
  torch::manual_seed(31);  // LibTorch's default generator starts from a random seed
  auto g = RandomGenerator(TinyConfig(32), 9);
  g->to(::restyle::testing::TestDevice());
  for (auto [mode, batch] : {std::pair{ConvMode::kFused, 1}, std::pair{ConvMode::kFused, 3},
                             std::pair{ConvMode::kFusedTransposed, 3},
                             std::pair{ConvMode::kFusedSubpixel, 1},
                             std::pair{ConvMode::kFusedSubpixel, 3}}) {
    SCOPED_TRACE(std::string(ConvModeName(mode)) + " batch " + std::to_string(batch));
    auto wplus = torch::randn({batch, g->config().n_latent(), 16}).to(::restyle::testing::TestDevice());
    SynthesisOptions o;
    o.noise = NoiseMode::kStored;
    o.conv = mode;
    o.record_layers = true;
    auto run = [&](bool channels_last, bool grad) {
      o.channels_last = channels_last;
      torch::AutoGradMode mode(grad);
      return g->Synthesize(grad ? wplus.clone().requires_grad_(true) : wplus, o);
    };
    {
      const SynthesisResult nchw = run(false, false);
      const SynthesisResult nhwc = run(true, false);
      EXPECT_TRUE(nhwc.image.is_contiguous());
      const double scale = nchw.image.abs().max().item<double>();
      EXPECT_LE((nhwc.image - nchw.image).abs().max().item<double>(), 1e-5 * scale);
      int checked = 0;
      for (const auto& [name, t] : nhwc.layers) {
        if (name.rfind("out_", 0) != 0) continue;
        EXPECT_TRUE(t.is_contiguous(at::MemoryFormat::ChannelsLast)) << name;
        EXPECT_FALSE(t.is_contiguous()) << name;
        ++checked;
      }
      EXPECT_EQ(checked, g->config().num_noise_layers());
    }
    auto& conv_weight = g->convs->ptr<StyledConvImpl>(2)->conv->weight;
    conv_weight.set_requires_grad(true);
    std::vector<torch::Tensor> grads[2];
    for (bool channels_last : {false, true}) {
      const SynthesisResult r = run(channels_last, true);
      torch::manual_seed(4);
      auto probe = torch::randn_like(r.image);
      grads[channels_last] =
          torch::autograd::grad({(r.image * probe).sum()}, {r.latent, conv_weight});
    }
    conv_weight.set_requires_grad(false);
    for (int i = 0; i < 2; ++i) {
      const double scale = grads[0][i].abs().max().item<double>();
      ASSERT_GT(scale, 0) << "gradient " << i;
      EXPECT_LE((grads[1][i] - grads[0][i]).abs().max().item<double>(), 1e-4 * scale)
          << "gradient " << i;
    }
  }
}

// The same inputs give bit-identical images and gradients on every call, in
// every formulation and layout (a job's reproducibility rests on it). On
// $RESTYLE_TEST_DEVICE; cuDNN's backward algorithms need not be deterministic,
// so on CUDA only the images are compared.
TEST(Generator, FormulationsAreDeterministic) {
  const auto device = ::restyle::testing::TestDevice();
  auto g = RandomGenerator(TinyConfig(32), 13);
  g->to(device);
  g->SetAllTrainable(true);
  for (ConvMode mode : {ConvMode::kReference, ConvMode::kFused, ConvMode::kFusedTransposed,
                        ConvMode::kFusedSubpixel}) {
    for (bool channels_last : {false, true}) {
      if (channels_last && mode == ConvMode::kReference) continue;
      for (int64_t batch : {1, 3}) {
        SCOPED_TRACE(std::string(ConvModeName(mode)) + (channels_last ? " nhwc" : "") +
                     " batch " + std::to_string(batch));
        torch::manual_seed(batch);
        auto w = torch::randn({batch, g->config().n_latent(), 16}).to(device);
        SynthesisOptions o;
        o.noise = NoiseMode::kStored;
        o.conv = mode;
        o.channels_last = channels_last;
        std::vector<torch::Tensor> first;
        for (int run = 0; run < 4; ++run) {
          g->zero_grad();
          auto wl = w.clone().requires_grad_(true);
          auto img = g->Synthesize(wl, o).image;
          (img * img).mean().backward();
          std::vector<torch::Tensor> got = {img.detach()};
          if (device.is_cpu()) {
            got.push_back(wl.grad());
            for (const auto& p : g->parameters()) {
              if (p.grad().defined()) got.push_back(p.grad().clone());
            }
          }
          if (run == 0) {
            first = got;
            continue;
          }
          ASSERT_EQ(got.size(), first.size());
          for (size_t i = 0; i < got.size(); ++i) {
            EXPECT_TRUE(torch::equal(got[i], first[i])) << "run " << run << " tensor " << i;
          }
        }
      }
    }
  }
}

// A bfloat16 copy runs the whole generator in bfloat16: close to float32
// (bfloat16 keeps 8 significant bits) but not equal to it. On
// $RESTYLE_TEST_DEVICE.
TEST(Generator, Bfloat16CopyIsCloseToFloat32) {
  torch::manual_seed(31);  // LibTorch's default generator starts from a random seed
  torch::NoGradGuard no_grad;
  auto g = RandomGenerator(TinyConfig(32), 10);
  g->to(::restyle::testing::TestDevice());
  Generator low(g->Clone());
  low->to(torch::kBFloat16);
  auto w = torch::randn({2, 16}).to(::restyle::testing::TestDevice());
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  for (ConvMode mode : {ConvMode::kFused, ConvMode::kFusedTransposed, ConvMode::kFusedSubpixel}) {
    for (bool channels_last : {false, true}) {
      SCOPED_TRACE(std::string(ConvModeName(mode)) + (channels_last ? " nhwc" : ""));
      o.conv = mode;
      o.channels_last = channels_last;
      const torch::Tensor ref = g->Generate({w}, o).image;
      const torch::Tensor got = low->Generate({w.to(torch::kBFloat16)}, o).image;
      ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
      const double scale = ref.abs().max().item<double>();
      const double diff = (got.to(torch::kFloat32) - ref).abs().max().item<double>();
      EXPECT_LE(diff, 5e-2 * scale);
      EXPECT_GT(diff, 1e-4 * scale);
    }
  }
}

// StyledTail (the no-grad StyledConv tail; one CUDA kernel where built)
// against its definition, for every layout, dtype and noise shape it takes. On
// $RESTYLE_TEST_DEVICE: on CUDA this checks the kernel (bench/gpu_check.sh),
// on the CPU LibTorch's path.
TEST(Layers, StyledTailMatchesItsDefinition) {
  torch::NoGradGuard no_grad;
  const torch::Device device = ::restyle::testing::TestDevice();
  torch::manual_seed(6);
  const int64_t n = 3, c = 5, h = 4, w = 7;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (bool channels_last : {false, true}) {
      for (int64_t noise_batch : {int64_t{1}, n}) {
        for (bool with_gain : {true, false}) {
          SCOPED_TRACE(std::string(c10::toString(dtype)) + (channels_last ? " nhwc" : " nchw") +
                       " noise batch " + std::to_string(noise_batch) +
                       (with_gain ? " gain" : " no gain"));
          auto y = torch::randn({n, c, h, w}).to(device, dtype);
          if (channels_last) y = y.contiguous(at::MemoryFormat::ChannelsLast);
          // Every operand in y's dtype, as the generator's parameters are.
          auto gain = with_gain ? torch::rand({n, c}).add(0.5).to(device, dtype) : torch::Tensor();
          auto bias = with_gain ? torch::randn({c}).to(device, dtype) : torch::Tensor();
          auto noise = torch::randn({noise_batch, 1, h, w}).to(device, dtype);
          auto nw = torch::full({1}, 0.7).to(device, dtype);
          // The definition, in float32.
          auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
          auto expected = f32(y);
          if (with_gain) {
            expected = expected * f32(gain).view({n, c, 1, 1}) + f32(bias).view({1, c, 1, 1});
          }
          expected = at::leaky_relu(expected + f32(noise) * f32(nw), 0.2);
          const torch::Tensor got = StyledTail(y.clone(), gain, bias, noise, nw);
          ASSERT_EQ(got.sizes(), expected.sizes());
          EXPECT_EQ(got.scalar_type(), dtype);
          const double tol = dtype == torch::kBFloat16 ? 2e-2 : 1e-5;
          EXPECT_LE((got.to(torch::kFloat32) - expected).abs().max().item<double>(),
                    tol * expected.abs().max().item<double>());
        }
      }
    }
  }
}

// StyledTailTrain (the StyledConv tail under autograd; one CUDA kernel each
// way where built) against LibTorch's ops with autograd: the forward to the
// bit, the gradients of y, demod, noise_weight and bias to float rounding
// (bfloat16: LibTorch rounds every intermediate gradient, the kernel sums in
// float32). Every layout, dtype, noise batch; 40 channels (a partial tile of
// 32 in channels-last). On $RESTYLE_TEST_DEVICE: on CUDA this checks the
// kernels, on the CPU the backward's formulas.
TEST(Layers, StyledTailTrainMatchesAutograd) {
  const auto device = ::restyle::testing::TestDevice();
  const double sqrt2 = std::sqrt(2.0);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (bool channels_last : {false, true}) {
      for (int64_t noise_batch : {1, 3}) {
        SCOPED_TRACE(std::string(dtype == torch::kFloat32 ? "float32" : "bfloat16") +
                     (channels_last ? " nhwc" : " nchw") + " noise batch " +
                     std::to_string(noise_batch));
        torch::manual_seed(21);
        const auto opts = torch::TensorOptions().dtype(dtype).device(device);
        auto y = torch::randn({3, 40, 9, 11}).to(opts);
        if (channels_last) y = y.contiguous(at::MemoryFormat::ChannelsLast);
        auto demod = (torch::rand({3, 40}) + 0.5).to(opts);
        auto noise = torch::randn({noise_batch, 1, 9, 11}).to(opts);
        auto noise_weight = torch::randn({1}).to(opts);
        auto bias = torch::randn({40}).to(opts);
        auto leaves = [&] {
          return std::vector<torch::Tensor>{y.detach().clone().requires_grad_(true),
                                            demod.detach().clone().requires_grad_(true),
                                            noise_weight.detach().clone().requires_grad_(true),
                                            bias.detach().clone().requires_grad_(true)};
        };
        auto ref_in = leaves(), got_in = leaves();
        auto ref = at::leaky_relu((ref_in[0] * ref_in[1].view({3, 40, 1, 1}) +
                                   ref_in[2] * noise) + ref_in[3].view({1, 40, 1, 1}), 0.2) *
                   sqrt2;
        auto got = StyledTailTrain(got_in[0], got_in[1], noise, got_in[2], got_in[3]);
        ASSERT_EQ(got.scalar_type(), dtype);
        EXPECT_TRUE(torch::equal(got, ref))
            << "max |diff| " << (got.to(torch::kFloat64) - ref.to(torch::kFloat64)).abs().max();
        EXPECT_TRUE(got.is_contiguous(y.suggest_memory_format()));
        auto probe = torch::randn(ref.sizes()).to(opts);
        auto g_ref = torch::autograd::grad({(ref * probe).sum()}, ref_in);
        auto g_got = torch::autograd::grad({(got * probe).sum()}, got_in);
        const double tolerance = dtype == torch::kFloat32 ? 1e-5 : 3e-2;
        for (int i = 0; i < 4; ++i) {
          ASSERT_EQ(g_got[i].sizes(), g_ref[i].sizes()) << "grad " << i;
          auto a = g_ref[i].to(torch::kFloat64), b = g_got[i].to(torch::kFloat64);
          const double scale = a.abs().max().item<double>();
          ASSERT_GT(scale, 0) << "grad " << i;
          EXPECT_LE((a - b).abs().max().item<double>(), tolerance * scale) << "grad " << i;
        }
      }
    }
  }
}

TEST(Generator, LayersAndTrainability) {
  auto g = RandomGenerator(TinyConfig(), 9);
  auto layers = g->SynthesisLayers();
  std::vector<std::string> names;
  for (auto& l : layers) names.push_back(l.first);
  EXPECT_EQ(names, (std::vector<std::string>{"input", "conv1", "to_rgb1", "convs.0", "convs.1",
                                             "convs.2", "convs.3", "convs.4", "convs.5",
                                             "to_rgbs.0", "to_rgbs.1", "to_rgbs.2"}));
  EXPECT_EQ(g->LayerSelectionNames(),
            (std::vector<std::string>{"conv1", "to_rgb1", "convs.0", "convs.1", "convs.2",
                                      "convs.3", "convs.4", "convs.5"}));
  g->SetAllTrainable(false);
  g->SetTrainable({"input", "convs.3"}, true);
  for (auto& p : g->named_parameters()) {
    const bool expect = p.key().rfind("input.", 0) == 0 || p.key().rfind("convs.3.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), expect) << p.key();
  }
  EXPECT_THROW(g->SetTrainable({"convs.99"}, true), Error);
  // Clone keeps the flags and is independent.
  Generator copy(g->Clone());
  EXPECT_TRUE(copy->convs->ptr<StyledConvImpl>(3)->conv->weight.requires_grad());
  EXPECT_FALSE(copy->conv1->conv->weight.requires_grad());
  EXPECT_NE(copy->input->input.data_ptr(), g->input->input.data_ptr());
}

TEST(Images, Uint8ConversionAndGrid) {
  auto x = torch::tensor({-2.0f, -1.0f, 0.0f, 0.999f, 1.0f, 3.0f}).view({1, 3, 1, 2});
  auto u = ToUint8Images(x);
  EXPECT_EQ(u.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  // (clamp(x)+1)/2*255+0.5 truncated: -1->0, 0->128 (127.5+0.5), 1->255.
  auto flat = u.permute({0, 3, 1, 2}).reshape({-1});
  EXPECT_EQ(flat[0].item<int>(), 0);
  EXPECT_EQ(flat[1].item<int>(), 0);
  EXPECT_EQ(flat[2].item<int>(), 128);
  EXPECT_EQ(flat[3].item<int>(), 255);
  EXPECT_EQ(flat[5].item<int>(), 255);
  auto grid = Uint8Grid(torch::ones({5, 3, 4, 6}), 2, 2);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{3 * 6 + 2, 2 * 8 + 2, 3}));
  EXPECT_EQ(grid[0][0][0].item<int>(), 0);
  EXPECT_EQ(grid[2][2][0].item<int>(), 255);
  EXPECT_EQ(grid[14][10][1].item<int>(), 0);  // the empty 6th cell stays padding
}

#ifdef RESTYLE_HAVE_PNG
TEST(Images, PngRoundTrip) {
  auto g = RandomGenerator(TinyConfig(16), 4);
  torch::NoGradGuard no_grad;
  SynthesisOptions o;
  o.noise = NoiseMode::kStored;
  auto grid = Uint8Grid(g->Generate({torch::randn({4, 16})}, o).image, 2);
  const auto path = TempPath("grid.png");
  WritePng(path, grid);
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 33u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  auto be32 = [&](size_t off) {
    return (uint32_t(uint8_t(bytes[off])) << 24) | (uint32_t(uint8_t(bytes[off + 1])) << 16) |
           (uint32_t(uint8_t(bytes[off + 2])) << 8) | uint32_t(uint8_t(bytes[off + 3]));
  };
  EXPECT_EQ(be32(16), uint32_t(grid.size(1)));
  EXPECT_EQ(be32(20), uint32_t(grid.size(0)));
  EXPECT_TRUE(torch::equal(DecodePng(bytes), grid));
  EXPECT_THROW(DecodePng("not a png"), Error);
  EXPECT_THROW(EncodePng(torch::zeros({4, 4, 3})), Error);  // float, not uint8
  fs::remove(path);
}
#endif

}  // namespace
}  // namespace restyle::engine
