// restyle-worker: one process per GPU (or CPU machine) that owns the engine
// and works for a front (pull model: it connects to the front's worker port,
// so it needs no discovery and the front no list of workers).
//
// At start it loads its models (manifest.h, or the demo models), sets the
// process-wide LibTorch settings once (threads, TF32 / cuDNN), and
// registers. Then threads of its own:
//   heartbeat   renews the lease of the running job; learns of cancels and
//               lost leases; registers again when the front forgot it
//   polls       one long poll per lane (adaptation only while idle;
//               generation for as many tasks as its queue has room for),
//               fetching an adapted generator's files before the task is
//               queued
//   engine      the only thread that runs LibTorch: a job at a time, and
//               generation while idle or between training steps, in
//               dynamic batches: the queued requests for one generator (and
//               truncation and size) run as one forward of up to
//               max_generation_batch images, the first waiting at most
//               generation_window for company (unless the worker is quiet:
//               the last batch was one request and this one came while
//               nothing was queued or drawn); a request whose deadline has
//               passed is ended without being drawn
//   encoders    encode generated images as PNG, in parallel
//   reporter    progress batches (and preview and stage-1 checkpoint
//               uploads) to the front, never blocking a training step
//   sender      streams the encoded images back, in order
// A job's end: artifacts uploaded (sha256 checked by the front), then
// CompleteJob; a non-finite loss or an out-of-memory fails it with its
// reason; a lost lease stops it without reporting anything more.
//
// Shutdown (SIGTERM): stops taking work, lets the current step finish,
// uploads the stage-1 checkpoint if there is one, releases the lease,
// finishes the generation tasks it holds, and returns from Run.
//
// Thread-safety: Shutdown from any thread; everything else is internal.
#ifndef RESTYLE_WORKER_WORKER_H_
#define RESTYLE_WORKER_WORKER_H_

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/engine/adapt_job/job.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "worker/front_client.h"
#include "worker/metrics.h"
#include "worker/generator_cache.h"
#include "worker/health_server.h"
#include "worker/models.h"

namespace restyle::worker {

struct WorkerOptions {
  ConnectionOptions front;
  // manifest.json and model files; "" loads the `embedded_models`.
  std::string model_dir;
  // The models of a worker without a model directory (source "demo").
  EmbeddedModels embedded_models = EmbeddedModels::kWorld;
  // Job outputs and the disk cache of adapted generators. Required.
  std::string work_dir;
  // Stable for the process; "" makes <hostname>-<random>.
  std::string worker_id;
  engine::JobDevice device = engine::JobDevice::kCpu;
  // LibTorch intra-op threads (0: every CPU).
  int threads = 0;
  // CUDA arithmetic, process-wide (set once at start, the same for every job).
  engine::CudaMath cuda_math = engine::CudaMath::kTf32;
  bool cudnn_autotune = true;
  // The worker's own job settings (common/job_spec.h WorkerSettingKeys, such
  // as "conv_mode" or "stage2.train_precision"), as the table's key and text.
  std::vector<std::pair<std::string, std::string>> job_settings;
  // Parameter bytes of adapted generators kept in memory (0: a quarter of
  // the host's memory on the CPU, 8 GiB on CUDA).
  int64_t cache_bytes = 0;
  // Generation tasks held at a time (queued, running or sending): the bound
  // of the worker's queue.
  int max_generation_tasks = 32;
  // Images in one generation forward, at most (0: DefaultGenerationBatch).
  int max_generation_batch = 0;
  // How long the first request of a batch waits for more of its generator
  // (zero: never).
  absl::Duration generation_window = absl::Milliseconds(2);
  // Wait the window even when the worker is quiet (by default a lone
  // request at low load runs at once: nobody is coming).
  bool always_wait_for_company = false;
  // Images generated between two training steps while a job runs.
  int images_per_slot = 4;
  // zlib level of the PNGs sent (0-9; docs/benchmarks.md#png).
  int png_level = 1;
  // Threads encoding PNGs (0: half the CPUs, at least 1).
  int encode_threads = 0;
  // How long a poll waits at the front.
  absl::Duration poll_wait = absl::Seconds(10);
  // Prometheus /metrics on this address's port ("0.0.0.0:8710"; port 0
  // picks one); "" for none.
  std::string metrics_address = "0.0.0.0:8710";
  // The plaintext gRPC health port for probes (health_server.h; port 0
  // picks one); "" for none.
  std::string health_address = "0.0.0.0:8711";
  // When set, {"metrics": PORT, "health": PORT} is written here once they
  // are bound (-1: none).
  std::string port_file;
};

// max_generation_batch's default on `device` (docs/benchmarks.md).
int DefaultGenerationBatch(engine::JobDevice device);

class Worker {
 public:
  // Loads the models and prepares the connection (nothing is sent yet).
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const WorkerOptions& options);
  ~Worker();

