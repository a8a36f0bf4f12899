// Loading OpenAI-style TorchScript archives and converted safetensors
// (golden "clip_torchscript" cases), and tools/convert_clip.py end to end.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include "tests/golden/golden.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

using restyle::testing::CasesOfKind;
using restyle::testing::ExpectMatches;
using restyle::testing::GoldenCase;
using restyle::testing::GoldenModel;
using restyle::testing::GoldenPath;

// Features of `model` on every clip_encode_image / clip_encode_text case,
// compared with the golden outputs under `label`.
void ExpectSameFeatures(ClipModel& model, const std::string& label) {
  torch::NoGradGuard no_grad;
  for (const GoldenCase& c : CasesOfKind("clip_encode_image")) {
    ExpectMatches(c.name, label + ".image_features", model->EncodeImage(c.Tensor("image")),
                  c.Tensor("image_features"));
    // The archives are not batch-specialised: batch 1 too.
    ExpectMatches(c.name, label + ".image_features_batch1",
                  model->EncodeImage(c.Tensor("image").slice(0, 0, 1)),
                  c.Tensor("image_features").slice(0, 0, 1));
  }
  for (const GoldenCase& c : CasesOfKind("clip_encode_text")) {
    ExpectMatches(c.name, label + ".text_features", model->EncodeText(c.Tensor("tokens")),
                  c.Tensor("text_features"));
  }
}

std::string TempPath(const std::string& stem) {
  return ::testing::TempDir() + "/" + stem + "." + std::to_string(::getpid()) + ".safetensors";
}

TEST(ClipCheckpointGolden, TorchScriptArchiveEqualsSafetensors) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_torchscript")) {
    SCOPED_TRACE(c.name);
    const std::string archive = GoldenPath(c.meta.at("archive").get<std::string>());
    const TensorMap tensors = ReadClipTorchScript(archive);
    const TensorMap& golden = GoldenModel(c.meta.at("weights").get<std::string>());
    EXPECT_EQ(tensors.size(), golden.size());
    for (const auto& [name, t] : golden) {
      auto it = tensors.find(name);
      ASSERT_NE(it, tensors.end()) << name;
      EXPECT_EQ(it->second.scalar_type(), at::kFloat);
      EXPECT_TRUE(at::equal(it->second, t)) << name << " differs from the safetensors";
    }
    for (const auto& [name, value] : c.meta.at("extra_entries_in_state_dict").items()) {
      EXPECT_EQ(tensors.count(name), 0u) << name << " should be dropped";
    }
    ClipModel model = LoadClip(archive);
    ExpectSameFeatures(model, "torchscript");
  }
}

// The archive's traced graph IS the reference computation (openai/CLIP's
// encode_image / encode_text as executed by torch 1.13), run here by the same
// LibTorch on the same CPU. Our model must agree with it to the golden
// tolerance; the deviation (0 when bitwise) is printed.
TEST(ClipCheckpointGolden, MatchesTracedReferenceGraphOnThisMachine) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_torchscript")) {
    const std::string archive = GoldenPath(c.meta.at("archive").get<std::string>());
    torch::jit::Module traced = torch::jit::load(archive, torch::kCPU);
    traced.to(torch::kFloat);
    traced.eval();
    ClipModel model = LoadClip(archive);
    torch::NoGradGuard no_grad;
    auto report = [&](const std::string& what, const torch::Tensor& ours,
                      const torch::Tensor& ref) {
      const double diff = (ours - ref).abs().max().item<double>();
      const double scale = ref.abs().max().item<double>();
      std::cout << "[ clip ] " << what << " vs traced reference: max |diff| = " << diff
                << (diff == 0.0 ? " (bitwise equal)" : "") << "\n";
      EXPECT_LE(diff, 1e-5 * scale) << what;
    };
    for (const GoldenCase& ic : CasesOfKind("clip_encode_image")) {
      const torch::Tensor image = ic.Tensor("image");
      const torch::Tensor ref = traced.run_method("encode_image", image).toTensor();
      report(ic.name + " encode_image", model->EncodeImage(image), ref);
    }
    for (const GoldenCase& tc : CasesOfKind("clip_encode_text")) {
      const torch::Tensor tokens = tc.Tensor("tokens");
      const torch::Tensor ref = traced.run_method("encode_text", tokens).toTensor();
      ClipTextOptions full;
      full.cut_after_eot = false;
      report(tc.name + " encode_text (77 positions)", model->EncodeText(tokens, full), ref);
      report(tc.name + " encode_text (EOT cut)", model->EncodeText(tokens), ref);
    }
  }
}

TEST(ClipCheckpointGolden, LoadClipReadsSafetensors) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_torchscript")) {
    ClipModel model = LoadClip(GoldenPath(c.meta.at("weights").get<std::string>()));
    ExpectSameFeatures(model, "safetensors");
  }
}

TEST(ClipCheckpointGolden, ConverterOutputLoadsWithSameFeatures) {
  RESTYLE_REQUIRE_GOLDEN();
  const std::string python = testing::PythonWithTorch();
  RESTYLE_REQUIRE(!python.empty(), "a python3 with torch (set RESTYLE_PYTHON)");
  const std::string tool = std::string(RESTYLE_SOURCE_DIR) + "/tools/convert_clip.py";
  for (const GoldenCase& c : CasesOfKind("clip_torchscript")) {
    const std::string archive = GoldenPath(c.meta.at("archive").get<std::string>());
    for (const std::string dtype : {"as-stored", "float32"}) {
      SCOPED_TRACE(c.name + " --dtype " + dtype);
      const std::string out = TempPath("convert_clip_" + dtype);
      const std::string cmd =
          python + " " + tool + " " + archive + " " + out + " --dtype " + dtype + " >/dev/null";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
      const SafetensorsContents contents = ReadSafetensors(out);
      ASSERT_TRUE(contents.metadata.count("config"));
      const auto want = dtype == "float32" ? at::kFloat : at::kHalf;
      EXPECT_EQ(contents.tensors.at("visual.proj").scalar_type(), want);
      const TensorMap& golden = GoldenModel(c.meta.at("weights").get<std::string>());
      for (const auto& [name, t] : golden) {
        ASSERT_TRUE(contents.tensors.count(name)) << name;
        EXPECT_TRUE(at::equal(contents.tensors.at(name).to(at::kFloat), t)) << name;
      }
      ClipModel model = LoadClip(out);
      ExpectSameFeatures(model, "converted_" + dtype);
      std::remove(out.c_str());
    }
  }
}

TEST(ClipCheckpoint, ClearErrorsForBadFiles) {
  try {
    LoadClip("/nonexistent/clip.pt");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
  }
  const std::string junk = TempPath("junk");
  std::ofstream(junk) << "this is not a checkpoint at all";
  try {
    LoadClip(junk);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnimplemented) << e.what();
    EXPECT_NE(std::string(e.what()).find("convert_clip.py"), std::string::npos);
  }
  std::remove(junk.c_str());
}

}  // namespace
}  // namespace restyle::engine
