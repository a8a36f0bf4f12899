// tools/convert_stylegan2.py end to end: checkpoints in both torch.save
// formats (written by tests/tools/make_sg2_checkpoints.py from the golden
// sg2_tiny tensors) are converted and read by the C++ loader, which must give
// the original tensors bitwise. Skipped when python3 has no torch.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <unistd.h>

#include "tests/golden/golden.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::engine {
namespace {

namespace fs = std::filesystem;

int RunCommand(const std::string& cmd);

// The first interpreter that can import torch: $RESTYLE_PYTHON3, the one CMake
// found, Debian's /usr/bin/python3 (python3-torch), then python3 on PATH.
// Empty when none can.
std::string Python() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RESTYLE_PYTHON3")) candidates.push_back(env);
#ifdef RESTYLE_PYTHON3
  candidates.push_back(RESTYLE_PYTHON3);
#endif
  candidates.push_back("/usr/bin/python3");
  candidates.push_back("python3");
  for (const auto& c : candidates) {
    if (!c.empty() && RunCommand(c + " -c 'import torch' >/dev/null 2>&1") == 0) return c;
  }
  return "";
}

int RunCommand(const std::string& cmd) {
  std::printf("+ %s\n", cmd.c_str());
  std::fflush(stdout);
  return std::system(cmd.c_str());
}

TEST(ConvertStylegan2, BothCheckpointFormatsLoadIdentically) {
  RESTYLE_REQUIRE_GOLDEN();
  const std::string python = Python();
  RESTYLE_REQUIRE(!python.empty(), "a python3 with torch (Debian python3-torch)");
  // Any golden sg2 model will do; take the one the synthesis cases use.
  auto cases = testing::CasesOfKind("sg2_synthesis");
  RESTYLE_REQUIRE(!cases.empty(), "a golden sg2_synthesis case");
  const std::string model = cases[0].ModelPath("generator");
  const std::string src = RESTYLE_SOURCE_DIR;
  const fs::path dir = fs::temp_directory_path() / ("restyle_sg2conv_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ASSERT_EQ(RunCommand(python + " " + src + "/tests/tools/make_sg2_checkpoints.py '" + model + "' '" +
                dir.string() + "'"),
            0);
  const auto& golden = testing::GoldenModel(model);
  for (const std::string name : {"legacy", "zip"}) {
    SCOPED_TRACE(name);
    const std::string out = (dir / (name + ".safetensors")).string();
    ASSERT_EQ(RunCommand(python + " " + src + "/tools/convert_stylegan2.py '" +
                  (dir / (name + ".pt")).string() + "' '" + out + "'"),
              0);
    auto g = LoadGenerator(out);
    auto sd = StateDict(*g);
    ASSERT_EQ(sd.size(), golden.size());
    for (const auto& [tensor, value] : golden) {
      ASSERT_TRUE(sd.count(tensor)) << tensor;
      EXPECT_TRUE(torch::equal(sd.at(tensor), value)) << tensor;
    }
    ASSERT_TRUE(g->latent_avg.defined());
    auto expected = torch::arange(g->config().style_dim, torch::kFloat32) * 0.01 - 0.3;
    EXPECT_TRUE(torch::equal(g->latent_avg.view({-1}), expected));
    auto meta = ReadSafetensorsMetadata(out);
    EXPECT_EQ(meta.at("size"), std::to_string(g->config().size));
    EXPECT_EQ(meta.at("style_dim"), std::to_string(g->config().style_dim));
    EXPECT_EQ(meta.at("n_mlp"), std::to_string(g->config().n_mlp));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace restyle::engine
