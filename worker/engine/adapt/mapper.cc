#include "worker/engine/adapt/mapper.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/container/any.h>

#include <utility>

#include "worker/engine/common/error.h"
#include "worker/engine/stylegan2/layers.h"

namespace restyle::engine {

MapperNetImpl::MapperNetImpl(const MapperConfig& config)
    : torch::nn::Module("Mapper") {
  mapping = register_module("mapping", torch::nn::ModuleList());
  mapping->push_back(PixelNorm());
  for (int i = 0; i < 3; ++i) {
    mapping->push_back(EqualLinear(EqualLinearOptions{
        config.style_dim, config.style_dim, config.lr_mul, 0.0, true}));
  }
  mapping->push_back(EqualLinear(
      EqualLinearOptions{config.style_dim, config.n_ctx * config.text_width,
                         config.lr_mul, 0.0, true}));
}

torch::Tensor MapperNetImpl::forward(const torch::Tensor& w) {
  torch::Tensor x = mapping->ptr<PixelNormImpl>(0)->forward(w);
  for (size_t i = 1; i < mapping->size(); ++i)
    x = mapping->ptr<EqualLinearImpl>(i)->forward(x);
  return x;
}

LatentMapperImpl::LatentMapperImpl(const MapperConfig& config)
    : torch::nn::Module("SingleMapper"), config_(config) {
  CheckArgument(
      config.style_dim > 0 && config.n_ctx > 0 && config.text_width > 0,
      "LatentMapper: style_dim, n_ctx and text_width must be positive");
  mapping = register_module("mapping", MapperNet(config));
  torch::NoGradGuard no_grad;
  for (size_t i = 1; i < mapping->mapping->size(); ++i) {
    auto layer = mapping->mapping->ptr<EqualLinearImpl>(i);
    layer->weight.normal_().div_(config.lr_mul);
    layer->bias.zero_();
  }
}

void LatentMapperImpl::ResetParameters(at::Generator& rng) {
  for (size_t i = 1; i < mapping->mapping->size(); ++i) {
    mapping->mapping->ptr<EqualLinearImpl>(i)->ResetParameters(rng);
  }
}

torch::Tensor LatentMapperImpl::forward(const torch::Tensor& w) {
  CheckArgument(w.dim() == 2 && w.size(1) == config_.style_dim,
                "LatentMapper: w must be (N, style_dim)");
  return mapping->forward(w).reshape(
      {w.size(0), config_.n_ctx, config_.text_width});
}

LatentMapper RandomLatentMapper(const MapperConfig& config, uint64_t seed) {
  LatentMapper mapper(config);
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(seed);
  mapper->ResetParameters(rng);
  return mapper;
}

LatentMapper LatentMapperFromTensors(const TensorMap& tensors, int64_t n_ctx,
                                     const std::string& origin) {
  auto first = tensors.find("mapping.mapping.1.weight");
  auto last = tensors.find("mapping.mapping.4.weight");
  if (first == tensors.end() || last == tensors.end() ||
      first->second.dim() != 2 || last->second.dim() != 2) {
    Fail(ErrorCode::kInvalidArgument,
         origin +
             ": not an IPL mapper (mapping.mapping.{1,4}.weight missing or not "
             "2-D)");
  }
  CheckArgument(n_ctx > 0 && last->second.size(0) % n_ctx == 0,
                origin + ": last mapper layer width " +
                    std::to_string(last->second.size(0)) +
                    " is not divisible by n_ctx " + std::to_string(n_ctx));
  MapperConfig config;
  config.style_dim = first->second.size(1);
  config.n_ctx = n_ctx;
  config.text_width = last->second.size(0) / n_ctx;
  LatentMapper mapper(config);
  LoadStateDict(*mapper, tensors, origin);
  return mapper;
}

}  // namespace restyle::engine
