// TLS on the api and worker ports, bearer tokens for clients and workers
// (never logged), and the plaintext health port for probes. Only a worker
// can act as a worker: a client's token is refused on the worker port, a
// worker's calls carry the session its registration was given, a live
// worker's id cannot be taken over, a source's weights and texts cannot be
// changed by a worker, and the worker port can ask for client
// certificates.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "restyle/worker/v1/worker_service.grpc.pb.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

namespace fs = std::filesystem;
namespace wv1 = restyle::worker::v1;

// A self-signed certificate for localhost and 127.0.0.1 (openssl CLI).
void MakeCertificate(const std::string& dir) {
  Process openssl("openssl",
                  {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                   dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "2", "-subj",
                   "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"},
                  dir + "/openssl.log");
  ASSERT_EQ(openssl.Wait(absl::Seconds(60)).value_or(-1), 0) << openssl.Log();
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(SecurityTest, TlsAndTokensGuardTheApiAndWorkerPortsNotTheHealthPort) {
  const std::string root = FreshDir("security");
  MakeCertificate(root);
  std::ofstream(root + "/tokens") << "# clients\nclient-secret-7f3a\n";
  std::ofstream(root + "/worker-tokens") << "# workers\nworker-secret-91c2\n";
  std::ofstream(root + "/worker-token") << "worker-secret-91c2\n";
  Front front(root + "/front", {"--tls-cert", root + "/cert.pem", "--tls-key", root + "/key.pem",
                                "--tokens-file", root + "/tokens", "--worker-tokens-file",
                                root + "/worker-tokens"});

  // A worker without a token cannot register; with one it can (over TLS).
  auto intruder = StartWorker(front, "intruder", {"--tls-ca", root + "/cert.pem"});
  EXPECT_FALSE(WaitServing(front, absl::Seconds(2)));
  // Refused when it tries to register, however long a loaded machine takes
  // to start it.
  for (const absl::Time end = absl::Now() + absl::Seconds(60);
       intruder->Log().find("UNAUTHENTICATED") == std::string::npos && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_FALSE(WaitServing(front, absl::Milliseconds(100)));
  intruder->Stop();
  EXPECT_NE(intruder->Log().find("UNAUTHENTICATED"), std::string::npos) << intruder->Log();
  auto worker = StartWorker(front, "w1",
                            {"--tls-ca", root + "/cert.pem", "--token-file", root + "/worker-token"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();  // health: plaintext, no token

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Read(root + "/cert.pem");
  auto stub = v1::RestyleService::NewStub(grpc::CreateChannel(
      absl::StrCat("localhost:", front.ports().api), grpc::SslCredentials(ssl)));
  v1::ListJobsResponse jobs;
  // No token, a wrong one, the right one.
  grpc::Status missing = stub->ListJobs(Ctx().get(), {}, &jobs);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(missing), "MISSING_TOKEN");
  auto wrong = Ctx();
  wrong->AddMetadata("authorization", "Bearer client-secret-7f3b");
  grpc::Status invalid = stub->ListJobs(wrong.get(), {}, &jobs);
  EXPECT_EQ(invalid.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(invalid), "INVALID_TOKEN");
  auto right = [] {
    auto c = Ctx(absl::Seconds(60));
    c->AddMetadata("authorization", "Bearer client-secret-7f3a");
    return c;
  };
  v1::Job job;
  ASSERT_TRUE(stub->Adapt(right().get(), SmallJob(3), &job).ok());
  v1::WaitJobRequest wait;
  wait.set_name(job.name());
  grpc::Status waited = stub->WaitJob(right().get(), wait, &job);
  ASSERT_TRUE(waited.ok()) << waited.error_message();
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);

  // The CLI, with the CA and a token file; without the token it says so.
  std::ofstream(root + "/client-token") << "client-secret-7f3a\n";
  const std::string server = absl::StrCat("localhost:", front.ports().api);
  Process cli("restyle", {CliBinary(), "--server", server, "--tls-ca", root + "/cert.pem",
                          "--token-file", root + "/client-token", "get", job.name()},
              root + "/cli.log");
  EXPECT_EQ(cli.Wait(absl::Seconds(30)).value_or(-1), 0) << cli.Log();
  EXPECT_NE(cli.Log().find("succeeded"), std::string::npos) << cli.Log();
  Process anonymous("restyle", {CliBinary(), "--server", server, "--tls-ca", root + "/cert.pem", "list"},
                    root + "/cli-anonymous.log");
  EXPECT_EQ(WEXITSTATUS(anonymous.Wait(absl::Seconds(30)).value_or(-1)), 1) << anonymous.Log();
  EXPECT_NE(anonymous.Log().find("this server needs a token"), std::string::npos) << anonymous.Log();

  // Plaintext is refused on the TLS port.
  v1::ListJobsResponse ignored;
  auto plain = v1::RestyleService::NewStub(
      grpc::CreateChannel(front.api_address(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(plain->ListJobs(Ctx(absl::Seconds(3)).get(), {}, &ignored).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  worker->Stop();
  // No token ever reaches a log.
  for (const std::string& log : {front.process().Log(), worker->Log(), intruder->Log()}) {
    EXPECT_EQ(log.find("secret"), std::string::npos) << log;
  }
}

// A context carrying `token` (and a worker session, when given).
std::unique_ptr<grpc::ClientContext> With(const std::string& token, const std::string& session = "",
                                          absl::Duration timeout = absl::Seconds(10)) {
  auto c = Ctx(timeout);
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  if (!session.empty()) c->AddMetadata("restyle-worker-session", session);
  return c;
}

// The front's /metrics, waiting up to 10 s for `needle` to appear.
std::string MetricsWith(Front& front, const std::string& needle) {
  std::string body;
  for (int i = 0; i < 100; ++i) {
    body = HttpGet(front.ports().metrics, "/metrics");
    if (body.find(needle) != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return body;
}

// Someone who holds the API's token, or another worker's, tries to act as
// the worker that runs a job: register under its id, complete its job with
// a forged generator, release it, renew its lease, and rewrite the source's
// weights and texts for everyone. Every attempt is refused with its reason
// and the job ends as its own worker makes it end, in attempt 1.
TEST(SecurityTest, OnlyTheWorkerItselfCanActAsThatWorker) {
  const std::string root = FreshDir("impersonation");
  std::ofstream(root + "/tokens") << "client-secret-c1\n";
  std::ofstream(root + "/worker-tokens") << "worker-secret-w1\nworker-secret-w2\n";
  std::ofstream(root + "/worker-token") << "worker-secret-w1\n";
  // A lease long enough that nothing here expires it by accident.
  Front front(root + "/front", {"--tokens-file", root + "/tokens", "--worker-tokens-file",
                                root + "/worker-tokens", "--lease-ttl", "6"});
  auto worker = StartWorker(front, "w1", {"--token-file", root + "/worker-token"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();

  auto api = v1::RestyleService::NewStub(
      grpc::CreateChannel(front.api_address(), grpc::InsecureChannelCredentials()));
  v1::Job job;
  ASSERT_TRUE(api->Adapt(With("client-secret-c1").get(), SmallJob(400), &job).ok());
  // What anyone with the API can read: the worker's name and the attempt.
  v1::Job running;
  for (const absl::Time until = absl::Now() + absl::Seconds(60); absl::Now() < until;) {
    v1::GetJobRequest get;
    get.set_name(job.name());
    ASSERT_TRUE(api->GetJob(With("client-secret-c1").get(), get, &running).ok());
    if (running.state() == v1::JOB_STATE_RUNNING && running.progress().step() > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING) << running.DebugString();
  ASSERT_EQ(running.worker(), "workers/w1");

  auto workers = wv1::WorkerService::NewStub(
      grpc::CreateChannel(front.worker_address(), grpc::InsecureChannelCredentials()));
  // 1. The client's token on the worker port: refused, whatever the call.
  wv1::RegisterWorkerRequest reg;
  reg.set_worker_id("intruder");
  wv1::RegisterWorkerResponse reg_response;
  grpc::Status s = workers->RegisterWorker(With("client-secret-c1").get(), reg, &reg_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "TOKEN_OF_OTHER_PORT") << s.error_message();
  wv1::CompleteJobRequest complete;
  complete.set_worker(running.worker());
  complete.set_job(job.name());
  complete.set_attempt(running.attempt());
  complete.mutable_result();
  wv1::CompleteJobResponse complete_response;
  s = workers->CompleteJob(With("client-secret-c1").get(), complete, &complete_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // A forged generator, uploaded as w1's attempt: refused before a byte is kept.
  {
    auto c = With("client-secret-c1");
    wv1::UploadArtifactResponse uploaded;
    auto writer = workers->UploadArtifact(c.get(), &uploaded);
    wv1::UploadArtifactRequest header;
    header.mutable_header()->set_worker(running.worker());
    header.mutable_header()->set_job(job.name());
    header.mutable_header()->set_attempt(running.attempt());
    header.mutable_header()->set_file("generator.safetensors");
    header.mutable_header()->set_kind("generator_delta");
    header.mutable_header()->set_size_bytes(4);
    writer->Write(header);
    wv1::UploadArtifactRequest data;
    data.set_data("fake");
    writer->Write(data);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // The API's port does not take the worker's token either.
  v1::ListJobsResponse listed;
  s = api->ListJobs(With("worker-secret-w1").get(), {}, &listed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "TOKEN_OF_OTHER_PORT");

  // 2. Another worker's token, without w1's session: every call naming w1
  // is refused, and w1's id cannot be taken.
  reg.set_worker_id("w1");
  reg.set_instance_key("not-w1s-key");
  s = workers->RegisterWorker(With("worker-secret-w2").get(), reg, &reg_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "WORKER_ID_IN_USE") << s.error_message();
  for (const std::string& session : {std::string(), std::string(64, 'a')}) {
    s = workers->CompleteJob(With("worker-secret-w2", session).get(), complete, &complete_response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_EQ(ReasonOf(s), "WORKER_SESSION_INVALID") << s.error_message();
    wv1::ReleaseJobRequest release;
    release.set_worker(running.worker());
    release.set_job(job.name());
    release.set_attempt(running.attempt());
    wv1::ReleaseJobResponse released;
    s = workers->ReleaseJob(With("worker-secret-w2", session).get(), release, &released);
    EXPECT_EQ(ReasonOf(s), "WORKER_SESSION_INVALID") << s.error_message();
    wv1::HeartbeatRequest beat;
    beat.set_worker(running.worker());
    beat.set_leaving(true);  // would drop w1 and its streams
    wv1::HeartbeatResponse beat_response;
    s = workers->Heartbeat(With("worker-secret-w2", session).get(), beat, &beat_response);
    EXPECT_EQ(ReasonOf(s), "WORKER_SESSION_INVALID") << s.error_message();
    wv1::PollWorkRequest poll;
    poll.set_worker(running.worker());
    poll.set_lane(wv1::LANE_ADAPTATION);
    wv1::PollWorkResponse polled;
    s = workers->PollWork(With("worker-secret-w2", session).get(), poll, &polled);
    EXPECT_EQ(ReasonOf(s), "WORKER_SESSION_INVALID") << s.error_message();
  }

  // 3. A worker of its own (a valid registration) offering the source
  // "demo" with other weights: refused, logged, counted; nothing changes.
  v1::Generator before;
  v1::GetGeneratorRequest get_source;
  get_source.set_name("generators/demo");
  ASSERT_TRUE(api->GetGenerator(With("client-secret-c1").get(), get_source, &before).ok());
  wv1::RegisterWorkerRequest rogue;
  rogue.set_worker_id("w2");
  rogue.set_instance_key("w2-key");
  wv1::SourceModel* m = rogue.add_sources();
  m->set_id("demo");
  m->set_resolution(before.resolution());
  m->set_digest("0000000000000000000000000000000000000000000000000000000000000000");
  m->set_source_text("photo");
  s = workers->RegisterWorker(With("worker-secret-w2").get(), rogue, &reg_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "SOURCE_CONFLICT") << s.error_message();
  m->set_digest(before.digest());
  m->set_source_text("a painting");  // the default source_text of later jobs
  s = workers->RegisterWorker(With("worker-secret-w2").get(), rogue, &reg_response);
  EXPECT_EQ(ReasonOf(s), "SOURCE_CONFLICT") << s.error_message();
  v1::Generator after;
  ASSERT_TRUE(api->GetGenerator(With("client-secret-c1").get(), get_source, &after).ok());
  EXPECT_EQ(after.digest(), before.digest());
  EXPECT_EQ(after.source_text(), before.source_text());
  EXPECT_NE(MetricsWith(front, "restyle_worker_registrations_refused_total{reason=\"SOURCE_CONFLICT\"} 2")
                .find("restyle_worker_registrations_refused_total{reason=\"SOURCE_CONFLICT\"} 2"),
            std::string::npos);
  EXPECT_NE(MetricsWith(front, "restyle_worker_registrations_refused_total{reason=\"WORKER_ID_IN_USE\"} 1")
                .find("restyle_worker_registrations_refused_total{reason=\"WORKER_ID_IN_USE\"} 1"),
            std::string::npos);
  EXPECT_NE(front.process().Log().find("SOURCE_CONFLICT"), std::string::npos);
  // The same source, as recorded: a worker of its own registers.
  m->set_source_text(before.source_text());
  s = workers->RegisterWorker(With("worker-secret-w2").get(), rogue, &reg_response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reg_response.session().size(), 64u);

  // The job was never touched: w1 finishes it, in attempt 1.
  v1::WaitJobRequest wait;
  wait.set_name(job.name());
  v1::Job done;
  s = api->WaitJob(With("client-secret-c1", "", absl::Seconds(120)).get(), wait, &done);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << worker->Log();
  EXPECT_EQ(done.attempt(), 1) << done.DebugString();
  EXPECT_EQ(worker->Log().find("the lease is lost"), std::string::npos) << worker->Log();
  worker->Stop();
}

// restyled refuses to start with client tokens and no credentials of the
// worker port's own, or with a token on both lists.
TEST(SecurityTest, TheWorkerPortNeverFallsBackToTheClientsTokens) {
  const std::string root = FreshDir("worker-credentials");
  std::ofstream(root + "/tokens") << "shared-secret-1\n";
  std::ofstream(root + "/worker-tokens") << "shared-secret-1\n";
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tokens-file", root + "/tokens"},
        std::vector<std::string>{"--tokens-file", root + "/tokens", "--worker-tokens-file",
                                 root + "/worker-tokens"}}) {
    std::vector<std::string> argv = {RestyledBinary(), "--data-dir", root + "/data", "--port", "0",
                                     "--worker-port", "0", "--health-port", "0", "--metrics-port",
                                     "-1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    Process restyled("restyled", argv, root + "/restyled.log");
    EXPECT_EQ(WEXITSTATUS(restyled.Wait(absl::Seconds(30)).value_or(-1)), 1) << restyled.Log();
    EXPECT_TRUE(restyled.Log().find("--worker-tokens-file") != std::string::npos ||
                restyled.Log().find("tokens of their own") != std::string::npos)
        << restyled.Log();
    EXPECT_EQ(restyled.Log().find("shared-secret"), std::string::npos) << restyled.Log();
  }
}

// A CA and a client certificate it signed (openssl CLI).
void MakeClientCertificate(const std::string& dir) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                 dir + "/ca.key", "-out", dir + "/ca.pem", "-days", "2", "-subj",
                                 "/CN=restyle-test-workers-ca"},
        std::vector<std::string>{"req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                 dir + "/worker.key", "-out", dir + "/worker.csr", "-subj",
                                 "/CN=worker"},
        std::vector<std::string>{"x509", "-req", "-in", dir + "/worker.csr", "-CA", dir + "/ca.pem",
                                 "-CAkey", dir + "/ca.key", "-CAcreateserial", "-out",
                                 dir + "/worker.pem", "-days", "2"}}) {
    std::vector<std::string> argv = {"/usr/bin/openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process openssl("openssl", argv, dir + "/openssl-client.log");
    ASSERT_EQ(openssl.Wait(absl::Seconds(60)).value_or(-1), 0) << openssl.Log();
  }
}

// Mutual TLS on the worker port: a worker without a certificate the
// operator's CA signed never gets in (even with the clients' token); one
// with it runs jobs. The API port asks clients for no certificate.
TEST(SecurityTest, TheWorkerPortCanAskForClientCertificates) {
  const std::string root = FreshDir("mtls");
  MakeCertificate(root);
  MakeClientCertificate(root);
  std::ofstream(root + "/tokens") << "client-secret-m1\n";
  Front front(root + "/front", {"--tls-cert", root + "/cert.pem", "--tls-key", root + "/key.pem",
                                "--tokens-file", root + "/tokens", "--worker-client-ca",
                                root + "/ca.pem"});
  auto uncertified = StartWorker(front, "uncertified",
                                 {"--tls-ca", root + "/cert.pem", "--token-file", root + "/tokens"});
  EXPECT_FALSE(WaitServing(front, absl::Seconds(5))) << uncertified->Log();
  uncertified->Stop();
  EXPECT_EQ(uncertified->Log().find("registered with"), std::string::npos) << uncertified->Log();
  auto worker = StartWorker(front, "certified",
                            {"--tls-ca", root + "/cert.pem", "--tls-cert", root + "/worker.pem",
                             "--tls-key", root + "/worker.key"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Read(root + "/cert.pem");
  auto stub = v1::RestyleService::NewStub(grpc::CreateChannel(
      absl::StrCat("localhost:", front.ports().api), grpc::SslCredentials(ssl)));
  v1::Job job;
  ASSERT_TRUE(stub->Adapt(With("client-secret-m1").get(), SmallJob(3), &job).ok());
  v1::WaitJobRequest wait;
  wait.set_name(job.name());
  ASSERT_TRUE(stub->WaitJob(With("client-secret-m1", "", absl::Seconds(60)).get(), wait, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  worker->Stop();
}

}  // namespace
}  // namespace restyle::testing
