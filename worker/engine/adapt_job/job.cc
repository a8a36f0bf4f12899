#include "worker/engine/adapt_job/job.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <new>
#include <nlohmann/json.hpp>

#include "worker/engine/adapt/ipl.h"
#include "worker/engine/adapt/mapper.h"
#include "worker/engine/adapt/text.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/world/world_models.h"
#include "worker/engine/adapt_job/job_files.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/cuda_math.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/threads.h"

namespace restyle::engine {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr char kCheckpointName[] = "stage1_checkpoint.safetensors";
constexpr int64_t kSampleChunk = 8;  // generator batch for previews / quality samples

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

torch::Device ToTorchDevice(JobDevice device) {
  return device == JobDevice::kCuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

// A generator for randomness on `device`, seeded with `seed`.
at::Generator MakeRng(JobDevice device, uint64_t seed) {
  if (device == JobDevice::kCpu) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator g = at::globalContext().defaultGenerator(torch::Device(torch::kCUDA)).clone();
  g.set_current_seed(seed);
  return g;
}

// z (n, style_dim) drawn on the CPU from `rng` (when it is a CPU generator)
// and moved to `device`.
torch::Tensor DrawLatents(int64_t n, int64_t style_dim, at::Generator& z_rng,
                          const torch::Device& device) {
  return DrawZ(n, style_dim, z_rng).to(device);
}

// A stage-1 step's loss terms by name.
std::vector<std::pair<std::string, double>> NamedTerms(const Stage1Losses& l) {
  return {{"total", l.total}, {"contrastive", l.contrastive}, {"target", l.target},
          {"source", l.source}};
}

// Loss-series names of CLIP model m: "total", ... for the first, "clip1.total",
// ... for the others.
std::string LossPrefix(size_t m) { return m == 0 ? "" : "clip" + std::to_string(m) + "."; }

// The mapper of CLIP model m: mapper.safetensors, mapper_clip1.safetensors, ...
std::string MapperFileName(size_t m) {
  return m == 0 ? "mapper.safetensors" : "mapper_clip" + std::to_string(m) + ".safetensors";
}

const char* CudaMathName(CudaMath math) { return math == CudaMath::kTf32 ? "tf32" : "fp32"; }
const char* PrecisionName(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

// The process-wide LibTorch flags a CUDA job runs with (JobOptions).
void ApplyCudaSettings(const JobOptions& o) {
  if (o.device != JobDevice::kCuda) return;
  SetCudaMath(o.cuda_math == CudaMath::kTf32, o.cudnn_autotune);
}

void ThrowIfCancelled(const JobCallbacks& callbacks, const std::string& where) {
  if (callbacks.is_cancelled && callbacks.is_cancelled()) {
    Fail(ErrorCode::kCancelled, "job cancelled " + where);
  }
}

void Log(const JobCallbacks& callbacks, const std::string& line) {
  if (callbacks.on_log) callbacks.on_log(line);
}

// A training step whose loss is NaN or infinite: the job fails before it
// writes (or publishes) anything trained from it.
void CheckFiniteLoss(double loss, int stage, int64_t step, const std::string& name,
                     const std::string& advice) {
  if (std::isfinite(loss)) return;
  FailWithReason(ErrorCode::kInternal, "NON_FINITE_LOSS",
                 "stage " + std::to_string(stage) + " step " + std::to_string(step) + ": the " +
                     name + " loss is " + std::to_string(loss) + "; training diverged: " + advice);
}

// The allocators' ways of saying there is no memory left: LibTorch's
// OutOfMemoryError (CUDA), std::bad_alloc (the engine's CPU allocator) and
// the default CPU allocator's c10::Error.
bool IsOutOfMemory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return true;
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  if (c10_error == nullptr) return false;
  const std::string message = c10_error->what_without_backtrace();
  return message.find("DefaultCPUAllocator") != std::string::npos ||
         message.find("not enough memory") != std::string::npos;
}

std::string WithoutBacktrace(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
}

// Where and how a job computes (device, CUDA arithmetic, threads): part of
// both the stage-1 fingerprint and result.json.
void AddComputeSettings(const JobOptions& o, Json& j) {
  j["device"] = o.device == JobDevice::kCuda ? "cuda" : "cpu";
  if (o.device == JobDevice::kCuda) {
    j["cuda_math"] = CudaMathName(o.cuda_math);
    j["cudnn_autotune"] = o.cudnn_autotune;
  }
  j["conv_mode"] = ConvModeName(ResolveConvMode(o.adapt.conv_mode));
  j["frozen_conv_mode"] = ConvModeName(ResolveConvMode(o.adapt.frozen_conv_mode));
  j["source_precision"] = PrecisionName(o.source_precision);
  j["channels_last"] = o.adapt.channels_last;
  j["threads"] = at::get_num_threads();
}

// Everything stage 1's result depends on, as JSON text: a checkpoint is only
// reused when this matches exactly.
std::string Stage1Fingerprint(const JobOptions& o, const JobModels& m) {
  Json j;
  j["source_digest"] = m.source_digest;
  j["clip"] = Json::array();
  for (size_t i = 0; i < m.clips.size(); ++i) {
    j["clip"].push_back({{"name", m.clip_names[i]}, {"config", m.clips[i]->config().DebugString()}});
  }
  // Every stage-1 setting by its key (settings.h), so that a setting added
  // to the table cannot be left out here.
  for (const JobSetting& s : JobSettings()) {
    if (s.key.rfind("stage1.", 0) == 0 || s.key == "source_class" || s.key == "target_class" ||
        s.key == "noise") {
      j[s.key] = GetJobSetting(o, s);
    }
  }
  AddComputeSettings(o, j);
  return j.dump();
}

Json LossesJson(const LossSeries& series, int64_t max_points) {
  Json j = Json::object();
  for (const auto& [name, values] : series) {
    std::vector<int64_t> steps;
    std::vector<double> points = DownsampleSeries(values, max_points, &steps);
    j[name] = {{"step", steps}, {"value", points}};
  }
  return j;
}

// result.json's "options": every setting (settings.h), with the values a
// job resolves ("auto") as it ran them, and how it ran.
Json OptionsJson(const JobOptions& o, const JobModels& m) {
  Json j = Json::parse(JobSettingsJson(o, -1));
  j["stage2"]["auto_layer_k"] = AutoLayerK(o.adapt.stage2, m.source->config().n_latent());
  j["conv_mode"] = ConvModeName(ResolveConvMode(o.adapt.conv_mode));
  j["frozen_conv_mode"] = ConvModeName(ResolveConvMode(o.adapt.frozen_conv_mode));
  j["threads"] = at::get_num_threads();
  j["demo"] = o.demo;
  j["world"] = o.world;
  return j;
}

// ValidateJobOptions, and what needs the models.
void ValidateOptions(const JobOptions& o, const JobModels& m) {
  CheckArgument(!o.out_dir.empty(), "job: out_dir is required");
  ValidateJobOptions(o);
  CheckArgument(!m.source.is_empty(), "job: no source generator loaded");
  CheckArgument(!m.clips.empty(), "job: no CLIP model loaded");
  CheckArgument(m.tokenizer != nullptr, "job: no tokenizer loaded");
  const int64_t n_latent = m.source->config().n_latent();
  CheckArgument(o.adapt.stage2.auto_layer_k <= n_latent,
                "stage2.auto_layer_k must be at most the generator's " +
                    std::to_string(n_latent) + " W+ rows, got " +
                    std::to_string(o.adapt.stage2.auto_layer_k));
}

// Images of `generator` for latents `z` (chunked), truncated toward
// `mean_latent`, with noise from a generator seeded with `noise_seed` (so two
// generators sampled with the same seed see the same noise).
torch::Tensor Samples(const AdaptContext& ctx, GeneratorImpl& generator, const torch::Tensor& z,
                      const torch::Tensor& mean_latent, JobDevice device, uint64_t noise_seed) {
  at::Generator rng = MakeRng(device, noise_seed);
  std::vector<torch::Tensor> chunks;
  for (int64_t i = 0; i < z.size(0); i += kSampleChunk) {
    auto zi = z.slice(0, i, std::min(z.size(0), i + kSampleChunk));
    chunks.push_back(SampleImages(ctx, generator, zi, mean_latent, rng).to(torch::kCPU));
  }
  return at::cat(chunks, 0);
}

class StageMeter {
 public:
  StageMeter(int64_t total, int64_t images_per_step)
      : total_(total), images_per_step_(images_per_step), start_(Clock::now()) {}
  double seconds() const { return SecondsSince(start_); }
  double seconds_per_step(int64_t done) const { return done > 0 ? seconds() / done : 0.0; }
  double images_per_second(int64_t done) const {
    const double s = seconds();
    return s > 0 ? static_cast<double>(done * images_per_step_) / s : 0.0;
  }
  double remaining_seconds(int64_t done) const { return seconds_per_step(done) * (total_ - done); }

 private:
  int64_t total_;
  int64_t images_per_step_;
  Clock::time_point start_;
};

}  // namespace

JobModels LoadJobModels(const JobOptions& options) {
  if (options.device == JobDevice::kCuda) RequireCuda();
  JobModels m;
  CheckArgument(!(options.demo && options.world), "job: the demo and the world models exclude each other");
  if (options.world) {
    m.source = WorldGenerator();
    m.source_name = kWorldGeneratorName;
    m.clips.push_back(WorldClip());
    m.clip_names.push_back(kWorldClipName);
    m.clip_weights.push_back(1.0);
    m.judge = WorldJudge();
  } else if (options.demo) {
    m.source = DemoGenerator();
    m.source_name = kDemoGeneratorName;
    m.clips.push_back(DemoClip());
    m.clip_names.push_back(kDemoClipName);
    m.clip_weights.push_back(1.0);
  } else {
    CheckArgument(!options.source_generator.empty(), "job: a source generator is required");
    CheckArgument(!options.clips.empty(), "job: at least one CLIP model is required");
    m.source = LoadGenerator(options.source_generator);
    m.source_name = std::filesystem::path(options.source_generator).filename().string();
    for (const ClipSpec& spec : options.clips) {
      CheckArgument(spec.weight > 0, "job: CLIP weight for " + spec.path + " must be > 0");
      m.clips.push_back(LoadClip(spec.path));
      m.clip_names.push_back(std::filesystem::path(spec.path).filename().string());
      m.clip_weights.push_back(spec.weight);
    }
  }
  PrepareJobModels(m, options.device);
  return m;
}

void PrepareJobModels(JobModels& m, JobDevice job_device) {
  const torch::Device device = ToTorchDevice(job_device);
  m.source_digest = GeneratorImpl::Digest(*m.source);
  m.source->SetAllTrainable(false);
  m.source->eval();
  m.source->to(device);
  for (auto& clip : m.clips) {
    clip->Freeze();
    clip->eval();
    clip->to(device);
  }
  if (m.tokenizer == nullptr) {
    m.tokenizer = std::shared_ptr<const Tokenizer>(Tokenizer::FromFile(DefaultVocabPath()));
  }
}

namespace {

// One job's run: the state its stages share, one method per stage. Run() is
// the whole job (see RunJob). Construct only with validated options and models.
class JobRun {
 public:
  JobRun(const JobOptions& options, const JobModels& models, const JobCallbacks& callbacks)
      : options_(options),
        adapt_(options.adapt),
        models_(models),
        callbacks_(callbacks),
        ipl_(adapt_.method == AdaptMethod::kIpl),
        job_device_(options.device),
        device_(ToTorchDevice(options.device)),
        source_(*models.source.ptr()),
        style_dim_(source_.config().style_dim),
        n_clips_(models.clips.size()),
        stage2_images_per_step_(2 * adapt_.stage2.batch +
                                adapt_.stage2.auto_layer_batch * adapt_.stage2.auto_layer_iters) {}

