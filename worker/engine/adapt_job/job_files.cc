#include "worker/engine/adapt_job/job_files.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/generator.h"
#ifdef RESTYLE_HAVE_PNG
#include "worker/engine/image/png.h"
#endif

namespace restyle::engine {
namespace {

constexpr char kRngPrefix[] = "rng.";

// Tensor-name prefix of mapper `index`: "mapper." for the first (the only one
// of a one-model job), "mapper<index>." for the others.
std::string MapperPrefix(size_t index) {
  return index == 0 ? std::string("mapper.") : "mapper" + std::to_string(index) + ".";
}

// The mapper index and parameter name of a "mapper<index?>.<name>" tensor
// (at most 6 digits, so the index always fits).
bool ParseMapperName(const std::string& tensor, size_t* index, std::string* name) {
  if (tensor.compare(0, 6, "mapper") != 0) return false;
  size_t i = 6;
  while (i < tensor.size() && std::isdigit(static_cast<unsigned char>(tensor[i]))) ++i;
  if (i >= tensor.size() || tensor[i] != '.' || i > 12) return false;
  *index = i == 6 ? 0 : static_cast<size_t>(std::stoul(tensor.substr(6, i - 6)));
  *name = tensor.substr(i + 1);
  return true;
}

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

void WritePngOrFail(const std::string& path, const torch::Tensor& rgb) {
#ifdef RESTYLE_HAVE_PNG
  WritePng(path, rgb);
#else
  (void)rgb;
  Fail(ErrorCode::kUnimplemented, "cannot write " + path + ": built without libpng");
#endif
}

}  // namespace

bool PngSupported() {
#ifdef RESTYLE_HAVE_PNG
  return true;
#else
  return false;
#endif
}

void WriteStage1Checkpoint(const std::string& path, const Stage1Checkpoint& c) {
  TensorMap tensors;
  for (size_t k = 0; k < c.mappers.size(); ++k) {
    for (const auto& [name, t] : c.mappers[k]) tensors[MapperPrefix(k) + name] = t;
  }
  for (const auto& [name, t] : c.rng) tensors[kRngPrefix + name] = t;
  Metadata metadata;
  metadata["format"] = kStage1CheckpointFormat;
  metadata["fingerprint"] = c.fingerprint;
  metadata["n_ctx"] = std::to_string(c.n_ctx);
  metadata["mappers"] = std::to_string(c.mappers.size());
  metadata["losses"] = nlohmann::json(c.losses).dump();
  metadata["seconds"] = nlohmann::json(c.seconds).dump();
  WriteSafetensors(path, tensors, metadata);
}

std::optional<Stage1Checkpoint> ReadStage1Checkpoint(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  SafetensorsContents contents = ReadSafetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = contents.metadata.find(key);
    if (it == contents.metadata.end()) {
      Fail(ErrorCode::kDataLoss, path + ": stage-1 checkpoint without metadata \"" + key + "\"");
    }
    return it->second;
  };
  if (meta("format") != kStage1CheckpointFormat) {
    Fail(ErrorCode::kDataLoss, path + ": not a stage-1 checkpoint (format \"" + meta("format") +
                                   "\")");
  }
  Stage1Checkpoint c;
  c.fingerprint = meta("fingerprint");
  size_t n_mappers = 1;
  try {
    c.n_ctx = std::stoll(meta("n_ctx"));
    if (contents.metadata.count("mappers")) n_mappers = std::stoul(meta("mappers"));
    c.losses = nlohmann::json::parse(meta("losses")).get<LossSeries>();
    c.seconds = nlohmann::json::parse(meta("seconds")).get<double>();
  } catch (const std::exception& e) {
    Fail(ErrorCode::kDataLoss, path + ": bad stage-1 checkpoint metadata: " + e.what());
  }
  if (n_mappers < 1 || n_mappers > 64) {
    Fail(ErrorCode::kDataLoss, path + ": bad mapper count " + std::to_string(n_mappers));
  }
  c.mappers.resize(n_mappers);
  for (auto& [name, t] : contents.tensors) {
    size_t index = 0;
    std::string param;
    if (ParseMapperName(name, &index, &param) && index < n_mappers) {
      c.mappers[index][param] = t;
    } else if (StartsWith(name, kRngPrefix)) {
      c.rng[name.substr(sizeof(kRngPrefix) - 1)] = t;
    } else {
      Fail(ErrorCode::kDataLoss, path + ": unexpected tensor \"" + name + "\"");
    }
  }
  for (size_t k = 0; k < c.mappers.size(); ++k) {
    if (c.mappers[k].empty()) {
      Fail(ErrorCode::kDataLoss, path + ": no tensors of mapper " + std::to_string(k));
    }
  }
  return c;
}

std::vector<double> DownsampleSeries(const std::vector<double>& values, int64_t max_points,
                                     std::vector<int64_t>* steps) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<double> out;
  if (steps) steps->clear();
  if (max_points <= 0 || n <= max_points) {
    for (int64_t i = 0; i < n; ++i) {
      out.push_back(values[i]);
      if (steps) steps->push_back(i + 1);
    }
    return out;
  }
  // Point p averages values [p*n/max_points, (p+1)*n/max_points).
  for (int64_t p = 0; p < max_points; ++p) {
    const int64_t begin = p * n / max_points, end = (p + 1) * n / max_points;
    if (end <= begin) continue;
    double sum = 0;
    for (int64_t i = begin; i < end; ++i) sum += values[i];
    out.push_back(sum / static_cast<double>(end - begin));
    if (steps) steps->push_back(end);
  }
  return out;
}

void WriteComparisonGrid(const std::string& path, const torch::Tensor& source,
                         const torch::Tensor& adapted) {
  CheckArgument(source.dim() == 4 && source.sizes() == adapted.sizes(),
                "WriteComparisonGrid: source and adapted must be (N,3,H,W) of one shape");
  auto both = at::cat({source.detach().to(at::kCPU, at::kFloat),
                       adapted.detach().to(at::kCPU, at::kFloat)},
                      0);
  WritePngOrFail(path, Uint8Grid(both, source.size(0)));
}

void WriteImageRow(const std::string& path, const torch::Tensor& images) {
  CheckArgument(images.dim() == 4, "WriteImageRow: expected (N,3,H,W)");
  WritePngOrFail(path, Uint8Grid(images.detach().to(at::kCPU, at::kFloat), images.size(0)));
}

void MakeDirectories(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    Fail(ErrorCode::kNotFound, "cannot create directory " + dir + ": " + ec.message());
  }
}

void WriteTextFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) Fail(ErrorCode::kNotFound, "cannot create " + tmp);
    out << text;
    out.close();
    if (!out) Fail(ErrorCode::kDataLoss, "cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) Fail(ErrorCode::kNotFound, "cannot rename " + tmp + " to " + path + ": " + ec.message());
}

}  // namespace restyle::engine
