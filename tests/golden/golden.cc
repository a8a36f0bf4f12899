#include "tests/golden/golden.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "tests/golden/deviation_report.h"
#include "worker/engine/common/cuda_math.h"

namespace restyle::testing {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

struct Rule {
  std::vector<std::string> patterns;
  std::string kind;  // "exact", "adam_step", "rtol_of_max"
  double rtol = 0;
};

const std::vector<Rule>& Rules() {
  static const std::vector<Rule>* rules = [] {
    auto* out = new std::vector<Rule>;
    const Json& t = Manifest().at("tolerances").at("rules_first_match_wins_on_case/tensor");
    for (const auto& r : t) {
      Rule rule;
      for (const auto& p : r.at("patterns")) rule.patterns.push_back(p.get<std::string>());
      rule.kind = r.at("rule").get<std::string>();
      if (r.contains("rtol")) rule.rtol = r.at("rtol").get<double>();
      out->push_back(std::move(rule));
    }
    return out;
  }();
  return *rules;
}

const Rule& RuleFor(const std::string& key) {
  for (const Rule& rule : Rules()) {
    for (const auto& p : rule.patterns) {
      if (::fnmatch(p.c_str(), key.c_str(), 0) == 0) return rule;
    }
  }
  static const Rule kDefault{{"*"}, "rtol_of_max", 1e-5};
  return kDefault;
}

// "<case>/<tensor>" -> the tensor kind used in the deviation report: the case
// kind plus the tensor name with digits folded ("out_convs.N").
std::string ReportKey(const std::string& case_name, const std::string& tensor_name) {
  std::string kind = case_name;
  try {
    for (const auto& c : Manifest().at("cases")) {
      if (c.at("name").get<std::string>() == case_name) kind = c.at("kind").get<std::string>();
    }
  } catch (...) {
  }
  std::string folded;
  bool in_digits = false;
  for (char ch : tensor_name) {
    if (std::isdigit(static_cast<unsigned char>(ch))) {
      if (!in_digits) folded.push_back('N');
      in_digits = true;
    } else {
      folded.push_back(ch);
      in_digits = false;
    }
  }
  return kind + "/" + folded;
}

std::string Describe(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes() << " " << t.scalar_type();
  return out.str();
}

// Common prelude of the comparisons. Returns false (after a failure) when the
// shapes differ.
bool SameShape(const std::string& key, const torch::Tensor& actual, const torch::Tensor& expected) {
  if (!actual.defined()) {
    ADD_FAILURE() << key << ": actual tensor is undefined";
    return false;
  }
  if (actual.sizes() != expected.sizes()) {
    ADD_FAILURE() << key << ": shape " << Describe(actual) << " != golden " << Describe(expected);
    return false;
  }
  return true;
}

std::string WorstElement(const torch::Tensor& excess, const torch::Tensor& a,
                         const torch::Tensor& b) {
  const int64_t flat = excess.reshape({-1}).argmax().item<int64_t>();
  std::ostringstream out;
  out << "worst element (flat index " << flat << "): actual " << std::setprecision(9)
      << a.reshape({-1})[flat].item<double>() << " vs golden "
      << b.reshape({-1})[flat].item<double>();
  return out.str();
}

}  // namespace

bool RunningInCi() { return InCi(); }

std::string PythonWithTorch() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RESTYLE_PYTHON")) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const auto& py : candidates) {
    const std::string probe = py + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return py;
  }
  return "";
}

torch::Device TestDevice() {
  // Decided once per process (an exception leaves it undecided: each call
  // then fails the same way).
  static const torch::Device device = [] {
    const char* env = std::getenv("RESTYLE_TEST_DEVICE");
    const std::string name = env != nullptr && *env != '\0' ? env : "cpu";
    if (name == "cpu") return torch::Device(torch::kCPU);
    if (name != "cuda") {
      throw std::runtime_error("RESTYLE_TEST_DEVICE must be cpu or cuda, got " + name);
    }
    engine::RequireCuda();  // says why not: no CUDA in this LibTorch, or no device
    engine::SetCudaMath(/*allow_tf32=*/false, /*cudnn_autotune=*/false);
    return torch::Device(torch::kCUDA);
  }();
  return device;
}

