// Golden cases of kinds "sg2_mapping" and "sg2_synthesis", run with each
// exact formulation of the modulated convolutions. The call is decided by the
// case's JSON ("options", "scalars", tensor roles); nothing is hard-coded.
// $RESTYLE_TEST_DEVICE=cuda runs them on a GPU (bench/gpu_check.sh).
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cstdio>
#include <sstream>

#include "tests/golden/golden.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::engine {
namespace {

using testing::GoldenCase;
using testing::Json;

// The case's generator on the test device ($RESTYLE_TEST_DEVICE).
Generator LoadCaseGenerator(const GoldenCase& c) {
  auto g = GeneratorFromTensors(testing::GoldenModel(c.ModelPath("generator")),
                                c.ModelPath("generator"));
  g->to(testing::TestDevice());
  return g;
}

// A golden input on the test device.
torch::Tensor In(const GoldenCase& c, const std::string& name) {
  return c.Tensor(name).to(testing::TestDevice());
}

std::string g_label = "";  // suffix of the printed mode: "/b1", "/nhwc"
std::string ModeName(ConvMode m) { return ConvModeName(m) + g_label; }

// Compares with the manifest rule and prints the relative deviation per mode.
void Check(const GoldenCase& c, ConvMode mode, const std::string& name,
           const torch::Tensor& actual, const torch::Tensor& expected) {
  ASSERT_TRUE(actual.defined()) << c.name << "/" << name << " not produced";
  const torch::Tensor host = actual.cpu();
  ASSERT_EQ(host.sizes(), expected.sizes()) << c.name << "/" << name;
  testing::ExpectMatches(c.name, name, host, expected);
  const double scale = expected.abs().max().item<double>();
  const double dev = (host - expected).abs().max().item<double>();
  std::printf("[sg2 %-21s] %-28s %-16s max|a-b| %.3g  rel %.3g\n", ModeName(mode).c_str(), c.name.c_str(),
              name.c_str(), dev, scale > 0 ? dev / scale : dev);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// Tensor name whose role starts with `prefix` ("input"/"output"), else `fallback`.
std::string ByRole(const GoldenCase& c, const std::string& prefix, const std::string& fallback) {
  if (c.meta.contains("tensors")) {
    for (auto& [name, t] : c.meta.at("tensors").items()) {
      if (t.contains("role") && t.at("role").get<std::string>().rfind(prefix, 0) == 0) return name;
    }
  }
  return fallback;
}

// An option from meta["options"], else meta["scalars"].
const Json* Option(const GoldenCase& c, const std::string& key) {
  for (const char* section : {"options", "scalars"}) {
    if (c.meta.contains(section) && c.meta.at(section).contains(key)) {
      return &c.meta.at(section).at(key);
    }
  }
  return nullptr;
}

TEST(Stylegan2Golden, Mapping) {
  RESTYLE_REQUIRE_GOLDEN();
  torch::NoGradGuard no_grad;
  for (const auto& c : testing::CasesOfKind("sg2_mapping")) {
    SCOPED_TRACE(c.name);
    auto g = LoadCaseGenerator(c);
    const std::string in = ByRole(c, "input", "z"), out = ByRole(c, "output", "w");
    Check(c, ConvMode::kAuto, out, g->Mapping(In(c, in)), c.Tensor(out));
  }
}

// Runs every sg2_synthesis case with `mode`. With per_sample, each sample of
// the batch runs alone (batch 1 takes its own fused path) and is compared with
// its slice of the golden tensors. With channels_last, activations are NHWC.
void RunSynthesisCases(ConvMode mode, bool per_sample = false, bool channels_last = false) {
  g_label = std::string(per_sample ? "/b1" : "") + (channels_last ? "/nhwc" : "");
  torch::NoGradGuard no_grad;
  for (const auto& c : testing::CasesOfKind("sg2_synthesis")) {
    SCOPED_TRACE(c.name + std::string(" ") + ModeName(mode));
    auto g = LoadCaseGenerator(c);
    const Json* input = Option(c, "input");
    ASSERT_NE(input, nullptr) << c.name << ": no options.input";
    std::vector<torch::Tensor> styles;
    for (const auto& name : Split(input->get<std::string>())) styles.push_back(In(c, name));

    SynthesisOptions o;
    o.conv = mode;
    o.channels_last = channels_last;
    o.record_layers = true;
    if (const Json* v = Option(c, "input_is_latent")) {
      o.input_is_latent = v->get<bool>();
    } else {
      o.input_is_latent = input->get<std::string>()[0] != 'z';
    }
    const Json* noise = Option(c, "noise");
    const Json* randomize = Option(c, "randomize_noise");
    if (noise != nullptr && noise->get<std::string>() == "given") {
      o.noise = NoiseMode::kGiven;
      for (int64_t i = 0; i < g->config().num_noise_layers(); ++i) {
        o.noise_tensors.push_back(In(c, "noise_" + std::to_string(i)));
      }
    } else {
      ASSERT_TRUE(randomize != nullptr && !randomize->get<bool>())
          << c.name << ": random noise cannot be compared";
      o.noise = NoiseMode::kStored;
    }
    if (const Json* v = Option(c, "inject_index"); v != nullptr && !v->is_null()) {
      o.inject_index = v->get<int64_t>();
    }
    if (const Json* v = Option(c, "truncation")) o.truncation = v->get<double>();
    if (c.Has("truncation_latent")) o.truncation_latent = In(c, "truncation_latent");

    const int64_t batch = styles[0].size(0);
    for (int64_t i = 0; i < (per_sample ? batch : 1); ++i) {
      auto slice = [&](const torch::Tensor& t) {
        return per_sample && t.size(0) == batch ? t.narrow(0, i, 1) : t;
      };
      std::vector<torch::Tensor> st;
      for (const auto& s : styles) st.push_back(slice(s));
      SynthesisOptions oi = o;
      for (auto& n : oi.noise_tensors) n = slice(n);
      auto r = g->Generate(st, oi);
      Check(c, mode, "image", r.image, slice(c.Tensor("image")));
      if (c.Has("latent")) Check(c, mode, "latent", r.latent, slice(c.Tensor("latent")));
      for (const auto& [name, t] : c.Tensors()) {
        if (name.rfind("out_", 0) == 0 || name.rfind("skip_", 0) == 0) {
          auto it = r.layers.find(name);
          ASSERT_NE(it, r.layers.end()) << c.name << ": layer output " << name << " not recorded";
          Check(c, mode, name, it->second, slice(t));
        }
      }
    }
  }
}

TEST(Stylegan2Golden, SynthesisReference) {
  RESTYLE_REQUIRE_GOLDEN();
  RunSynthesisCases(ConvMode::kReference);
}

TEST(Stylegan2Golden, SynthesisFused) {
  RESTYLE_REQUIRE_GOLDEN();
  RunSynthesisCases(ConvMode::kFused);
}

TEST(Stylegan2Golden, SynthesisFusedBatch1) {
  RESTYLE_REQUIRE_GOLDEN();
  RunSynthesisCases(ConvMode::kFused, /*per_sample=*/true);
}

TEST(Stylegan2Golden, SynthesisFusedTransposed) {
  RESTYLE_REQUIRE_GOLDEN();
  RunSynthesisCases(ConvMode::kFusedTransposed);
  RunSynthesisCases(ConvMode::kFusedTransposed, /*per_sample=*/true);
}

TEST(Stylegan2Golden, SynthesisFusedSubpixel) {
  RESTYLE_REQUIRE_GOLDEN();
  RunSynthesisCases(ConvMode::kFusedSubpixel);
  RunSynthesisCases(ConvMode::kFusedSubpixel, /*per_sample=*/true);
}

TEST(Stylegan2Golden, SynthesisChannelsLast) {
  RESTYLE_REQUIRE_GOLDEN();
  for (ConvMode mode : {ConvMode::kFused, ConvMode::kFusedTransposed, ConvMode::kFusedSubpixel}) {
    RunSynthesisCases(mode, /*per_sample=*/false, /*channels_last=*/true);
    RunSynthesisCases(mode, /*per_sample=*/true, /*channels_last=*/true);
  }
}

// Gradients flow through the fused formulations (training uses them) and
// agree with the reference formulation's, NCHW and NHWC. In float64: the
// formulations are the same function, so they agree to ~1e-12; in float32 a
// pre-activation within rounding of 0 can take the other side of the leaky
// ReLU in one formulation and move an early layer's gradient by ~1e-3 of its
// max, which makes a float32 comparison depend on the draw of w (float32
// agreement is what the golden image and trainer cases check).
TEST(Stylegan2Golden, GradientsMatchBetweenFormulations) {
  RESTYLE_REQUIRE_GOLDEN();
  auto cases = testing::CasesOfKind("sg2_synthesis");
  RESTYLE_REQUIRE(!cases.empty(), "a golden sg2_synthesis case");
  auto g = LoadCaseGenerator(cases[0]);
  g->to(torch::kFloat64);
  torch::manual_seed(20);
  for (int64_t batch : {2, 1}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    auto w = (torch::randn({batch, g->config().style_dim}, torch::kFloat64) * 0.5)
                 .to(testing::TestDevice());
    const std::vector<std::pair<ConvMode, bool>> arrangements = {
        {ConvMode::kReference, false}, {ConvMode::kFused, false},
        {ConvMode::kFusedTransposed, false}, {ConvMode::kFusedSubpixel, false},
        {ConvMode::kFused, true}, {ConvMode::kFusedTransposed, true},
        {ConvMode::kFusedSubpixel, true}};
    std::vector<std::map<std::string, torch::Tensor>> grads(arrangements.size());
    int k = 0;
    for (const auto& [mode, channels_last] : arrangements) {
      g->zero_grad();
      SynthesisOptions o;
      o.noise = NoiseMode::kStored;
      o.conv = mode;
      o.channels_last = channels_last;
      auto wl = w.clone().requires_grad_(true);
      auto img = g->Generate({wl}, o).image;
      (img * img).mean().backward();
      for (auto& p : g->named_parameters()) {
        if (p.value().grad().defined()) grads[k][p.key()] = p.value().grad().clone();
      }
      grads[k]["w"] = wl.grad().clone();
      ++k;
    }
    for (size_t a = 1; a < arrangements.size(); ++a) {
      SCOPED_TRACE(std::string(ConvModeName(arrangements[a].first)) +
                   (arrangements[a].second ? " nhwc" : ""));
      ASSERT_EQ(grads[0].size(), grads[a].size());
      for (auto& [name, gr] : grads[0]) {
        const double scale = gr.abs().max().item<double>();
        const double dev = (gr - grads[a].at(name)).abs().max().item<double>();
        EXPECT_LE(dev, 1e-9 * scale + 1e-15) << name << " max|grad| " << scale;
      }
    }
  }
}

}  // namespace
}  // namespace restyle::engine