  // Registers and works until Shutdown; returns once the lease (if any) is
  // released and the threads have stopped.
  absl::Status Run();
  void Shutdown();

  const std::string& name() const { return name_; }
  // The /metrics port, -1 without one.
  int metrics_port() const { return metrics_server_ ? metrics_server_->port() : -1; }
  // The health port, -1 without one.
  int health_port() const { return health_ ? health_->port() : -1; }

 private:
  // The job the engine runs, and what the front said of its lease.
  struct CurrentJob {
    std::string job;  // "jobs/{id}"
    int attempt = 0;
    std::atomic<bool> cancel{false};  // a client asked: stop and report CANCELLED
    std::atomic<bool> lost{false};    // the lease moved on: stop, report nothing
    std::atomic<bool> checkpoint_uploaded{false};
  };
  // A generation task held by this worker.
  struct GenWork {
    wv1::GenerateTask task;
    int next = 0;                         // index of the next seed to draw
    std::atomic<bool> cancelled{false};   // its client left (set by the sender)
    absl::Time arrived;                   // queued on the engine
    bool alone = false;                   // came while nothing was queued or drawn
    absl::Time deadline = absl::InfiniteFuture();
    bool pinned = false;                  // its adapted generator (GeneratorCache::Pin)
  };
  // Seeds of one or more tasks drawn in one forward.
  struct Batch {
    struct Part {
      std::shared_ptr<GenWork> work;
      int first = 0;  // seed index
      int count = 0;
    };
    std::vector<Part> parts;
    int images = 0;
  };
  // An event for the front about a job, or a file to upload first.
  struct Report {
    std::string job;
    int attempt = 0;
    std::optional<wv1::ProgressEvent> event;
    // Uploaded before `event` is sent: a preview (its artifact name goes in
    // event.progress.preview) or, without an event, another file.
    std::string upload_path;
    std::string upload_file;
    std::string upload_kind;
  };
  // An image to send (or the end of a task, or its error).
  struct Outgoing {
    uint64_t seq = 0;  // the order the sender keeps
    std::shared_ptr<GenWork> work;
    int index = 0;
    uint64_t seed = 0;
    torch::Tensor pixels;  // (H,W,3) uint8, until encoded
    std::string png;       // set by an encoder
    int64_t height = 0, width = 0;
    bool end = false;
    std::optional<restyle::v1::JobError> error;
  };

  explicit Worker(const WorkerOptions& options) : options_(options) {}

  absl::Status Register();
  void HeartbeatLoop();
  // One long poll of `lane` (for up to `max_tasks` generation tasks);
  // nullopt when stopping.
  std::optional<absl::Status> Poll(wv1::Lane lane, wv1::PollWorkResponse* response,
                                   int max_tasks = 1);
  void AdaptPollLoop();
  void GenerationPollLoop();
  void ReporterLoop();
  void EncoderLoop();
  void SenderLoop();