std::string GoldenDir() {
  std::string dir;
  if (const char* env = std::getenv("RESTYLE_GOLDEN_DIR"); env != nullptr && *env != '\0') {
    dir = env;
  } else {
    dir = RESTYLE_DEFAULT_GOLDEN_DIR;
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

bool GoldenAvailable() {
  if (FileExists(GoldenPath("manifest.json"))) return true;
  if (InCi()) {
    ADD_FAILURE() << "CI=true but the golden data is missing: no manifest.json in " << GoldenDir()
                  << " (set RESTYLE_GOLDEN_DIR)";
  }
  return false;
}

std::string GoldenPath(const std::string& relative) {
  if (!relative.empty() && relative[0] == '/') return relative;
  return GoldenDir() + "/" + relative;
}

Json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw std::runtime_error("invalid JSON in " + path);
  return j;
}

const Json& Manifest() {
  static const Json* manifest = new Json(ReadJsonFile(GoldenPath("manifest.json")));
  return *manifest;
}

const engine::TensorMap& GoldenCase::Tensors() const {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, engine::TensorMap>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(name);
  if (it != cache->end()) return it->second;
  const std::string file = meta.contains("tensor_file")
                               ? meta.at("tensor_file").get<std::string>()
                               : "cases/" + name + ".safetensors";
  return cache->emplace(name, engine::ReadSafetensors(GoldenPath(file)).tensors).first->second;
}

bool GoldenCase::Has(const std::string& tensor) const { return Tensors().count(tensor) > 0; }

torch::Tensor GoldenCase::Tensor(const std::string& tensor) const {
  auto it = Tensors().find(tensor);
  if (it == Tensors().end()) {
    throw std::runtime_error("golden case " + name + " has no tensor '" + tensor + "'");
  }
  return it->second;
}

double GoldenCase::Scalar(const std::string& key) const {
  if (!meta.contains("scalars") || !meta.at("scalars").contains(key)) {
    throw std::runtime_error("golden case " + name + " has no scalar '" + key + "'");
  }
  return meta.at("scalars").at(key).get<double>();
}

std::string GoldenCase::ModelPath(const std::string& role) const {
  if (!meta.contains("models") || !meta.at("models").contains(role)) {
    throw std::runtime_error("golden case " + name + " names no model '" + role + "'");
  }
  return GoldenPath(meta.at("models").at(role).get<std::string>());
}

std::vector<GoldenCase> CasesOfKind(const std::string& kind) {
  std::vector<GoldenCase> out;
  for (const auto& c : Manifest().at("cases")) {
    if (c.at("kind").get<std::string>() != kind) continue;
    GoldenCase gc;
    gc.name = c.at("name").get<std::string>();
    gc.kind = kind;
    gc.meta = ReadJsonFile(GoldenPath(c.at("json").get<std::string>()));
    // The manifest's "tensors" entry wins over the sidecar (e.g. TorchScript cases).
    if (!gc.meta.contains("tensor_file") && c.contains("tensors")) {
      gc.meta["tensor_file"] = c.at("tensors");
    }
    out.push_back(std::move(gc));
  }
  if (out.empty() && InCi()) {
    ADD_FAILURE() << "the golden manifest in " << GoldenDir() << " has no case of kind '" << kind
                  << "'";
  }
  return out;
}

const engine::TensorMap& GoldenModel(const std::string& relative_or_absolute) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, engine::TensorMap>;
  const std::string path = GoldenPath(relative_or_absolute);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(path);
  if (it != cache->end()) return it->second;
  return cache->emplace(path, engine::ReadSafetensors(path).tensors).first->second;
}