  // Out of memory anywhere in the job: Error(kResourceExhausted, reason
  // OUT_OF_MEMORY) naming the part of the job and the batch settings to lower.
  JobResult Run() {
    try {
      return RunStages();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      if (!IsOutOfMemory(e)) throw;
      const Stage1Options& s1 = adapt_.stage1;
      const Stage2Options& s2 = adapt_.stage2;
      FailWithReason(
          ErrorCode::kResourceExhausted, "OUT_OF_MEMORY",
          std::string("out of memory on the ") + (job_device_ == JobDevice::kCuda ? "GPU" : "CPU") +
              " in " + part_ + " (" + WithoutBacktrace(e) +
              "); lower the batch settings (stage1.batch " + std::to_string(s1.batch) +
              ", stage2.batch " + std::to_string(s2.batch) + ", stage2.auto_layer_batch " +
              std::to_string(s2.auto_layer_batch) + ") or use a device with more memory" +
              (stage1_done_ ? "; a retry in " + options_.out_dir + " reuses its stage-1 checkpoint"
                            : ""));
    }
  }

 private:
  JobResult RunStages() {
    ApplyCudaSettings(options_);
    const auto job_start = Clock::now();
    result_.label = !options_.label.empty() ? options_.label : (ipl_ ? "IPL" : "NADA");
    result_.out_dir = options_.out_dir;
    MakeDirectories(options_.out_dir);
    ThrowIfCancelled(callbacks_, "before it started");
    part_ = "setup";
    PrepareSource();
    PrepareTexts();
    PrepareSampleLatents();
    if (ipl_) {
      part_ = "stage 1 (mapper training)";
      TrainMappers();
      stage1_done_ = true;  // and checkpointed
    }
    ThrowIfCancelled(callbacks_, "after stage 1");
    part_ = "stage 2 (generator fine-tuning)";
    TrainGenerator();
    ThrowIfCancelled(callbacks_, "after stage 2");
    part_ = "the results (samples, quality report)";
    WriteResults(job_start);
    return result_;
  }

