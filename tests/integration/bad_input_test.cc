// Bad input at every RPC of the public API, table-driven: empty, huge,
// negative, NaN and infinite values, invalid UTF-8, unknown enum values,
// unknown ids, and path-like names (`../x`, `jobs/../../etc`). Each gets
// the right status code, an ErrorDetail reason, and a message that names
// the field; nothing malformed is accepted, and the front keeps serving.
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include <grpcpp/generic/generic_stub.h>

#include <fstream>

#include "common/sha256.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "restyle/worker/v1/worker_service.grpc.pb.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

// A streaming call's status, reading the stream to its end.
template <typename Message>
grpc::Status Finish(std::unique_ptr<grpc::ClientReader<Message>> reader) {
  Message message;
  while (reader->Read(&message)) {
  }
  return reader->Finish();
}

// Names that are not names: each must be INVALID_ARGUMENT for the field.
const std::vector<std::string>& MalformedNames() {
  static const auto* names = new std::vector<std::string>{
      "",
      "../x",
      "jobs/../../etc",
      "jobs/x/../../etc/passwd",
      "/etc/passwd",
      "jobs/",
      "jobs/ABC",
      "jobs/a b",
      std::string("jobs/x\0y", 8),
      "jobs/" + std::string(5000, 'a'),
      "generators/x/y",
      "workers/x",
  };
  return *names;
}

struct Case {
  std::string what;
  std::function<grpc::Status(v1::RestyleService::Stub&)> call;
  grpc::StatusCode code;
  std::string field;  // the ErrorDetail's field (INVALID_ARGUMENT), "" otherwise
  std::string reason;
};

