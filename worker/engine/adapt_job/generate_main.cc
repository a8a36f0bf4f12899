// restyle-generate: images from a job's adapted generator, by seed.
//
//   restyle-generate --job runs/ukiyo-e --source models/ffhq.safetensors \
//                    --seeds 0-15 --out images/ [--grid grid.png] [--with-source]
//   restyle-generate --job demo-out/ipl --seeds 0-7 --grid ipl.png --with-source
//
// The adapted generator is the job's source plus its generator_delta.safetensors,
// checked against the digests in its result.json (a wrong source file is an
// error, not wrong pictures). Each image depends on its seed alone
// (generate.h): seed 7 is the same picture in "0-7" and in "7".
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "worker/engine/adapt_job/generate.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/cuda_math.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/parse.h"
#include "worker/engine/common/threads.h"
#include "worker/engine/image/png.h"

namespace {

using namespace restyle::engine;

constexpr char kUsage[] =
    "usage: restyle-generate --job DIR [--source G.safetensors] [--seeds 0-7]\n"
    "                        (--out DIR | --grid FILE.png | both) [--cols N]\n"
    "                        [--with-source] [--truncation 0.7] [--noise random|stored]\n"
    "                        [--device cpu|cuda] [--threads N]\n"
    "\n"
    "  --job DIR          output directory of a finished restyle-train job\n"
    "  --source FILE      the generator the job adapted (not needed for --demo jobs)\n"
    "  --seeds LIST       e.g. 0-7, 3 or 1,5,9 (default 0-7); an image depends on\n"
    "                     its seed alone\n"
    "  --out DIR          one PNG per seed: seed0003.png (and seed0003_source.png\n"
    "                     with --with-source)\n"
    "  --grid FILE.png    all images in one grid, --cols per row (default up to 8);\n"
    "                     with --with-source each source row above its adapted row\n"
    "  --truncation T     towards the mean latent, in [0, 1] (1: none; default: the\n"
    "                     job's sample_truncation, 0.7 unless set)\n"
    "  --noise M          random: drawn from each seed (default); stored: the\n"
    "                     generator's noise buffers\n";

[[noreturn]] void Usage(const std::string& error) {
  if (error.empty()) {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  std::fprintf(stderr, "restyle-generate: %s\n(restyle-generate --help for usage)\n",
               error.c_str());
  std::exit(2);
}

int64_t ParseInt(const std::string& flag, const std::string& value, int64_t min) {
  int64_t v = 0;
  if (ParseInt64(value, &v) && v >= min) return v;
  Usage(flag + " needs a whole number >= " + std::to_string(min) + ", got \"" + value + "\"");
}

}  // namespace

int main(int argc, char** argv) {
  std::string job_dir, source_path, out_dir, grid_path, seeds_text = "0-7", device_name = "cpu";
  bool with_source = false, truncation_given = false;
  int64_t cols = 0;
  int threads = 0;
  GenerateOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage("missing value for " + a);
      return argv[++i];
    };
    if (a == "--job") job_dir = next();
    else if (a == "--source") source_path = next();
    else if (a == "--seeds") seeds_text = next();
    else if (a == "--out") out_dir = next();
    else if (a == "--grid") grid_path = next();
    else if (a == "--cols") cols = ParseInt(a, next(), 1);
    else if (a == "--with-source") with_source = true;
    else if (a == "--threads") threads = static_cast<int>(ParseInt(a, next(), 1));
    else if (a == "--device") device_name = next();
    else if (a == "--truncation") {
      truncation_given = true;
      const std::string v = next();
      if (!ParseFiniteDouble(v, &options.truncation)) {
        Usage("--truncation needs a number in [0, 1], got \"" + v + "\"");
      }
      if (!(options.truncation >= 0 && options.truncation <= 1)) {
        Usage("--truncation must be in [0, 1], got " + v);
      }
    }
    else if (a == "--noise") {
      const std::string v = next();
      if (v == "random") options.noise = NoiseMode::kRandom;
      else if (v == "stored") options.noise = NoiseMode::kStored;
      else Usage("--noise must be random or stored");
    }
    else if (a == "--help" || a == "-h") Usage("");
    else Usage("unknown flag " + a);
  }
  if (job_dir.empty()) Usage("--job is required");
  if (out_dir.empty() && grid_path.empty()) Usage("--out or --grid is required");
  if (device_name != "cpu" && device_name != "cuda") Usage("--device must be cpu or cuda");

  try {
    const std::vector<uint64_t> seeds = ParseSeeds(seeds_text);
    SetThreadCount(threads);
    InstallCachingCpuAllocator();
    if (device_name == "cuda") RequireCuda();
    const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
    JobGenerators g = LoadJobGenerators(job_dir, source_path, device);
    if (!truncation_given) options.truncation = g.sample_truncation;
    std::fprintf(stderr, "restyle-generate: %s job, target \"%s\", adapted generator %s...\n",
                 g.label.c_str(), g.target.c_str(), g.adapted_digest.substr(0, 12).c_str());
    const torch::Tensor adapted = GenerateImages(*g.adapted, seeds, options);
    const torch::Tensor source =
        with_source ? GenerateImages(*g.source, seeds, options) : torch::Tensor();
    if (!out_dir.empty()) {
      std::filesystem::create_directories(out_dir);
      const torch::Tensor pixels = ToUint8Images(adapted);
      const torch::Tensor source_pixels = with_source ? ToUint8Images(source) : torch::Tensor();
      for (size_t i = 0; i < seeds.size(); ++i) {
        char name[48];
        std::snprintf(name, sizeof(name), "seed%04llu", static_cast<unsigned long long>(seeds[i]));
        const std::string base = (std::filesystem::path(out_dir) / name).string();
        WritePng(base + ".png", pixels[static_cast<int64_t>(i)]);
        if (with_source) WritePng(base + "_source.png", source_pixels[static_cast<int64_t>(i)]);
      }
      std::printf("wrote %zu image%s to %s\n", seeds.size() * (with_source ? 2 : 1),
                  seeds.size() * (with_source ? 2 : 1) == 1 ? "" : "s", out_dir.c_str());
    }
    if (!grid_path.empty()) {
      const int64_t n = adapted.size(0);
      const int64_t c = cols > 0 ? cols : std::min<int64_t>(n, 8);
      torch::Tensor tiles = adapted;
      if (with_source) {
        // Row pairs: up to c source images, then the same seeds adapted.
        std::vector<torch::Tensor> rows;
        for (int64_t i = 0; i < n; i += c) {
          const int64_t end = std::min(n, i + c);
          for (const torch::Tensor& set : {source, adapted}) {
            torch::Tensor row = set.slice(0, i, end);
            if (end - i < c) {  // pad a short last row so pairs stay aligned
              row = at::cat({row, at::full({c - (end - i), 3, row.size(2), row.size(3)}, -1.0)});
            }
            rows.push_back(row);
          }
        }
        tiles = at::cat(rows, 0);
      }
      const std::filesystem::path parent = std::filesystem::path(grid_path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent);
      WritePng(grid_path, Uint8Grid(tiles, c));
      std::printf("wrote %s (%lld seed%s%s)\n", grid_path.c_str(), static_cast<long long>(n),
                  n == 1 ? "" : "s", with_source ? ", source rows above adapted rows" : "");
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "restyle-generate: %s: %s\n", ErrorCodeName(e.code()), e.what());
    return e.code() == ErrorCode::kInvalidArgument ? 2 : 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "restyle-generate: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "restyle-generate: %s\n", e.what());
    return 1;
  }
}