  // The frozen source every step reads, and its bfloat16 copy when asked for
  // (source_precision).
  void PrepareSource() {
    ctx_.source = &source_;
    ctx_.options = &adapt_;
    if (options_.source_precision == Precision::kBf16) {
      source_lowp_ = LowPrecisionCopy(source_, torch::kBFloat16);
      ctx_.source_lowp = source_lowp_.get();
    }
    if (job_device_ == JobDevice::kCpu &&
        (options_.source_precision == Precision::kBf16 ||
         options_.selection_precision == Precision::kBf16 ||
         options_.train_precision == Precision::kBf16 || adapt_.channels_last)) {
      Log(callbacks_,
          "note: bfloat16 generators and channels-last activations are meant for CUDA; on the "
          "CPU they are slower (docs/benchmarks.md)");
    }
  }

  // Texts, once per job and CLIP model; every model guides training with its
  // weight (ClipGuide).
  void PrepareTexts() {
    tokens_ = TokenizeJobTexts(*models_.tokenizer, adapt_);
    texts_.resize(n_clips_);  // not resized again: ctx_ points into it
    for (size_t m = 0; m < n_clips_; ++m) {
      ClipModel clip = models_.clips[m];  // a holder: the models are frozen, not const
      {
        torch::NoGradGuard no_grad;
        texts_[m] = ComputeJobTexts(*clip, tokens_);
      }
      ctx_.guides.push_back(ClipGuide{clip.get(), &texts_[m], models_.clip_weights[m]});
    }
  }

