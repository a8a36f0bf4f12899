// Shared helpers of the adapt golden tests: options and models from a case.
#ifndef RESTYLE_TESTS_WORKER_ENGINE_ADAPT_ADAPT_TEST_UTIL_H_
#define RESTYLE_TESTS_WORKER_ENGINE_ADAPT_ADAPT_TEST_UTIL_H_

#include <memory>
#include <string>

#include "tests/golden/golden.h"
#include "worker/engine/adapt/options.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::testing {

inline const engine::Tokenizer& GoldenTokenizer() {
  static const engine::Tokenizer* tokenizer =
      engine::Tokenizer::FromFile(
          GoldenPath(Manifest().at("tokenizer").at("vocab").get<std::string>()))
          .release();
  return *tokenizer;
}

inline std::string CaseString(const GoldenCase& c, const std::string& key,
                              const std::string& fallback) {
  if (c.meta.contains("strings") && c.meta.at("strings").contains(key)) {
    return c.meta.at("strings").at(key).get<std::string>();
  }
  return fallback;
}

inline double CaseScalarOr(const GoldenCase& c, const std::string& key,
                           double fallback) {
  if (c.meta.contains("scalars") && c.meta.at("scalars").contains(key) &&
      c.meta.at("scalars").at(key).is_number()) {
    return c.meta.at("scalars").at(key).get<double>();
  }
  return fallback;
}

// Options of a case: classes, prompt prefix, stored noise, and every
// hyper-parameter the case states (defaults otherwise).
inline engine::AdaptOptions OptionsFromCase(const GoldenCase& c) {
  engine::AdaptOptions o;
  o.noise = engine::NoiseMode::kStored;
  o.source_class = CaseString(c, "source_class", o.source_class);
  o.target_class = CaseString(c, "target_class", "");
  o.stage1.ctx_init = CaseString(
      c, "prompt_prefix", CaseString(c, "templates_arg", o.stage1.ctx_init));
  o.stage1.lambda_l = CaseScalarOr(c, "lambda_l", o.stage1.lambda_l);
  o.stage1.lambda_src = CaseScalarOr(c, "lambda_src", o.stage1.lambda_src);
  o.stage1.lr = CaseScalarOr(c, "lr_mapper", o.stage1.lr);
  o.stage2.lr = CaseScalarOr(c, "lr", o.stage2.lr);
  o.stage2.beta1 = CaseScalarOr(c, "beta1", o.stage2.beta1);
  o.stage2.beta2 = CaseScalarOr(c, "beta2", o.stage2.beta2);
  o.stage2.eps = CaseScalarOr(c, "eps", o.stage2.eps);
  o.stage2.ema_decay = CaseScalarOr(c, "ema_decay", o.stage2.ema_decay);
  o.stage2.auto_layer_iters =
      static_cast<int64_t>(CaseScalarOr(c, "auto_layer_iters", 0));
  o.stage2.auto_layer_k =
      static_cast<int64_t>(CaseScalarOr(c, "auto_layer_k", 0));
  o.stage2.auto_layer_lr = CaseScalarOr(c, "sgd_lr", o.stage2.auto_layer_lr);
  o.method = c.kind == "nada_direction" ? engine::AdaptMethod::kNada
                                        : engine::AdaptMethod::kIpl;
  return o;
}

// A model holder moved to the test device ($RESTYLE_TEST_DEVICE).
template <typename Holder>
Holder OnTestDevice(Holder model) {
  model->to(TestDevice());
  return model;
}

// A trainer case's CLIP model on the test device, frozen.
inline engine::ClipModel CaseClip(const GoldenCase& c) {
  engine::ClipModel clip = OnTestDevice(engine::LoadClip(c.ModelPath("clip")));
  clip->Freeze();
  return clip;
}

// A trainer case's generator `role` ("generator_source",
// "generator_target_init") on the test device, every parameter's
// requires_grad set to `trainable`.
inline engine::Generator CaseGenerator(const GoldenCase& c, const std::string& role,
                                       bool trainable) {
  engine::Generator g = OnTestDevice(engine::LoadGenerator(c.ModelPath(role)));
  g->SetAllTrainable(trainable);
  return g;
}

// Input tensor `name` of a case, on the test device.
inline torch::Tensor Input(const GoldenCase& c, const std::string& name) {
  return c.Tensor(name).to(TestDevice());
}

// A deep copy of a module's state_dict (StateDict() shares storage).
inline engine::TensorMap StateCopy(const torch::nn::Module& m) {
  engine::TensorMap out = engine::StateDict(m);
  for (auto& [name, t] : out) t = t.clone();
  return out;
}

// Golden features stored as (B,1,E) compared with (B,E).
inline torch::Tensor Like(const torch::Tensor& golden,
                          const torch::Tensor& actual) {
  return golden.numel() == actual.numel() ? golden.reshape(actual.sizes())
                                          : golden;
}

}  // namespace restyle::testing

#endif  // RESTYLE_TESTS_WORKER_ENGINE_ADAPT_ADAPT_TEST_UTIL_H_
