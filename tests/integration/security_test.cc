// TLS on the api and worker ports, bearer tokens for clients and workers
// (never logged), and the plaintext health port for probes.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

namespace fs = std::filesystem;

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
  std::ofstream(root + "/tokens") << "# clients and workers\nclient-secret-7f3a\nworker-secret-91c2\n";
  std::ofstream(root + "/worker-token") << "worker-secret-91c2\n";
  Front front(root + "/front", {"--tls-cert", root + "/cert.pem", "--tls-key", root + "/key.pem",
                                "--tokens-file", root + "/tokens"});

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

}  // namespace
}  // namespace restyle::testing