  // Fixed latents and the mean latent for previews, samples.png and quality.
  void PrepareSampleLatents() {
    at::Generator sample_rng = at::make_generator<at::CPUGeneratorImpl>(options_.sample_seed);
    const int64_t n_samples = std::max(options_.quality_samples, options_.grid_samples);
    sample_z_ = DrawZ(n_samples, style_dim_, sample_rng).to(device_);
    preview_z_ = DrawZ(options_.preview_samples, style_dim_, sample_rng).to(device_);
    at::Generator mean_rng = MakeRng(job_device_, options_.sample_seed + 1);
    mean_latent_ = source_.MeanLatent(adapt_.mean_latent_samples, mean_rng);
  }

  // Images of `generator` on `z` with the job's sample truncation and noise.
  torch::Tensor SamplesOf(GeneratorImpl& generator, const torch::Tensor& z) const {
    return Samples(ctx_, generator, z, mean_latent_, job_device_, options_.sample_seed + 2);
  }

  // Time estimate of stage 2 before it runs, from stage 1's time per image.
  double Stage2Estimate() const {
    return seconds_per_image_ * stage2_images_per_step_ * adapt_.stage2.iterations;
  }

  // The mappers of a stage-1 checkpoint at `path` made with the same
  // settings: true when loaded. A checkpoint for other settings, or one that
  // does not parse (cut short, corrupt, mis-shaped), is logged and ignored:
  // stage 1 trains again and overwrites it.
  bool LoadStage1Checkpoint(const std::string& path, const std::string& fingerprint) {
    std::vector<LatentMapper> mappers;
    std::optional<Stage1Checkpoint> checkpoint;
    try {
      checkpoint = ReadStage1Checkpoint(path);
      if (!checkpoint) return false;
      if (checkpoint->fingerprint != fingerprint || checkpoint->mappers.size() != n_clips_) {
        Log(callbacks_, "stage-1 checkpoint in " + options_.out_dir +
                            " is for other settings; training stage 1 again");
        return false;
      }
      for (size_t m = 0; m < n_clips_; ++m) {
        mappers.push_back(
            LatentMapperFromTensors(checkpoint->mappers[m], checkpoint->n_ctx, path));
        mappers.back()->to(device_);
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kCancelled) throw;
      Log(callbacks_, "stage-1 checkpoint " + path + " could not be read (" + e.what() +
                          "); training stage 1 again");
      return false;
    }
    mappers_ = std::move(mappers);
    stage1_losses_ = checkpoint->losses;
    result_.stage1_resumed = true;
    Log(callbacks_, "stage 1 loaded from " + path);
    return true;
  }