TEST(BadInputTest, EveryRpcRefusesWhatCannotRunWithTheRightCodeAndAFieldNamed) {
  const std::string root = FreshDir("bad-input");
  Front front(root + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  std::vector<Case> cases;
  using Stub = v1::RestyleService::Stub;
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

  for (const std::string& name : MalformedNames()) {
    const std::string shown = absl::StrCat("\"", absl::CHexEscape(name.substr(0, 40)), "\"");
    cases.push_back({"GetJob " + shown, [name](Stub& s) { v1::GetJobRequest r; r.set_name(name); v1::Job j; return s.GetJob(Ctx().get(), r, &j); }, kInvalid, "name", "INVALID_FIELD"});
    cases.push_back({"CancelJob " + shown, [name](Stub& s) { v1::CancelJobRequest r; r.set_name(name); v1::Job j; return s.CancelJob(Ctx().get(), r, &j); }, kInvalid, "name", "INVALID_FIELD"});
    cases.push_back({"WaitJob " + shown, [name](Stub& s) { v1::WaitJobRequest r; r.set_name(name); v1::Job j; return s.WaitJob(Ctx().get(), r, &j); }, kInvalid, "name", "INVALID_FIELD"});
    cases.push_back({"WatchJob " + shown, [name](Stub& s) { v1::WatchJobRequest r; r.set_name(name); auto c = Ctx(); return Finish(s.WatchJob(c.get(), r)); }, kInvalid, "name", "INVALID_FIELD"});
    cases.push_back({"DownloadArtifact " + shown, [name](Stub& s) { v1::DownloadArtifactRequest r; r.set_name(name); auto c = Ctx(); return Finish(s.DownloadArtifact(c.get(), r)); }, kInvalid, "name", "INVALID_FIELD"});
    if (name.rfind("jobs/", 0) != 0 || name.size() > 40 || name.find("..") != std::string::npos) {
      cases.push_back({"GetGenerator " + shown, [name](Stub& s) { v1::GetGeneratorRequest r; r.set_name(name); v1::Generator g; return s.GetGenerator(Ctx().get(), r, &g); }, kInvalid, "name", "INVALID_FIELD"});
      cases.push_back({"DeleteGenerator " + shown, [name](Stub& s) { v1::DeleteGeneratorRequest r; r.set_name(name); v1::DeleteGeneratorResponse d; return s.DeleteGenerator(Ctx().get(), r, &d); }, kInvalid, "name", "INVALID_FIELD"});
      cases.push_back({"Generate " + shown, [name](Stub& s) { v1::GenerateRequest r; r.set_generator(name); r.set_count(1); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "generator", "INVALID_FIELD"});
      cases.push_back({"Adapt source " + shown, [name](Stub& s) { v1::AdaptRequest r = SmallJob(2); r.mutable_spec()->set_source_generator(name); v1::Job j; return s.Adapt(Ctx().get(), r, &j); }, kInvalid, "spec.source_generator", "INVALID_FIELD"});
    }
  }
  // Artifact names that climb out of their job.
  for (const std::string& file : {"../x", "../../restyle.db", "a/../../b", "/etc/passwd", ""}) {
    const std::string name = absl::StrCat("jobs/abc/artifacts/", file);
    cases.push_back({"DownloadArtifact " + name, [name](Stub& s) { v1::DownloadArtifactRequest r; r.set_name(name); auto c = Ctx(); return Finish(s.DownloadArtifact(c.get(), r)); }, kInvalid, "name", "INVALID_FIELD"});
  }
  // Well-formed names of nothing.
  cases.push_back({"GetJob unknown", [](Stub& s) { v1::GetJobRequest r; r.set_name("jobs/zzzzzzzzzzzz"); v1::Job j; return s.GetJob(Ctx().get(), r, &j); }, grpc::StatusCode::NOT_FOUND, "", "JOB_NOT_FOUND"});
  cases.push_back({"CancelJob unknown", [](Stub& s) { v1::CancelJobRequest r; r.set_name("jobs/zzzzzzzzzzzz"); v1::Job j; return s.CancelJob(Ctx().get(), r, &j); }, grpc::StatusCode::NOT_FOUND, "", "JOB_NOT_FOUND"});
  cases.push_back({"WatchJob unknown", [](Stub& s) { v1::WatchJobRequest r; r.set_name("jobs/zzzzzzzzzzzz"); auto c = Ctx(); return Finish(s.WatchJob(c.get(), r)); }, grpc::StatusCode::NOT_FOUND, "", "JOB_NOT_FOUND"});
  cases.push_back({"GetGenerator unknown", [](Stub& s) { v1::GetGeneratorRequest r; r.set_name("generators/nope"); v1::Generator g; return s.GetGenerator(Ctx().get(), r, &g); }, grpc::StatusCode::NOT_FOUND, "", "GENERATOR_NOT_FOUND"});
  cases.push_back({"DeleteGenerator unknown", [](Stub& s) { v1::DeleteGeneratorRequest r; r.set_name("generators/zzzzzzzzzzzz"); v1::DeleteGeneratorResponse d; return s.DeleteGenerator(Ctx().get(), r, &d); }, grpc::StatusCode::NOT_FOUND, "", "GENERATOR_NOT_FOUND"});
  cases.push_back({"Generate unknown", [](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/zzzzzzzzzzzz"); r.set_count(1); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, grpc::StatusCode::NOT_FOUND, "", "GENERATOR_NOT_FOUND"});
  cases.push_back({"DownloadArtifact unknown", [](Stub& s) { v1::DownloadArtifactRequest r; r.set_name("jobs/zzzzzzzzzzzz/artifacts/samples.png"); auto c = Ctx(); return Finish(s.DownloadArtifact(c.get(), r)); }, grpc::StatusCode::NOT_FOUND, "", ""});
  cases.push_back({"DeleteGenerator of a source", [](Stub& s) { v1::DeleteGeneratorRequest r; r.set_name("generators/demo"); v1::DeleteGeneratorResponse d; return s.DeleteGenerator(Ctx().get(), r, &d); }, grpc::StatusCode::FAILED_PRECONDITION, "", "SOURCE_GENERATOR"});

  // Numbers: NaN, infinities, negatives, out of range; text: invalid UTF-8.
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto adapt = [](std::function<void(v1::AdaptRequest&)> spoil) {
    return [spoil](Stub& s) { v1::AdaptRequest r = SmallJob(2); spoil(r); v1::Job j; return s.Adapt(Ctx().get(), r, &j); };
  };
  auto stage1 = [](v1::AdaptRequest& r) { return r.mutable_spec()->mutable_settings()->mutable_stage1(); };
  auto stage2 = [](v1::AdaptRequest& r) { return r.mutable_spec()->mutable_settings()->mutable_stage2(); };
  for (double bad : {nan, inf, -inf, -1.0, 0.0}) {
    const std::string v = absl::StrCat(bad);
    cases.push_back({"stage1.lr " + v, adapt([=](v1::AdaptRequest& r) { stage1(r)->set_lr(bad); }), kInvalid, "spec.settings.stage1.lr", "INVALID_FIELD"});
    cases.push_back({"stage2.lr " + v, adapt([=](v1::AdaptRequest& r) { stage2(r)->set_lr(bad); }), kInvalid, "spec.settings.stage2.lr", "INVALID_FIELD"});
  }
  for (double bad : {nan, inf, -0.5, 1.5}) {
    cases.push_back({absl::StrCat("stage2.ema_decay ", bad), adapt([=](v1::AdaptRequest& r) { stage2(r)->set_ema_decay(bad); }), kInvalid, "spec.settings.stage2.ema_decay", "INVALID_FIELD"});
    cases.push_back({absl::StrCat("Generate truncation ", bad), [=](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/demo"); r.set_count(1); r.set_truncation(bad); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "truncation", "INVALID_FIELD"});
  }
  for (int bad : {-1, 0, 1 << 30}) {
    cases.push_back({absl::StrCat("stage1.iterations ", bad), adapt([=](v1::AdaptRequest& r) { stage1(r)->set_iterations(bad); }), kInvalid, "spec.settings.stage1.iterations", "INVALID_FIELD"});
    cases.push_back({absl::StrCat("stage2.iterations ", bad), adapt([=](v1::AdaptRequest& r) { stage2(r)->set_iterations(bad); }), kInvalid, "spec.settings.stage2.iterations", "INVALID_FIELD"});
  }
  cases.push_back({"target_text 1 MB", adapt([](v1::AdaptRequest& r) { r.mutable_spec()->set_target_text(std::string(1 << 20, 'a')); }), kInvalid, "spec.target_text", "INVALID_FIELD"});
  cases.push_back({"method unknown", adapt([](v1::AdaptRequest& r) { r.mutable_spec()->set_method(static_cast<v1::Method>(99)); }), kInvalid, "spec.method", "INVALID_FIELD"});
  cases.push_back({"request_id path-like", adapt([](v1::AdaptRequest& r) { r.set_request_id("../../x"); }), kInvalid, "request_id", "INVALID_FIELD"});
  cases.push_back({"Generate max_resolution -1", [](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/demo"); r.set_count(1); r.set_max_resolution(-1); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "max_resolution", "INVALID_FIELD"});
  cases.push_back({"Generate count -1", [](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/demo"); r.set_count(-1); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "count", "INVALID_FIELD"});
  cases.push_back({"Generate 2000 seeds", [](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/demo"); for (int i = 0; i < 2000; ++i) r.add_seeds(i); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "seeds", "INVALID_FIELD"});
  cases.push_back({"Generate first_seed overflow", [](Stub& s) { v1::GenerateRequest r; r.set_generator("generators/demo"); r.set_first_seed(~uint64_t{0}); r.set_count(2); auto c = Ctx(); return Finish(s.Generate(c.get(), r)); }, kInvalid, "first_seed", "INVALID_FIELD"});
  cases.push_back({"ListJobs page_size -1", [](Stub& s) { v1::ListJobsRequest r; r.set_page_size(-1); v1::ListJobsResponse l; return s.ListJobs(Ctx().get(), r, &l); }, kInvalid, "page_size", "INVALID_FIELD"});
  cases.push_back({"ListJobs page_token forged", [](Stub& s) { v1::ListJobsRequest r; r.set_page_token("../../etc"); v1::ListJobsResponse l; return s.ListJobs(Ctx().get(), r, &l); }, kInvalid, "page_token", "INVALID_PAGE_TOKEN"});
  cases.push_back({"ListJobs state unknown", [](Stub& s) { v1::ListJobsRequest r; r.add_states(static_cast<v1::JobState>(42)); v1::ListJobsResponse l; return s.ListJobs(Ctx().get(), r, &l); }, kInvalid, "states", "INVALID_FIELD"});
  cases.push_back({"ListJobs source path-like", [](Stub& s) { v1::ListJobsRequest r; r.set_source_generator("generators/../x"); v1::ListJobsResponse l; return s.ListJobs(Ctx().get(), r, &l); }, kInvalid, "source_generator", "INVALID_FIELD"});
  cases.push_back({"ListGenerators kind unknown", [](Stub& s) { v1::ListGeneratorsRequest r; r.set_kind(static_cast<v1::GeneratorKind>(42)); v1::ListGeneratorsResponse l; return s.ListGenerators(Ctx().get(), r, &l); }, kInvalid, "kind", "INVALID_FIELD"});
  cases.push_back({"WaitJob timeout negative", [](Stub& s) { v1::WaitJobRequest r; r.set_name("jobs/zzzzzzzzzzzz"); r.mutable_timeout()->set_seconds(-5); v1::Job j; return s.WaitJob(Ctx().get(), r, &j); }, kInvalid, "timeout", "INVALID_FIELD"});
  cases.push_back({"WatchJob after_seq negative", [](Stub& s) { v1::WatchJobRequest r; r.set_name("jobs/zzzzzzzzzzzz"); r.set_after_seq(-1); auto c = Ctx(); return Finish(s.WatchJob(c.get(), r)); }, kInvalid, "after_seq", "INVALID_FIELD"});

  // Invalid UTF-8 in a string field never reaches Restyle: protobuf will not
  // parse it, and gRPC's callback server then answers UNIMPLEMENTED with no
  // message (gRPC's behaviour, not ours; most clients refuse to send it).
  for (const std::string& text : {std::string("ukiyo\xff\xfe"), std::string("\xc3\x28")}) {
    v1::AdaptRequest r = SmallJob(2);
    r.mutable_spec()->set_target_text(text);
    v1::Job j;
    EXPECT_FALSE(front.api().Adapt(Ctx().get(), r, &j).ok());
    v1::GetJobRequest g;
    g.set_name("jobs/" + text);
    EXPECT_FALSE(front.api().GetJob(Ctx().get(), g, &j).ok());
  }

  int checked = 0;
  for (const Case& c : cases) {
    const grpc::Status s = c.call(front.api());
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_code() << " " << s.error_message();
    if (!c.reason.empty()) EXPECT_EQ(ReasonOf(s), c.reason) << c.what << ": " << s.error_message();
    if (!c.field.empty()) {
      EXPECT_EQ(MetadataOf(s)["field"], c.field) << c.what << ": " << s.error_message();
      EXPECT_NE(s.error_message().find(c.field), std::string::npos) << c.what << ": " << s.error_message();
    }
    EXPECT_FALSE(s.error_message().empty()) << c.what;
    EXPECT_LT(s.error_message().size(), 600u) << c.what << ": the message repeats a huge input";
    ++checked;
  }
  std::printf("%d bad requests, each refused with its code and field\n", checked);
  // Nothing was created, and the front still serves.
  v1::ListJobsResponse all;
  ASSERT_TRUE(front.api().ListJobs(Ctx().get(), {}, &all).ok());
  EXPECT_EQ(all.jobs_size(), 0);
  EXPECT_TRUE(Adapt(front, SmallJob(2)).ok());
  worker->Stop();
}

// The front's own bound on followers, whatever jobs they follow.
TEST(BadInputTest, TooManyWatchersOfAllJobsTogetherAreRefused) {
  const std::string root = FreshDir("all-watchers");
  Front front(root + "/front", {"--max-watchers", "2"});
  // Queued jobs (no worker): their followers poll the store.
  std::vector<std::string> jobs;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(4, absl::StrCat("style ", i)));
    if (!job.ok()) {
      // No worker has announced the source yet: register one, then stop it.
      auto worker = StartWorker(front, "announcer");
      ASSERT_TRUE(WaitServing(front));
      worker->Stop();
      job = Adapt(front, SmallJob(4, absl::StrCat("style ", i)));
    }
    ASSERT_TRUE(job.ok()) << job.status();
    jobs.push_back(job->name());
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::JobEvent>>> watches;
  for (int i = 0; i < 2; ++i) {
    v1::WatchJobRequest watch;
    watch.set_name(jobs[i]);
    contexts.push_back(Ctx(absl::Seconds(60)));
    watches.push_back(front.api().WatchJob(contexts.back().get(), watch));
    v1::JobEvent first;
    ASSERT_TRUE(watches.back()->Read(&first));
  }
  v1::WatchJobRequest third;
  third.set_name(jobs[2]);
  auto context = Ctx();
  const grpc::Status refused = Finish(front.api().WatchJob(context.get(), third));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(ReasonOf(refused), "TOO_MANY_WATCHERS");
  EXPECT_NE(refused.error_message().find("--max-watchers"), std::string::npos);
  for (auto& c : contexts) c->TryCancel();
  for (auto& w : watches) w->Finish();
}

TEST(BadInputTest, TooManyWatchersOfOneJobAreRefusedAndTheOthersGoOn) {
  const std::string root = FreshDir("watchers");
  Front front(root + "/front", {"--max-watchers-per-job", "3"});
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest request = SmallJob(4);
  request.mutable_spec()->mutable_settings()->mutable_stage2()->set_iterations(100000);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  ASSERT_TRUE(job.ok());
  // Three watches stay open; the fourth, and a WaitJob, are refused.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::JobEvent>>> watches;
  v1::WatchJobRequest watch;
  watch.set_name(job->name());
  for (int i = 0; i < 3; ++i) {
    contexts.push_back(Ctx(absl::Seconds(60)));
    watches.push_back(front.api().WatchJob(contexts.back().get(), watch));
    v1::JobEvent first;
    ASSERT_TRUE(watches.back()->Read(&first));
  }
  auto context = Ctx();
  const grpc::Status fourth = Finish(front.api().WatchJob(context.get(), watch));
  EXPECT_EQ(fourth.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << fourth.error_message();
  EXPECT_EQ(ReasonOf(fourth), "TOO_MANY_WATCHERS");
  EXPECT_NE(fourth.error_message().find("--max-watchers-per-job"), std::string::npos);
  v1::WaitJobRequest wait;
  wait.set_name(job->name());
  v1::Job ignored;
  EXPECT_EQ(front.api().WaitJob(Ctx().get(), wait, &ignored).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The open watches still get events; one ends, and a new watch fits.
  v1::JobEvent next;
  EXPECT_TRUE(watches[0]->Read(&next));
  contexts[2]->TryCancel();
  watches[2]->Finish();
  bool admitted = false;
  for (int i = 0; i < 100 && !admitted; ++i) {
    auto c = Ctx(absl::Seconds(2));
    auto again = front.api().WatchJob(c.get(), watch);
    v1::JobEvent e;
    admitted = again->Read(&e);
    c->TryCancel();
    again->Finish();
    if (!admitted) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(admitted);
  for (size_t i = 0; i < 2; ++i) {
    contexts[i]->TryCancel();
    watches[i]->Finish();
  }
  v1::CancelJobRequest cancel;
  cancel.set_name(job->name());
  ASSERT_TRUE(front.api().CancelJob(Ctx().get(), cancel, &ignored).ok());
  worker->Stop();
}

namespace wv1 = restyle::worker::v1;

// A worker the test plays itself, over the worker protocol.
class FakeWorker {
 public:
  FakeWorker(Front& front, const std::string& id, int max_generation_tasks)
      : name_("workers/" + id),
        stub_(wv1::WorkerService::NewStub(
            grpc::CreateChannel(front.worker_address(), grpc::InsecureChannelCredentials()))) {
    wv1::RegisterWorkerRequest r;
    r.set_worker_id(id);
    r.set_instance_key(id + "-key");
    wv1::SourceModel* m = r.add_sources();
    m->set_id("demo");
    m->set_resolution(32);
    m->set_source_text("photo");
    m->set_digest(std::string(64, 'e'));
    m->set_latent_rows(8);
    r.add_clip_models("fake-clip");
    r.set_max_generation_tasks(max_generation_tasks);
    r.set_max_generation_batch(8);
    wv1::RegisterWorkerResponse response;
    status_ = stub_->RegisterWorker(Ctx().get(), r, &response);
    session_ = response.session();
  }
  const grpc::Status& registration() const { return status_; }
  const std::string& name() const { return name_; }
  wv1::WorkerService::Stub& stub() { return *stub_; }
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(10)) {
    auto c = Ctx(timeout);
    c->AddMetadata("restyle-worker-session", session_);
    return c;
  }
  wv1::PollWorkResponse Poll(wv1::Lane lane) {
    wv1::PollWorkRequest poll;
    poll.set_worker(name_);
    poll.set_lane(lane);
    poll.set_max_tasks(4);
    poll.mutable_wait()->set_seconds(5);
    wv1::PollWorkResponse response;
    EXPECT_TRUE(stub_->PollWork(Context(absl::Seconds(15)).get(), poll, &response).ok());
    return response;
  }
  // Uploads `bytes` as `file` of kind `kind` for the leased task.
  grpc::Status Upload(const wv1::AdaptTask& task, const std::string& file, const std::string& kind,
                      const std::string& bytes) {
    auto c = Context();
    wv1::UploadArtifactResponse uploaded;
    auto writer = stub_->UploadArtifact(c.get(), &uploaded);
    wv1::UploadArtifactRequest header;
    wv1::UploadArtifactRequest::Header* h = header.mutable_header();
    h->set_worker(name_);
    h->set_job(task.job());
    h->set_attempt(task.attempt());
    h->set_file(file);
    h->set_kind(kind);
    h->set_size_bytes(static_cast<int64_t>(bytes.size()));
    h->set_sha256(Sha256Hex(bytes));
    writer->Write(header);
    wv1::UploadArtifactRequest data;
    data.set_data(bytes);
    writer->Write(data);
    writer->WritesDone();
    return writer->Finish();
  }

 private:
  std::string name_;
  std::unique_ptr<wv1::WorkerService::Stub> stub_;
  grpc::Status status_;
  std::string session_;
};

// What a worker sends is checked as a client's request is: an upload's kind
// against its name and its bytes, the events of one report, the images of a
// task, and a generation queue it claims to have.
TEST(BadInputTest, AWorkersInputIsCheckedAsAClientsIs) {
  const std::string root = FreshDir("bad-worker-input");
  Front front(root + "/front");
  FakeWorker fake(front, "fake", std::numeric_limits<int>::max());
  ASSERT_TRUE(fake.registration().ok()) << fake.registration().error_message();
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(2));
  ASSERT_TRUE(job.ok()) << job.status();
  const wv1::PollWorkResponse leased = fake.Poll(wv1::LANE_ADAPTATION);
  ASSERT_TRUE(leased.has_adapt()) << leased.DebugString();
  const wv1::AdaptTask& task = leased.adapt();

  // A kind that is none of a worker's, or not this file's.
  grpc::Status s = fake.Upload(task, "generator_delta.safetensors", "bogus", "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "ARTIFACT_KIND_MISMATCH") << s.error_message();
  s = fake.Upload(task, "samples.png", "generator_delta", "x");
  EXPECT_EQ(ReasonOf(s), "ARTIFACT_KIND_MISMATCH") << s.error_message();
  // A "generator" that is not safetensors, and a result that is not JSON:
  // refused, nothing kept, so the job cannot succeed on them.
  s = fake.Upload(task, "generator_delta.safetensors", "generator_delta", "not a generator at all");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "ARTIFACT_KIND_MISMATCH") << s.error_message();
  s = fake.Upload(task, "result.json", "result", "<html>");
  EXPECT_EQ(ReasonOf(s), "ARTIFACT_KIND_MISMATCH") << s.error_message();
  EXPECT_TRUE(fake.Upload(task, "result.json", "result", "{\"ok\": true}").ok());
  wv1::CompleteJobRequest complete;
  complete.set_worker(fake.name());
  complete.set_job(task.job());
  complete.set_attempt(task.attempt());
  complete.mutable_result();
  wv1::CompleteJobResponse completed;
  s = fake.stub().CompleteJob(fake.Context().get(), complete, &completed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "ARTIFACT_MISSING") << s.error_message();

  // One report of more events than a report may hold.
  wv1::ReportProgressRequest report;
  report.set_worker(fake.name());
  report.set_job(task.job());
  report.set_attempt(task.attempt());
  for (int i = 0; i < 1001; ++i) report.add_events()->set_log("step");
  wv1::ReportProgressResponse reported;
  s = fake.stub().ReportProgress(fake.Context().get(), report, &reported);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  absl::StatusOr<v1::Job> now = GetJob(front, job->name());
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->state(), v1::JOB_STATE_RUNNING) << now->DebugString();

  // A Generate call: the worker (whose queue of INT_MAX was taken as the
  // front's bound) sends one image more than the seeds asked for. The
  // client gets the images it asked for and an error, never the extra one.
  v1::GenerateRequest generate;
  generate.set_generator("generators/demo");
  generate.add_seeds(1);
  generate.add_seeds(2);
  auto client_context = Ctx(absl::Seconds(30));
  auto reader = front.api().Generate(client_context.get(), generate);
  const wv1::PollWorkResponse polled = fake.Poll(wv1::LANE_GENERATION);
  ASSERT_EQ(polled.generate_size(), 1) << polled.DebugString();
  {
    auto c = fake.Context();
    wv1::SendImagesResponse sent;
    auto writer = fake.stub().SendImages(c.get(), &sent);
    wv1::SendImagesRequest header;
    header.mutable_header()->set_worker(fake.name());
    header.mutable_header()->set_task_id(polled.generate(0).task_id());
    writer->Write(header);
    for (int i = 0; i < 3; ++i) {
      wv1::SendImagesRequest image;
      image.mutable_image()->set_index(i);
      image.mutable_image()->set_seed(static_cast<uint64_t>(i + 1));
      image.mutable_image()->set_png("\x89PNG\r\n\x1a\n");
      if (!writer->Write(image)) break;
    }
    writer->WritesDone();
    s = writer->Finish();
  }
  int images = 0;
  v1::GenerateResponse image;
  while (reader->Read(&image)) ++images;
  const grpc::Status generated = reader->Finish();
  EXPECT_EQ(images, 2) << "the client got an image it never asked for";
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(generated.error_code(), grpc::StatusCode::INTERNAL) << generated.error_message();
  EXPECT_EQ(ReasonOf(generated), "WORKER_PROTOCOL") << generated.error_message();
  // The front still serves.
  v1::ListJobsResponse listed;
  EXPECT_TRUE(front.api().ListJobs(Ctx().get(), {}, &listed).ok());
}

// Under AddressSanitizer (the sanitizer tree builds this test and the front
// alike) freed memory waits in ASan's quarantine, 256 MiB by default,
// before it is reused, so the front's RSS grows by that much too.
#if defined(__SANITIZE_ADDRESS__)
#define RESTYLE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RESTYLE_ASAN 1
#endif
#endif
#ifdef RESTYLE_ASAN
constexpr int64_t kQuarantineMiB = 256;
#else
constexpr int64_t kQuarantineMiB = 0;
#endif

// restyled's resident memory, in MiB (/proc).
int64_t ResidentMiB(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  }
  return -1;
}

// The unauthenticated health port cannot be made to hold memory: watches of
// made-up service names keep nothing (a 4 MB name is refused, a short one
// is told SERVICE_UNKNOWN and costs no entry), and made-up method names do
// not grow the metrics' label sets.
TEST(BadInputTest, MadeUpNamesOnTheOpenPortsHoldNothing) {
  const std::string root = FreshDir("bad-names");
  Front front(root + "/front");
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", front.ports().health), grpc::InsecureChannelCredentials()));
  const int64_t before = ResidentMiB(front.process().pid());
  ASSERT_GT(before, 0);
  // 200 watches of 4 MB names (800 MB that the old front kept), each refused.
  for (int i = 0; i < 200; ++i) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(std::string(4 << 20, static_cast<char>('a' + i % 26)));
    auto context = Ctx(absl::Seconds(30));
    auto reader = health->Watch(context.get(), request);
    grpc::health::v1::HealthCheckResponse response;
    while (reader->Read(&response)) {
    }
    const grpc::Status s = reader->Finish();
    ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i << ": " << s.error_message();
  }
  // 1,000 watches of short unknown names, left open: each told
  // SERVICE_UNKNOWN. (Over 20 connections: the health port takes 100 calls
  // at once on one connection.)
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> connections;
  for (int c = 0; c < 20; ++c) {
    grpc::ChannelArguments own;
    own.SetInt("restyle.test.connection", c);  // a channel, and a connection, of its own
    connections.push_back(grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", front.ports().health), grpc::InsecureChannelCredentials(), own)));
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<grpc::health::v1::HealthCheckResponse>>> open;
  for (int i = 0; i < 1000; ++i) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(absl::StrCat("made.up.Service", i, std::string(200, 'x')));
    contexts.push_back(Ctx(absl::Seconds(120)));
    open.push_back(connections[i % 20]->Watch(contexts.back().get(), request));
    grpc::health::v1::HealthCheckResponse first;
    ASSERT_TRUE(open.back()->Read(&first)) << i;
    ASSERT_EQ(first.status(), grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN);
  }
  const int64_t after = ResidentMiB(front.process().pid());
  std::printf("restyled: %lld MiB before, %lld MiB after 200 x 4 MB and 1,000 open watches\n",
              static_cast<long long>(before), static_cast<long long>(after));
  // (The front that kept every name grew by the 800 MB sent.)
  EXPECT_LT(after - before, 100 + kQuarantineMiB) << "the health port held what its callers sent";
  for (auto& c : contexts) c->TryCancel();
  for (auto& r : open) r->Finish();

  // Methods nobody serves: one "unknown" series, not one per name.
  grpc::GenericStub generic(grpc::CreateChannel(front.api_address(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::ByteBuffer reply;
    grpc::Slice empty("", 0);
    grpc::ByteBuffer request(&empty, 1);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    generic.UnaryCall(&context, absl::StrCat("/made.up.Service", i, "/Method", i), {}, &request,
                      &reply, [&](grpc::Status s) {
                        std::lock_guard<std::mutex> lock(mu);
                        status = s;
                        done = true;
                        cv.notify_one();
                      });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  const std::string metrics = HttpGet(front.ports().metrics, "/metrics");
  EXPECT_EQ(metrics.find("made.up.Service"), std::string::npos) << metrics;
}

}  // namespace
}  // namespace restyle::testing
