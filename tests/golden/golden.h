// Helpers for tests against the golden reference data.
//
// The golden directory is $RESTYLE_GOLDEN_DIR, or ../shared/golden beside the
// repository when unset. Tests walk manifest.json and never hard-code a case
// name, shape or value, so a second set with the same layout passes too.
// When the data is missing a test is skipped, except under CI=true where it
// fails (RequireGolden()).
//
// Tolerances come from manifest.json "tolerances" (first matching pattern on
// "<case>/<tensor>" wins). Every comparison records its deviation; the test
// binary prints the largest deviation per tensor kind at exit.
#ifndef RESTYLE_TESTS_GOLDEN_GOLDEN_H_
#define RESTYLE_TESTS_GOLDEN_GOLDEN_H_

#include <gtest/gtest.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "worker/engine/io/safetensors.h"

namespace restyle::testing {

using Json = nlohmann::json;

// The golden directory (no trailing slash).
std::string GoldenDir();

// True when `GoldenDir()/manifest.json` exists. Otherwise records a failure
// under CI=true, and returns false (callers then GTEST_SKIP()).
bool GoldenAvailable();

// Use at the top of every golden test body.
#define RESTYLE_REQUIRE_GOLDEN()                                              \
  do {                                                                        \
    if (!::restyle::testing::GoldenAvailable())                               \
      GTEST_SKIP() << "golden data not found at " << ::restyle::testing::GoldenDir(); \
  } while (0)

// True when $CI is "true": then nothing that can run may be skipped.
bool RunningInCi();

// The Python interpreter with torch (and numpy): $RESTYLE_PYTHON, python3 or
// /usr/bin/python3, the first that imports torch; "" when none does.
std::string PythonWithTorch();

// The device golden tests that support it run on: $RESTYLE_TEST_DEVICE
// ("cpu" by default, or "cuda"). For CUDA it turns TF32 off (cuDNN enables
// it for convolutions by default), so results are comparable with the
// float32 golden data. Throws when CUDA is asked for and not available.
torch::Device TestDevice();

// Skips the test when `missing` names something absent (e.g. "python3 with
// torch"), or fails it under CI=true, where every dependency is installed.
#define RESTYLE_REQUIRE(condition, missing)                                      \
  do {                                                                         \
    if (!(condition)) {                                                        \
      if (::restyle::testing::RunningInCi()) FAIL() << "CI=true but missing: " << missing; \
      GTEST_SKIP() << "missing: " << missing;                                  \
    }                                                                          \
  } while (0)

// Path of a file relative to the golden directory.
std::string GoldenPath(const std::string& relative);

// Parses a JSON file (absolute path). Fails the test (throws) on error.
Json ReadJsonFile(const std::string& path);

// The parsed manifest.json (cached).
const Json& Manifest();

// One case of the manifest.
struct GoldenCase {
  std::string name;  // e.g. "clip_encode_image"
  std::string kind;  // e.g. "clip_encode_image", "sg2_synthesis"
  Json meta;         // the case's JSON sidecar
  // Loads the case's tensors (cases/<name>.safetensors). Cached per case.
  const engine::TensorMap& Tensors() const;
  // Tensor by name; fails the test if absent.
  torch::Tensor Tensor(const std::string& name) const;
  bool Has(const std::string& name) const;
  // meta["scalars"][key] as double; fails if absent.
  double Scalar(const std::string& key) const;
  // Path of a model named in meta["models"][role] (absolute).
  std::string ModelPath(const std::string& role) const;
};

// Every case of the manifest whose kind equals `kind`. Under CI=true an empty
// result is a failure (the data is there, so the test must have work).
std::vector<GoldenCase> CasesOfKind(const std::string& kind);

// Loads a golden model's tensors by path relative to the golden dir (cached).
const engine::TensorMap& GoldenModel(const std::string& relative_or_absolute);

// Compares `actual` with `expected` under the manifest rule for
// "<case_name>/<tensor_name>" (rtol_of_max / exact; adam_step needs
// ExpectAdamStep). Records the deviation and adds a gtest failure with the
// worst element when out of tolerance. Shapes must match.
void ExpectMatches(const std::string& case_name, const std::string& tensor_name,
                   const torch::Tensor& actual, const torch::Tensor& expected);

// The "adam_step" rule: `golden_grad` is the golden gradient of the same
// parameter and `lr` the step's learning rate.
void ExpectAdamStep(const std::string& case_name, const std::string& tensor_name,
                    const torch::Tensor& actual, const torch::Tensor& expected,
                    const torch::Tensor& golden_grad, double lr);

// Loss scalars: |a-b| <= atol + rtol*|b| with the manifest's loss_scalars rule.
void ExpectLossNear(const std::string& case_name, const std::string& name, double actual,
                    double expected);

// Exact equality of integer tensors (ids, tokens, indices).
void ExpectExact(const std::string& case_name, const std::string& tensor_name,
                 const torch::Tensor& actual, const torch::Tensor& expected);

}  // namespace restyle::testing

#endif  // RESTYLE_TESTS_GOLDEN_GOLDEN_H_