  // Stage 1: one mapper per CLIP model, loaded from a matching checkpoint or
  // trained and checkpointed.
  void TrainMappers() {
    const std::string checkpoint_path = Join(options_.out_dir, kCheckpointName);
    const std::string fingerprint = Stage1Fingerprint(options_, models_);
    if (!(options_.resume && LoadStage1Checkpoint(checkpoint_path, fingerprint))) {
      std::vector<Adam> adams;
      adams.reserve(n_clips_);
      for (size_t m = 0; m < n_clips_; ++m) {
        mappers_.push_back(NewMapperForJob(source_, *models_.clips[m], adapt_));
        mappers_.back()->to(device_);
        adams.push_back(MakeMapperAdam(*mappers_.back(), adapt_));
      }
      std::vector<MapperSlot> slots;
      for (size_t m = 0; m < n_clips_; ++m) slots.push_back({mappers_[m].get(), &adams[m]});
      at::Generator rng = MakeRng(job_device_, adapt_.stage1.seed);
      at::Generator z_rng = job_device_ == JobDevice::kCpu
                                ? rng
                                : at::make_generator<at::CPUGeneratorImpl>(adapt_.stage1.seed);
      const int64_t total = adapt_.stage1.iterations;
      StageMeter meter(total, adapt_.stage1.batch);
      for (int64_t step = 1; step <= total; ++step) {
        ThrowIfCancelled(callbacks_, "in stage 1 before step " + std::to_string(step));
        const torch::Tensor z = DrawLatents(adapt_.stage1.batch, style_dim_, z_rng, device_);
        const std::vector<Stage1Losses> per_clip = Stage1Step(ctx_, slots, z, rng);
        for (const Stage1Losses& losses : per_clip) {
          CheckFiniteLoss(losses.total, 1, step, "mapper",
                          "lower stage1.lr (now " + std::to_string(adapt_.stage1.lr) + ")");
        }
        std::vector<std::pair<std::string, double>> terms;
        for (size_t m = 0; m < n_clips_; ++m) {
          for (const auto& [name, value] : NamedTerms(per_clip[m])) {
            const std::string key = LossPrefix(m) + name;
            stage1_losses_[key].push_back(value);
            // Progress shows every term of the first model, the total of the others.
            if (m == 0 || name == "total") terms.emplace_back(key, value);
          }
        }
        seconds_per_image_ = meter.seconds() / static_cast<double>(step * adapt_.stage1.batch);
        if (callbacks_.on_progress) {
          JobProgress p;
          p.label = result_.label;
          p.stage = 1;
          p.step = step;
          p.total = total;
          p.losses = std::move(terms);
          p.images_per_second = meter.images_per_second(step);
          p.eta_seconds = meter.remaining_seconds(step) + Stage2Estimate();
          callbacks_.on_progress(p);
        }
      }
      result_.stage1 = {total, meter.seconds()};
      Stage1Checkpoint c;
      for (const LatentMapper& mapper : mappers_) c.mappers.push_back(StateDict(*mapper));
      c.rng["stage1"] = rng.get_state();
      if (job_device_ != JobDevice::kCpu) c.rng["stage1_z"] = z_rng.get_state();
      c.fingerprint = fingerprint;
      c.n_ctx = tokens_.n_ctx;
      c.losses = stage1_losses_;
      c.seconds = result_.stage1.seconds;
      WriteStage1Checkpoint(checkpoint_path, c);
    }
    for (LatentMapper& mapper : mappers_) {
      mapper->eval();
      for (auto& p : mapper->parameters()) p.set_requires_grad(false);
    }
  }

