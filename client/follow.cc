#include "client/follow.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/exit_codes.h"
#include "client/format.h"
#include "client/stage_pace.h"
#include "common/grpc_status.h"
#include "common/signals.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::client {
namespace {

// Ctrl-C while following cancels the watch (the job goes on); at any other
// time it ends the process.
absl::Mutex g_mu;
grpc::ClientContext* g_watch ABSL_GUARDED_BY(g_mu) = nullptr;
std::atomic<bool> g_interrupted{false};

void InstallInterruptHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    WatchTerminationSignals([](int, int count) {
      g_interrupted = true;
      absl::MutexLock lock(&g_mu);
      if (g_watch != nullptr && count == 1) {
        g_watch->TryCancel();
      } else {
        std::_Exit(kExitInterrupted);
      }
    });
  });
}

// Draws the events of one job.
class View {
 public:
  View(const FollowOptions& o, std::string job) : o_(o), job_(std::move(job)) {}

  void Event(const v1::JobEvent& e) {
    if (o_.json) {
      std::fprintf(o_.out, "%s\n", JsonLine(e).c_str());
      std::fflush(o_.out);
      return;
    }
    if (e.has_job()) State(e.job());
    if (e.has_progress()) Progress(e.progress(), e.has_time() ? FromProtoTime(e.time()) : absl::Now());
    if (e.has_queue()) Queue(e.queue());
    if (!e.log().empty()) Line(absl::StrCat("note: ", e.log()));
  }

  void Note(const std::string& text) { Line(text); }

  // Ends a live line, so that what follows starts on its own.
  void Close() {
    if (live_ == Live::kBar) std::fputs("\n", o_.out);
    if (live_ == Live::kTransient) std::fputs("\r\033[K", o_.out);
    live_ = Live::kNone;
    std::fflush(o_.out);
  }

 private:
  void State(const v1::Job& job) {
    stages_ = job.spec().method() == v1::METHOD_NADA ? 1 : 2;
    if (job.state() == state_) return;
    state_ = job.state();
    // Out of RUNNING and CANCELLING no stage goes on (a job queued again
    // starts its stages over).
    if (job.state() != v1::JOB_STATE_RUNNING && job.state() != v1::JOB_STATE_CANCELLING) {
      EndStage(/*finished=*/false);
    }
    std::string text = absl::StrCat(job_, ": ", StateName(job.state()));
    if (job.state() == v1::JOB_STATE_QUEUED && job.queue_position() > 0) {
      absl::StrAppend(&text, " (position ", job.queue_position(), ")");
    }
    if (job.state() == v1::JOB_STATE_RUNNING) {
      absl::StrAppend(&text, " on ", job.worker(), ", attempt ", job.attempt());
    }
    if (job.state() == v1::JOB_STATE_QUEUED && job.attempt() > 0 && job.has_error()) {
      absl::StrAppend(&text, " again after ", job.error().reason());
    }
    Line(text);
  }

  void Progress(const v1::JobProgress& p, absl::Time time) {
    if (p.stage() != v1::JOB_STAGE_TRAINING_MAPPER && p.stage() != v1::JOB_STAGE_FINE_TUNING_GENERATOR) {
      if (p.stage() == v1::JOB_STAGE_EXPORTING) {
        EndStage(/*finished=*/true);
        Line("exporting: samples, quality report, uploads");
      }
      return;
    }
    const bool new_stage = p.stage() != stage_;
    if (new_stage) EndStage(/*finished=*/true);  // a later stage began: the last one is done
    stage_ = p.stage();
    pace_.Observe(p.step(), p.total(), time);
    last_ = p;
    ended_ = pace_.done();
    if (o_.terminal) {
      if (live_ != Live::kBar) Close();
      DrawBar();
      return;
    }
    const absl::Time now = absl::Now();  // a replayed past comes at once: one line
    if (new_stage || pace_.done() || now - last_line_ >= absl::Seconds(1)) {
      last_line_ = now;
      Line(absl::StrCat("  ", ProgressLine(p, stages_, 0, Timing())));
    }
  }

  // What ends the stage's line: its time once done, else its ETA (the
  // worker's in the last stage, where it is the stage's own; the pace seen
  // in an earlier one, where the worker's covers the later stages too).
  std::string Timing() const {
    if (pace_.done()) {
      const std::optional<absl::Duration> elapsed = pace_.Elapsed();
      return elapsed ? absl::StrCat("done in ", HumanDuration(*elapsed)) : "done";
    }
    if (StageNumber(last_, stages_) == stages_ && last_.has_eta()) {
      return absl::StrCat("ETA ", HumanDuration(FromProtoDuration(last_.eta())));
    }
    const std::optional<absl::Duration> eta = pace_.Eta();
    return eta ? absl::StrCat("ETA ", HumanDuration(*eta)) : "";
  }

  void DrawBar() {
    std::fprintf(o_.out, "\r\033[K  %s", ProgressLine(last_, stages_, 24, Timing()).c_str());
    std::fflush(o_.out);
    live_ = Live::kBar;
  }

