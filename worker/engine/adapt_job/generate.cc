#include "worker/engine/adapt_job/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/world/world_models.h"
#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/layers.h"

namespace restyle::engine {
namespace {

using Json = nlohmann::json;

std::string Short(const std::string& digest) { return digest.substr(0, 12); }

}  // namespace

torch::Tensor TruncationLatent(GeneratorImpl& generator, const GenerateOptions& options) {
  CheckArgument(options.mean_latent_samples >= 1, "generate: mean_latent_samples must be >= 1");
  torch::NoGradGuard no_grad;
  const torch::Device device = generator.parameters().front().device();
  if (generator.latent_avg.defined()) return generator.latent_avg.to(device);
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(options.mean_latent_seed);
  const torch::Tensor z =
      at::randn({options.mean_latent_samples, generator.config().style_dim}, rng);
  return generator.Mapping(z.to(device)).mean(0, /*keepdim=*/true);
}

torch::Tensor GenerateImages(GeneratorImpl& generator, const std::vector<uint64_t>& seeds,
                             const GenerateOptions& options) {
  CheckArgument(!seeds.empty(), "generate: no seeds");
  CheckArgument(options.truncation >= 0 && options.truncation <= 1,
                "generate: truncation must be in [0, 1], got " + std::to_string(options.truncation));
  CheckArgument(options.mean_latent_samples >= 1, "generate: mean_latent_samples must be >= 1");
  CheckArgument(options.batch >= 1, "generate: batch must be >= 1");
  torch::NoGradGuard no_grad;
  const torch::Device device = generator.parameters().front().device();
  const int64_t style_dim = generator.config().style_dim;

  SynthesisOptions o;
  o.input_is_latent = false;
  o.conv = options.conv;
  o.noise = options.noise == NoiseMode::kStored ? NoiseMode::kStored : NoiseMode::kGiven;
  if (options.truncation < 1) {
    o.truncation = options.truncation;
    o.truncation_latent = options.truncation_latent.defined()
                              ? options.truncation_latent.to(device)
                              : TruncationLatent(generator, options);
  }
  // Every sample of a batch computed as it would be alone: an image must not
  // depend on the other seeds.
  std::optional<BatchInvariantGuard> invariant;
  if (options.batch_invariant) invariant.emplace();
  std::vector<torch::Tensor> images;
  for (size_t first = 0; first < seeds.size(); first += options.batch) {
    const size_t end = std::min(seeds.size(), first + static_cast<size_t>(options.batch));
    std::vector<torch::Tensor> z;
    std::vector<std::vector<torch::Tensor>> noise(generator.noise_buffers.size());
    for (size_t i = first; i < end; ++i) {
      at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(seeds[i]);
      z.push_back(at::randn({1, style_dim}, rng));
      if (o.noise == NoiseMode::kGiven) {  // drawn after z, so z is the same either way
        for (size_t l = 0; l < generator.noise_buffers.size(); ++l) {
          const torch::Tensor& buffer = generator.noise_buffers[l];
          noise[l].push_back(at::randn({1, 1, buffer.size(2), buffer.size(3)}, rng));
        }
      }
    }
    o.noise_tensors.clear();
    if (o.noise == NoiseMode::kGiven) {
      for (const auto& layer : noise) o.noise_tensors.push_back(at::cat(layer, 0).to(device));
    }
    images.push_back(generator.Generate({at::cat(z, 0).to(device)}, o).image.to(torch::kCPU));
  }
  return images.size() == 1 ? images.front() : at::cat(images, 0);
}

namespace {

// result.json of the job in `job_dir`, checked to be one.
Json ReadJobResult(const std::string& job_dir) {
  namespace fs = std::filesystem;
  const std::string result_path = (fs::path(job_dir) / "result.json").string();
  std::ifstream in(result_path);
  if (!in) {
    // `restyle-train --method both` writes one job per method below its --out.
    std::string jobs_below;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(job_dir, ec)) {
      if (fs::exists(entry.path() / "result.json")) {
        jobs_below += (jobs_below.empty() ? "" : " or ") + entry.path().string();
      }
    }
    Fail(ErrorCode::kNotFound,
         result_path + ": no such file (" +
             (jobs_below.empty() ? "is " + job_dir + " the output directory of a finished job?"
                                 : "the jobs are one level down: " + jobs_below) +
             ")");
  }
  std::stringstream text;
  text << in.rdbuf();
  Json result;
  try {
    result = Json::parse(text.str());
  } catch (const Json::exception& e) {
    Fail(ErrorCode::kDataLoss, result_path + ": not valid JSON: " + e.what());
  }
  if (result.value("format", "") != "restyle-adapt-result" || !result.contains("source") ||
      !result.contains("adapted_digest")) {
    Fail(ErrorCode::kDataLoss, result_path + ": not the result record of an adaptation job");
  }
  return result;
}

// The job's generators from its result record and `source` (`source_label`
// names it in errors).
JobGenerators JobGeneratorsFrom(const std::string& job_dir, const Json& result, Generator source,
                                const std::string& source_label, const torch::Device& device) {
  namespace fs = std::filesystem;
  const std::string result_path = (fs::path(job_dir) / "result.json").string();
  const std::string delta_path = (fs::path(job_dir) / "generator_delta.safetensors").string();
  const std::string source_name = result["source"].value("name", "");
  const std::string source_digest = result["source"].value("digest", "");
  JobGenerators g;
  g.label = result.value("label", "");
  if (result.contains("options") && result["options"].is_object()) {
    g.target = result["options"].value("target_class", "");
    g.sample_truncation = result["options"].value("sample_truncation", g.sample_truncation);
  }
  g.source = std::move(source);
  const std::string given_digest = GeneratorImpl::Digest(*g.source);
  if (given_digest != source_digest) {
    Fail(ErrorCode::kFailedPrecondition,
         source_label + " is not the source the job in " + job_dir + " adapted (\"" + source_name +
             "\"): weights digest " + Short(given_digest) + "... instead of " +
             Short(source_digest) + "...");
  }
  g.adapted = LoadWithDelta(*g.source, delta_path);
  g.adapted_digest = GeneratorImpl::Digest(*g.adapted);
  const std::string recorded = result.value("adapted_digest", "");
  if (g.adapted_digest != recorded) {
    Fail(ErrorCode::kDataLoss, delta_path + " does not give the generator " + result_path +
                                   " records (digest " + Short(g.adapted_digest) +
                                   "... instead of " + Short(recorded) + "...)");
  }
  for (Generator* m : {&g.source, &g.adapted}) {
    (*m)->to(device);
    (*m)->SetAllTrainable(false);
    (*m)->eval();
  }
  return g;
}

}  // namespace

JobGenerators LoadJobGenerators(const std::string& job_dir, const std::string& source_path,
                                const torch::Device& device) {
  const Json result = ReadJobResult(job_dir);
  const std::string source_name = result["source"].value("name", "");
  Generator source{nullptr};
  if (!source_path.empty()) {
    source = LoadGenerator(source_path);
  } else if (source_name == kDemoGeneratorName) {
    source = DemoGenerator();
  } else if (source_name == kWorldGeneratorName) {
    source = WorldGenerator();
  } else {
    Fail(ErrorCode::kInvalidArgument, "the job in " + job_dir + " adapted \"" + source_name +
                                          "\": give that generator's file as the source");
  }
  return JobGeneratorsFrom(job_dir, result, std::move(source),
                           source_path.empty() ? "the embedded " + source_name : source_path,
                           device);
}

JobGenerators LoadJobGenerators(const std::string& job_dir, Generator source,
                                const torch::Device& device) {
  return JobGeneratorsFrom(job_dir, ReadJobResult(job_dir), std::move(source),
                           "the loaded source generator", device);
}

}  // namespace restyle::engine