  // Stage 2: G_t trained, G_ema (the result) updated, previews written.
  void TrainGenerator() {
    Generator target = CloneForTraining(source_);
    ema_ = CloneForTraining(source_);
    Adam adam = MakeGeneratorAdam(*target, adapt_);
    // One bfloat16 copy of G_t serves layer selection and the step when
    // both ask for it (each refreshes it from G_t first).
    const bool select_lowp =
        options_.selection_precision == Precision::kBf16 && adapt_.stage2.auto_layer_iters > 0;
    const bool train_lowp = options_.train_precision == Precision::kBf16;
    Generator lowp{nullptr};
    if (select_lowp || train_lowp) lowp = LowPrecisionCopy(*target, torch::kBFloat16);
    ctx_.selection_lowp = select_lowp ? lowp.get() : nullptr;
    ctx_.train_lowp = train_lowp ? lowp.get() : nullptr;
    struct ClearCopies {  // ctx_ must not outlive the copy
      AdaptContext* ctx;
      ~ClearCopies() { ctx->selection_lowp = ctx->train_lowp = nullptr; }
    } clear_copies{&ctx_};
    std::vector<LatentMapperImpl*> step_mappers;
    for (LatentMapper& mapper : mappers_) step_mappers.push_back(mapper.get());
    at::Generator rng = MakeRng(job_device_, adapt_.stage2.seed);
    at::Generator z_rng = job_device_ == JobDevice::kCpu
                              ? rng
                              : at::make_generator<at::CPUGeneratorImpl>(adapt_.stage2.seed);
    const int64_t total = adapt_.stage2.iterations;
    StageMeter meter(total, stage2_images_per_step_);
    const std::string preview_dir = Join(options_.out_dir, "previews");
    const bool previews = options_.preview_every > 0 && PngSupported();
    if (previews) MakeDirectories(preview_dir);
    for (int64_t step = 1; step <= total; ++step) {
      ThrowIfCancelled(callbacks_, "in stage 2 before step " + std::to_string(step));
      const torch::Tensor z = DrawLatents(adapt_.stage2.batch, style_dim_, z_rng, device_);
      torch::Tensor z_select;
      if (adapt_.stage2.auto_layer_iters > 0) {
        z_select = DrawLatents(adapt_.stage2.auto_layer_batch, style_dim_, z_rng, device_);
      }
      const Stage2Result r =
          Stage2Step(ctx_, step_mappers, *target, *ema_, adam, z, z_select, rng);
      CheckFiniteLoss(r.loss, 2, step, "generator",
                      "lower stage2.lr (now " + std::to_string(adapt_.stage2.lr) + ")");
      stage2_losses_["loss"].push_back(r.loss);
      std::vector<std::pair<std::string, double>> terms = {{"loss", r.loss}};
      if (n_clips_ > 1) {
        for (size_t m = 0; m < n_clips_; ++m) {
          stage2_losses_["clip" + std::to_string(m)].push_back(r.guide_losses[m]);
          terms.emplace_back("clip" + std::to_string(m), r.guide_losses[m]);
        }
      }
      JobProgress p;
      if (previews && (step % options_.preview_every == 0 || step == total)) {
        char name[64];
        std::snprintf(name, sizeof(name), "step_%06lld.png", static_cast<long long>(step));
        p.preview_path = Join(preview_dir, name);
        WriteImageRow(p.preview_path, SamplesOf(*ema_, preview_z_));
        result_.preview_paths.push_back(p.preview_path);
      }
      if (callbacks_.on_progress) {
        p.label = result_.label;
        p.stage = 2;
        p.step = step;
        p.total = total;
        p.losses = std::move(terms);
        p.images_per_second = meter.images_per_second(step);
        p.eta_seconds = meter.remaining_seconds(step);
        callbacks_.on_progress(p);
      }
    }
    result_.stage2 = {total, meter.seconds()};
  }

