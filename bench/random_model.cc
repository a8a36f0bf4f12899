// restyle-random-model: a worker model directory holding one StyleGAN2
// config-f generator with random weights (the official shapes, nothing
// learned), for serving benchmarks at real sizes without downloading a
// checkpoint. No CLIP: a worker on it generates and does not adapt.
//
//   restyle-random-model --size 256 --out /tmp/models-256
//   restyle-worker --models /tmp/models-256 ...   # serves generators/random-256
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "worker/engine/stylegan2/generator.h"

int main(int argc, char** argv) {
  int size = 256;
  std::string out;
  CLI::App app{"restyle-random-model: a model directory with a random config-f generator"};
  app.add_option("--size", size, "resolution")->check(CLI::IsMember({64, 128, 256, 512, 1024}))
      ->capture_default_str();
  app.add_option("--out", out, "the directory to write (manifest.json and the weights)")
      ->required();
  CLI11_PARSE(app, argc, argv);
  try {
    std::filesystem::create_directories(out);
    auto g = restyle::engine::RandomGenerator(restyle::engine::Sg2Config::Official(size), /*seed=*/1);
    restyle::engine::SaveGenerator(out + "/random.safetensors", *g);
    const std::string id = "random-" + std::to_string(size);
    std::ofstream(out + "/manifest.json")
        << "{\"generators\": [{\"id\": \"" << id << "\", \"file\": \"random.safetensors\", "
        << "\"source_text\": \"photo\", \"description\": \"config-f " << size
        << ", random weights (benchmarks)\"}]}\n";
    std::printf("%s: generators/%s\n", out.c_str(), id.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "restyle-random-model: %s\n", e.what());
    return 1;
  }
  return 0;
}
