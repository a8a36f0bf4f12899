#include "worker/engine/adapt_job/demo_models.h"

#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/random_weights.h"

namespace restyle::engine {

ClipConfig DemoClipConfig() {
  ClipConfig c;
  c.embed_dim = 64;
  c.image_resolution = 32;
  c.vision_layers = 2;
  c.vision_width = 64;
  c.vision_patch_size = 8;
  c.vision_grid = 4;
  c.vision_heads = 1;
  c.context_length = 77;
  c.vocab_size = 49408;
  c.transformer_width = 64;
  c.transformer_heads = 1;
  c.transformer_layers = 2;
  return c;
}

ClipModel DemoClip(uint64_t seed) {
  return LoadClipFromTensors(RandomClipWeights(DemoClipConfig(), seed, kDemoClipStd),
                             "demo-clip");
}

Sg2Config DemoGeneratorConfig() {
  Sg2Config c;
  c.size = 32;
  c.style_dim = 64;
  c.n_mlp = 4;
  c.channels.clear();
  for (int64_t r = 4; r <= c.size; r *= 2) c.channels.push_back(32);
  return c;
}

Generator DemoGenerator(uint64_t seed) { return RandomGenerator(DemoGeneratorConfig(), seed); }

}  // namespace restyle::engine