  // The generator delta, the mappers, samples.png, quality.json, result.json.
  void WriteResults(Clock::time_point job_start) {
    result_.delta_path = Join(options_.out_dir, "generator_delta.safetensors");
    ema_->SaveDelta(result_.delta_path, source_);
    for (size_t m = 0; m < mappers_.size(); ++m) {
      const std::string path = Join(options_.out_dir, MapperFileName(m));
      WriteSafetensors(path, StateDict(*mappers_[m]),
                       {{"format", "restyle-ipl-mapper"},
                        {"n_ctx", std::to_string(tokens_.n_ctx)},
                        {"ctx_init", adapt_.stage1.ctx_init},
                        {"source_class", adapt_.source_class},
                        {"target_class", adapt_.target_class},
                        {"clip", models_.clip_names[m]}});
      result_.mapper_paths.push_back(path);
    }
    if (!result_.mapper_paths.empty()) result_.mapper_path = result_.mapper_paths.front();

    // Quality report and samples.png on the same latents and noise.
    const torch::Tensor source_images = SamplesOf(source_, sample_z_);
    const torch::Tensor adapted_images = SamplesOf(*ema_, sample_z_);
    if (PngSupported()) {
      result_.samples_path = Join(options_.out_dir, "samples.png");
      WriteComparisonGrid(result_.samples_path,
                          source_images.slice(0, 0, options_.grid_samples),
                          adapted_images.slice(0, 0, options_.grid_samples));
    } else {
      Log(callbacks_, "built without libpng: no samples.png or previews");
    }
    const std::string target_prompt = "a photo of a " + adapt_.target_class;
    std::vector<QualityModel> quality_models;
    {
      torch::NoGradGuard no_grad;
      const std::vector<int64_t> ids = models_.tokenizer->Tokenize(target_prompt);
      const torch::Tensor prompt_tokens =
          torch::tensor(ids, torch::kLong).reshape({1, -1}).to(device_);
      for (size_t i = 0; i < n_clips_; ++i) {
        QualityModel q;
        q.name = models_.clip_names[i];
        q.clip = models_.clips[i];
        q.weight = models_.clip_weights[i];
        q.target_text_feature = q.clip->EncodeText(prompt_tokens);
        quality_models.push_back(q);
      }
    }
    const int64_t nq = options_.quality_samples;
    result_.quality =
        MeasureQuality(quality_models, source_images.slice(0, 0, nq).to(device_),
                       adapted_images.slice(0, 0, nq).to(device_), result_.label, target_prompt,
                       adapt_.sample_truncation);
    if (const std::optional<int> style = WorldStyleOf(adapt_.target_class);
        models_.judge && style && source_images.size(2) == 32) {
      result_.quality.judge = ScoreAdaptation(*models_.judge.ptr(), source_images.slice(0, 0, nq).cpu(),
                                              adapted_images.slice(0, 0, nq).cpu(), *style);
    }
    result_.quality_path = Join(options_.out_dir, "quality.json");
    WriteTextFile(result_.quality_path, Json::parse(result_.quality.ToJson()).dump(2) + "\n");

    result_.stage1_losses =
        stage1_losses_.count("total") ? stage1_losses_["total"] : std::vector<double>{};
    result_.stage2_losses = stage2_losses_["loss"];
    result_.total_seconds = SecondsSince(job_start);
    result_.adapted = ema_;

    Json j;
    j["format"] = "restyle-adapt-result";
    j["label"] = result_.label;
    j["options"] = OptionsJson(options_, models_);
    j["seeds"] = {{"stage1", adapt_.stage1.seed},
                  {"stage2", adapt_.stage2.seed},
                  {"samples", options_.sample_seed}};
    j["source"] = {{"name", models_.source_name},
                   {"digest", models_.source_digest},
                   {"config", source_.config().ToString()}};
    j["clip"] = Json::array();
    for (size_t i = 0; i < n_clips_; ++i) {
      j["clip"].push_back({{"name", models_.clip_names[i]},
                           {"weight", models_.clip_weights[i]},
                           {"config", models_.clips[i]->config().DebugString()},
                           {"mapper", ipl_ ? Json(MapperFileName(i)) : Json(nullptr)}});
    }
    j["adapted_digest"] = GeneratorImpl::Digest(*ema_);
    j["stage1_resumed"] = result_.stage1_resumed;
    j["timings"] = {{"stage1_seconds", result_.stage1.seconds},
                    {"stage1_steps", result_.stage1.steps},
                    {"stage2_seconds", result_.stage2.seconds},
                    {"stage2_steps", result_.stage2.steps},
                    {"total_seconds", result_.total_seconds}};
    j["losses"] = {{"stage1", LossesJson(stage1_losses_, options_.max_loss_points)},
                   {"stage2", LossesJson(stage2_losses_, options_.max_loss_points)}};
    j["quality"] = Json::parse(result_.quality.ToJson());
    j["files"] = {{"generator_delta", "generator_delta.safetensors"},
                  {"mapper", ipl_ ? Json(MapperFileName(0)) : Json(nullptr)},
                  {"samples", PngSupported() ? Json("samples.png") : Json(nullptr)},
                  {"quality", "quality.json"},
                  {"stage1_checkpoint", ipl_ ? Json(kCheckpointName) : Json(nullptr)}};
    result_.result_path = Join(options_.out_dir, "result.json");
    WriteTextFile(result_.result_path, j.dump(2) + "\n");
  }