  // The stage shown last has ended: `finished` (a later stage began, or the
  // job exports) or stopped (the job ended or went back to the queue). Its
  // line ends with its time, never an ETA; the next progress starts a new
  // stage.
  void EndStage(bool finished) {
    if (stage_ == v1::JOB_STAGE_UNSPECIFIED) return;
    if (!ended_) {
      v1::JobProgress p = last_;
      const std::optional<absl::Duration> elapsed = pace_.Elapsed();
      std::string timing;
      if (finished) {
        // Its last steps went unseen (a resumed stream): the stage's whole
        // time at the pace seen; the loss shown would be an older step's.
        const std::optional<absl::Duration> eta = pace_.Eta();
        p.set_step(p.total());
        p.clear_losses();
        timing = elapsed && eta ? absl::StrCat("done in ", HumanDuration(*elapsed + *eta)) : "done";
      } else {
        timing = elapsed ? absl::StrCat("stopped after ", HumanDuration(*elapsed)) : "stopped";
      }
      if (o_.terminal) {
        if (live_ != Live::kBar) Close();
        std::fprintf(o_.out, "\r\033[K  %s", ProgressLine(p, stages_, 24, timing).c_str());
        live_ = Live::kBar;
      } else {
        Line(absl::StrCat("  ", ProgressLine(p, stages_, 0, timing)));
      }
    }
    Close();
    stage_ = v1::JOB_STAGE_UNSPECIFIED;
    pace_ = StagePace();
    ended_ = false;
  }

  void Queue(const v1::QueueUpdate& q) {
    std::string text = absl::StrCat("  queued: position ", q.position());
    if (q.has_eta()) absl::StrAppend(&text, ", ETA ", HumanDuration(FromProtoDuration(q.eta())));
    if (o_.terminal) {
      std::fprintf(o_.out, "\r\033[K%s", text.c_str());
      std::fflush(o_.out);
      live_ = Live::kTransient;
    } else {
      Line(text);
    }
  }

  // A line of its own. A live bar of a stage still running stays below it
  // (redrawn), a finished stage's bar stays above it, a queue line is
  // replaced.
  void Line(const std::string& text) {
    if (live_ == Live::kBar && stage_ != v1::JOB_STAGE_UNSPECIFIED && !ended_) {
      std::fprintf(o_.out, "\r\033[K%s\n", text.c_str());
      DrawBar();
      return;
    }
    Close();
    std::fprintf(o_.out, "%s\n", text.c_str());
    std::fflush(o_.out);
  }

  const FollowOptions o_;
  const std::string job_;
  int stages_ = 2;
  v1::JobState state_ = v1::JOB_STATE_UNSPECIFIED;
  // The stage shown (UNSPECIFIED: none, or it has ended), its last progress
  // and pace, and whether its line shows its end already.
  v1::JobStage stage_ = v1::JOB_STAGE_UNSPECIFIED;
  v1::JobProgress last_;
  StagePace pace_;
  bool ended_ = false;
  // What the cursor's line shows while it is redrawn in place.
  enum class Live { kNone, kBar, kTransient };
  Live live_ = Live::kNone;
  absl::Time last_line_ = absl::InfinitePast();
};

}  // namespace

int ExitCodeOfJob(const v1::Job& job) {
  switch (job.state()) {
    case v1::JOB_STATE_SUCCEEDED: return kExitOk;
    case v1::JOB_STATE_FAILED: return kExitJobFailed;
    case v1::JOB_STATE_CANCELLED: return kExitJobCancelled;
    default: return kExitError;
  }
}

int Follow(Connection& connection, const std::string& job, const FollowOptions& options) {
  InstallInterruptHandler();
  View view(options, job);
  int64_t after = options.after_seq;
  std::optional<v1::Job> last_job;
  bool reconnecting = false;
  while (true) {
    v1::WatchJobRequest request;
    request.set_name(job);
    request.set_after_seq(after);
    // Long, but a deadline all the same: watching ends within a week.
    std::unique_ptr<grpc::ClientContext> context = connection.Context(absl::Hours(24 * 7));
    {
      absl::MutexLock lock(&g_mu);
      g_watch = context.get();
    }
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader =
        connection.api().WatchJob(context.get(), request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      if (reconnecting) {
        view.Note("reconnected");
        reconnecting = false;
      }
      if (!event.has_queue()) after = std::max(after, event.seq());
      if (event.has_job()) last_job = event.job();
      view.Event(event);
    }
    const absl::Status status = FromGrpcStatus(reader->Finish());
    {
      absl::MutexLock lock(&g_mu);
      g_watch = nullptr;
    }
    if (g_interrupted) {
      view.Close();
      std::fprintf(options.err,
                   "Detached from %s; it goes on. Follow it again: restyle watch %s\n",
                   job.c_str(), job.c_str());
      return kExitInterrupted;
    }
    if (status.ok()) break;  // the job ended
    const bool resumable = IsUnreachable(status) || ErrorReason(status) == "WATCHER_TOO_SLOW" ||
                           ErrorReason(status) == "DRAINING";
    if (!resumable) {
      view.Close();
      std::fprintf(options.err, "restyle: %s\n", connection.Explain(status).c_str());
      return ExitCodeOfFailure(status);
    }
    if (!reconnecting) view.Note(absl::StrCat("lost the stream (", connection.Explain(status),
                                              "); resuming after event ", after));
    reconnecting = true;
    absl::SleepFor(absl::Seconds(1));
  }
  view.Close();
  if (!last_job || last_job->event_seq() < after) {
    // The end came without the job (resumed right at it): read it.
    v1::GetJobRequest get;
    get.set_name(job);
    v1::Job j;
    if (connection.Call([&](grpc::ClientContext* c) { return connection.api().GetJob(c, get, &j); }).ok()) {
      last_job = j;
    }
  }
  if (!last_job) return kExitError;
  if (!options.json) std::fprintf(options.out, "%s\n", Outcome(*last_job).c_str());
  return ExitCodeOfJob(*last_job);
}

}  // namespace restyle::client