  // The engine thread's work.
  void EngineLoop();
  // Runs a leased job to its end (`job` is current_).
  void RunAdapt(const wv1::AdaptTask& task, const std::shared_ptr<CurrentJob>& job);
  absl::StatusOr<engine::JobResult> TrainJob(const wv1::AdaptTask& task,
                                             const std::shared_ptr<CurrentJob>& job,
                                             const std::string& out_dir, bool* stage1_trained);
  absl::Status PublishResult(const wv1::AdaptTask& task, const engine::JobResult& result,
                             const std::string& out_dir, const std::shared_ptr<CurrentJob>& job,
                             bool stage1_trained);
  void EndJob(const wv1::AdaptTask& task, const absl::Status& status, bool stage1_trained,
              const std::string& out_dir, const std::shared_ptr<CurrentJob>& job);
  // Uploads the stage-1 checkpoint in `out_dir` once per attempt.
  absl::Status UploadCheckpoint(const std::shared_ptr<CurrentJob>& job, const std::string& out_dir);
  // Generates up to `budget` images of queued tasks (all when budget < 0);
  // `wait` lets a batch wait up to the window for company.
  void ServeGeneration(int budget, bool wait);
  // The next batch (empty when nothing is queued): the oldest task's key,
  // and the seeds of every queued task with that key, in order, up to
  // `limit` images. Tasks past their deadline are ended on the way.
  Batch NextBatch(int limit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Draws `batch` and queues its images (and the ends of finished tasks).
  void RunBatch(const Batch& batch);
  // Queues an image, or a task's end, for the encoders and the sender.
  void PushOutgoing(Outgoing item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a task that has left generation_ (error when not OK).
  void EndTaskLocked(const std::shared_ptr<GenWork>& work, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Reporter: queues an event (or an upload) for the current job; Flush
  // waits until everything queued has been sent (or given up).
  void Enqueue(Report report);
  void FlushReports();
  // Retries `call` while the front is unreachable, up to `patience`.
  absl::Status Persist(absl::Duration patience, const std::function<absl::Status()>& call,
                       const std::shared_ptr<CurrentJob>& job = nullptr);
  // Marks the current job's lease lost or cancelled as the front says.
  void NoteLease(const std::string& job, bool lost, bool cancel);
  absl::StatusOr<restyle::v1::Artifact> UploadFile(const std::string& job, int attempt,
                                                   const std::string& path,
                                                   const std::string& file,
                                                   const std::string& kind);
  bool stopping() const;
  // The health port's status of `service` (nothing without one).
  void SetHealth(const std::string& service, bool serving);

  const WorkerOptions options_;
  std::string name_;  // "workers/{id}"
  // Drawn once per process: re-registrations under name_ carry it.
  const std::string instance_key_ = RandomId(32);
  std::unique_ptr<Models> models_;
  std::unique_ptr<FrontClient> front_;
  std::unique_ptr<GeneratorCache> cache_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics_{*registry_};
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<HealthServer> health_;
  absl::Duration heartbeat_interval_ = absl::Seconds(2);

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<CurrentJob> current_ ABSL_GUARDED_BY(mu_);
  std::optional<wv1::AdaptTask> pending_adapt_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<GenWork>> generation_ ABSL_GUARDED_BY(mu_);
  bool polls_done_ ABSL_GUARDED_BY(mu_) = false;
  // Generation tasks held: queued, running or being sent.
  int generation_held_ ABSL_GUARDED_BY(mu_) = 0;
  // Requests the last batch drew: a quiet worker runs a lone request
  // without waiting for company.
  size_t last_batch_parts_ ABSL_GUARDED_BY(mu_) = 0;
  bool drawing_ ABSL_GUARDED_BY(mu_) = false;  // the engine runs a batch
  std::deque<Report> reports_ ABSL_GUARDED_BY(mu_);
  bool reporting_ ABSL_GUARDED_BY(mu_) = false;  // the reporter is sending
  // Images and task ends: to encode (outgoing_), then by sequence number
  // to send (encoded_).
  std::deque<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Outgoing> encoded_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;  // given to the next item
  bool engine_done_ ABSL_GUARDED_BY(mu_) = false;
  int max_batch_ = 8;
  // Mean latents for truncation, by source id (engine thread only).
  std::map<std::string, torch::Tensor> truncation_latents_;
  // Poll calls in flight, cancelled by Shutdown.
  std::vector<grpc::ClientContext*> polls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_WORKER_H_