  const JobOptions& options_;
  const AdaptOptions& adapt_;
  const JobModels& models_;
  const JobCallbacks& callbacks_;
  const bool ipl_;
  const JobDevice job_device_;
  const torch::Device device_;
  GeneratorImpl& source_;
  const int64_t style_dim_;
  const size_t n_clips_;
  const int64_t stage2_images_per_step_;

  JobResult result_;
  const char* part_ = "setup";  // the part of the job running, for errors
  bool stage1_done_ = false;
  JobTokens tokens_;
  std::vector<JobTexts> texts_;  // one per CLIP model; ctx_.guides point into it
  AdaptContext ctx_;
  Generator source_lowp_{nullptr};  // source_precision bf16: ctx_.source_lowp
  torch::Tensor sample_z_, preview_z_, mean_latent_;
  double seconds_per_image_ = 0;        // of stage 1, for stage 2's first estimate
  std::vector<LatentMapper> mappers_;  // one per CLIP model (IPL)
  Generator ema_{nullptr};             // G_ema, the result
  LossSeries stage1_losses_, stage2_losses_;
};

}  // namespace

JobResult RunJob(const JobOptions& options, const JobModels& models,
                 const JobCallbacks& callbacks) {
  ValidateOptions(options, models);
  return JobRun(options, models, callbacks).Run();
}

std::vector<JobResult> RunMethods(const JobOptions& options, const JobModels& models,
                                  const std::vector<AdaptMethod>& methods,
                                  const JobCallbacks& callbacks) {
  CheckArgument(!methods.empty(), "RunMethods: no method");
  std::vector<JobResult> results;
  for (AdaptMethod method : methods) {
    JobOptions o = options;
    o.adapt.method = method;
    o.out_dir = Join(options.out_dir, MethodName(method));
    results.push_back(RunJob(o, models, callbacks));
  }
  if (results.size() == 2) {
    WriteTextFile(Join(options.out_dir, "comparison.txt"),
                  SideBySide(results[0].quality, results[1].quality));
  }
  return results;
}

}  // namespace restyle::engine