void ExpectMatches(const std::string& case_name, const std::string& tensor_name,
                   const torch::Tensor& actual_in, const torch::Tensor& expected_in) {
  const std::string key = case_name + "/" + tensor_name;
  if (!SameShape(key, actual_in, expected_in)) return;
  const Rule& rule = RuleFor(key);
  if (rule.kind == "exact") {
    ExpectExact(case_name, tensor_name, actual_in, expected_in);
    return;
  }
  if (rule.kind == "adam_step") {
    ADD_FAILURE() << key << " follows the adam_step rule: use ExpectAdamStep";
    return;
  }
  const torch::Tensor a = actual_in.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor b = expected_in.detach().to(torch::kCPU, torch::kFloat64);
  const double scale = b.numel() ? b.abs().max().item<double>() : 0.0;
  const double allowed = rule.rtol * scale;
  const torch::Tensor diff = (a - b).abs();
  const double max_diff = diff.numel() ? diff.max().item<double>() : 0.0;
  const bool finite = a.isfinite().all().item<bool>();
  RecordDeviation(ReportKey(case_name, tensor_name), scale > 0 ? max_diff / scale : max_diff,
                  max_diff);
  EXPECT_TRUE(finite && max_diff <= allowed)
      << key << ": max |a-b| = " << max_diff << " > allowed " << allowed << " (rtol "
      << rule.rtol << " x max|golden| " << scale << ")" << (finite ? "" : ", non-finite values")
      << "; " << WorstElement(diff, a, b);
}

void ExpectAdamStep(const std::string& case_name, const std::string& tensor_name,
                    const torch::Tensor& actual_in, const torch::Tensor& expected_in,
                    const torch::Tensor& golden_grad, double lr) {
  const std::string key = case_name + "/" + tensor_name;
  if (!SameShape(key, actual_in, expected_in)) return;
  const torch::Tensor a = actual_in.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor b = expected_in.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor g = golden_grad.detach().to(torch::kCPU, torch::kFloat64).abs();
  const double gmax = g.numel() ? g.max().item<double>() : 0.0;
  const torch::Tensor significant = g >= std::max(1e-3 * gmax, 1e-5);
  const torch::Tensor tight = 1e-6 * torch::clamp_min(b.abs(), 1.0) + 1e-2 * lr;
  const torch::Tensor allowed = torch::where(significant, tight, torch::full_like(b, 2 * lr));
  const torch::Tensor diff = (a - b).abs();
  const torch::Tensor excess = diff - allowed;
  const double max_diff = diff.numel() ? diff.max().item<double>() : 0.0;
  RecordDeviation(ReportKey(case_name, tensor_name), lr > 0 ? max_diff / lr : max_diff, max_diff,
                  "x lr");
  const bool ok = a.isfinite().all().item<bool>() && (excess <= 0).all().item<bool>();
  EXPECT_TRUE(ok) << key << ": one Adam step out of tolerance (lr " << lr << "); "
                  << WorstElement(excess, a, b) << ", allowed "
                  << allowed.reshape({-1})[excess.reshape({-1}).argmax()].item<double>();
}

void ExpectLossNear(const std::string& case_name, const std::string& name, double actual,
                    double expected) {
  double atol = 1e-5, rtol = 1e-5;
  try {
    const Json& rule = Manifest().at("tolerances").at("loss_scalars");
    atol = rule.at("atol").get<double>();
    rtol = rule.at("rtol").get<double>();
  } catch (...) {
  }
  const double diff = std::abs(actual - expected);
  RecordDeviation(ReportKey(case_name, name), diff, diff, "abs");
  EXPECT_TRUE(std::isfinite(actual) && diff <= atol + rtol * std::abs(expected))
      << case_name << "/" << name << ": " << std::setprecision(10) << actual << " vs golden "
      << expected << " (|diff| " << diff << ")";
}

void ExpectExact(const std::string& case_name, const std::string& tensor_name,
                 const torch::Tensor& actual, const torch::Tensor& expected) {
  const std::string key = case_name + "/" + tensor_name;
  if (!SameShape(key, actual, expected)) return;
  const torch::Tensor a = actual.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor b = expected.detach().to(torch::kCPU, torch::kFloat64);
  const int64_t wrong = (a != b).sum().item<int64_t>();
  RecordDeviation(ReportKey(case_name, tensor_name), static_cast<double>(wrong),
                  static_cast<double>(wrong), "elements differing");
  EXPECT_EQ(wrong, 0) << key << ": " << wrong << " of " << a.numel()
                      << " elements differ; expected exact equality; first: "
                      << WorstElement((a != b).to(torch::kFloat64), a, b);
}

}  // namespace restyle::testing
