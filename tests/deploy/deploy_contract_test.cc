// The Kubernetes manifests against the real binaries. deploy_manifests
// (check_manifests.mjs) renders every overlay and writes what its front and
// worker containers run with: args, the settings files their ConfigMap
// mounts, the Secret's files, ports and probes. Here restyled and
// restyle-worker start exactly so (container paths mapped into a temporary
// directory, ports the OS picks, the front's address the test's), which
// proves every flag and setting is one the binaries take; the settings'
// ports are the ports the containers declare and the probes ask; every
// probe's service is served on the health port; the tokens the Secret holds
// let the worker in; and both stop within their grace periods. The
// replicated overlay's fronts start the same way, all at once, on one
// PostgreSQL database and one shared data directory, with the environment
// the manifest gives them (the database from its Secret, the advertised
// address from the pod's IP).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/postgres_server.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
constexpr int kServing = grpc::health::v1::HealthCheckResponse::SERVING;

Json Contract() {
  std::ifstream in(RESTYLE_DEPLOY_CONTRACT);
  EXPECT_TRUE(in.good()) << RESTYLE_DEPLOY_CONTRACT << " is missing: deploy_manifests writes it";
  return in.good() ? Json::parse(in) : Json::object();
}

// A flat TOML settings file (what the ConfigMaps hold): key -> raw value.
using Settings = std::vector<std::pair<std::string, std::string>>;

Settings ParseSettings(const std::string& text) {
  Settings settings;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    EXPECT_EQ(kv.size(), 2u) << "not key = value: " << line;
    if (kv.size() != 2) continue;
    settings.emplace_back(std::string(absl::StripAsciiWhitespace(kv[0])),
                          std::string(absl::StripAsciiWhitespace(kv[1])));
  }
  return settings;
}

std::string Unquote(const std::string& v) {
  return v.size() >= 2 && v.front() == '"' && v.back() == '"' ? v.substr(1, v.size() - 2) : v;
}

std::string Get(const Settings& settings, const std::string& key) {
  for (const auto& [k, v] : settings) {
    if (k == key) return Unquote(v);
  }
  ADD_FAILURE() << "no setting " << key;
  return "";
}

int PortOf(const std::string& address_or_port) {
  int port = -1;
  const size_t colon = address_or_port.rfind(':');
  EXPECT_TRUE(absl::SimpleAtoi(colon == std::string::npos ? address_or_port : address_or_port.substr(colon + 1), &port))
      << address_or_port;
  return port;
}

// A container's file system, mapped into a directory: its ConfigMap and
// Secret mounts written out, its other volumes fresh directories; with
// `claims`, a PersistentVolumeClaim's mount is claims/<claim>, the same
// directory for every container that mounts it.
class Container {
 public:
  Container(const Json& contract, const Json& workload, const std::string& root,
            const std::string& claims = "") {
    for (const auto& [mount, source] : workload["mounts"].items()) {
      const std::string dir = !claims.empty() && source.contains("claim")
                                  ? absl::StrCat(claims, "/", source["claim"].get<std::string>())
                                  : root + mount;
      fs::create_directories(dir);
      mounts_.emplace_back(mount, dir);
      const Json* files = nullptr;
      if (source.contains("configMap")) files = &contract["configMaps"][source["configMap"].get<std::string>()];
      if (source.contains("secret")) {
        const std::string secret = source["secret"];
        EXPECT_TRUE(contract["secrets"].contains(secret)) << "the overlay has no Secret " << secret;
        files = &contract["secrets"][secret];
      }
      if (files == nullptr) continue;
      for (const auto& [name, content] : files->items()) {
        std::ofstream(dir + "/" + name) << content.get<std::string>();
      }
    }
    // Longest mount first, so /etc/restyle/secrets wins over /etc/restyle.
    std::sort(mounts_.begin(), mounts_.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }

  // A container path on this machine; other values unchanged.
  std::string Map(const std::string& value) const {
    for (const auto& [mount, dir] : mounts_) {
      if (value == mount || absl::StartsWith(value, mount + "/")) return dir + value.substr(mount.size());
    }
    return value;
  }

 private:
  std::vector<std::pair<std::string, std::string>> mounts_;
};

// The container's args, its env's $(VAR) expanded as the kubelet does, paths
// mapped, `--config` rewritten by `rewrite` first.
std::vector<std::string> Args(const Json& workload, const Container& container,
                              const std::function<Settings(Settings)>& rewrite) {
  std::vector<std::string> args;
  for (std::string arg : workload["args"]) {
    for (const auto& [name, value] : workload["env"].items()) {
      arg = absl::StrReplaceAll(arg, {{absl::StrCat("$(", name, ")"), value.get<std::string>()}});
    }
    EXPECT_EQ(arg.find("$("), std::string::npos) << arg << ": a variable the container does not set";
    const size_t eq = arg.find('=');
    std::string flag = arg.substr(0, eq), value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (flag == "--config") {
      const std::string file = container.Map(value);
      std::ifstream in(file);
      EXPECT_TRUE(in.good()) << value << " is in no mounted ConfigMap";
      const Settings settings = rewrite(ParseSettings(std::string(std::istreambuf_iterator<char>(in), {})));
      std::ofstream out(file, std::ios::trunc);
      for (const auto& [k, v] : settings) out << k << " = " << v << "\n";
    }
    args.push_back(eq == std::string::npos ? arg : absl::StrCat(flag, "=", container.Map(value)));
  }
  return args;
}

Settings Replace(Settings settings, const std::map<std::string, std::string>& values) {
  for (auto& [k, v] : settings) {
    if (auto it = values.find(k); it != values.end()) v = it->second;
  }
  return settings;
}

std::string Quoted(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// A TCP port on loopback that nothing listens on now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

// $(VAR) in `value` replaced by `env`'s VAR, as the kubelet does.
std::string Expand(std::string value, const std::map<std::string, std::string>& env) {
  for (const auto& [name, v] : env) value = absl::StrReplaceAll(value, {{absl::StrCat("$(", name, ")"), v}});
  return value;
}

Json ReadJsonFile(const std::string& path, Process& process) {
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while (!fs::exists(path) && process.running() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(fs::exists(path)) << "no port file:\n" << process.Log();
  std::ifstream in(path);
  return in.good() ? Json::parse(in) : Json::object();
}

TEST(DeployContractTest, TheCpuDevOverlayRunsAsRendered) {
  const Json all = Contract();
  ASSERT_TRUE(all.contains("cpu-dev"));
  const Json& contract = all["cpu-dev"];
  const Json& front = contract["workloads"]["front"];
  const Json& worker = contract["workloads"]["worker"];
  const std::string root = FreshDir("deploy-contract");

  // restyled: its settings' ports are its container's ports and its probes'.
  Container front_fs(contract, front, root + "/front");
  Settings front_settings;
  std::vector<std::string> front_args = Args(front, front_fs, [&](Settings s) {
    front_settings = s;
    for (auto& [k, v] : s) {
      if (k == "data-dir" || absl::EndsWith(k, "-file")) v = Quoted(front_fs.Map(Unquote(v)));
    }
    return Replace(s, {{"host", Quoted("127.0.0.1")}, {"port", "0"}, {"worker-port", "0"},
                       {"health-port", "0"}, {"metrics-port", "0"}});
  });
  ASSERT_FALSE(front_settings.empty()) << "the front's args name no --config";
  EXPECT_EQ(PortOf(Get(front_settings, "port")), front["ports"]["api"]);
  EXPECT_EQ(PortOf(Get(front_settings, "worker-port")), front["ports"]["worker"]);
  EXPECT_EQ(PortOf(Get(front_settings, "health-port")), front["ports"]["health"]);
  EXPECT_EQ(PortOf(Get(front_settings, "metrics-port")), front["ports"]["metrics"]);
  for (const auto& [probe, grpc] : front["probes"].items()) {
    ASSERT_FALSE(grpc.is_null()) << "front " << probe;
    EXPECT_EQ(grpc["port"], front["ports"]["health"]) << "front " << probe;
  }
  const std::string front_ports = root + "/front-ports.json";
  front_args.insert(front_args.begin(), RestyledBinary());
  front_args.push_back("--port-file=" + front_ports);
  Process restyled("restyled", front_args, root + "/front.log");
  const Json bound = ReadJsonFile(front_ports, restyled);
  ASSERT_TRUE(bound.contains("health")) << restyled.Log();
  for (const auto& [probe, grpc] : front["probes"].items()) {
    EXPECT_TRUE(WaitHealth(bound["health"], grpc["service"], absl::Seconds(20)))
        << "front " << probe << ": \"" << grpc["service"] << "\" is not SERVING\n" << restyled.Log();
  }

  // The worker finds the front where its settings say: the Service's worker
  // port, which is the front's.
  Container worker_fs(contract, worker, root + "/worker");
  Settings worker_settings;
  std::vector<std::string> worker_args = Args(worker, worker_fs, [&](Settings s) {
    worker_settings = s;
    for (auto& [k, v] : s) {
      if (k == "work-dir" || k == "models" || absl::EndsWith(k, "-file")) v = Quoted(worker_fs.Map(Unquote(v)));
    }
    return Replace(s, {{"front", Quoted(absl::StrCat("127.0.0.1:", bound["worker"].get<int>()))},
                       {"metrics-address", Quoted("127.0.0.1:0")},
                       {"health-address", Quoted("127.0.0.1:0")}});
  });
  ASSERT_FALSE(worker_settings.empty()) << "the worker's args name no --config";
  const std::vector<std::string> service = absl::StrSplit(Get(worker_settings, "front"), ':');
  ASSERT_EQ(service.size(), 2u);
  ASSERT_TRUE(contract["services"].contains(service[0])) << "no Service " << service[0];
  EXPECT_EQ(contract["services"][service[0]]["worker"], PortOf(service[1]));
  EXPECT_EQ(PortOf(service[1]), front["ports"]["worker"]);
  EXPECT_EQ(PortOf(Get(worker_settings, "metrics-address")), worker["ports"]["metrics"]);
  EXPECT_EQ(PortOf(Get(worker_settings, "health-address")), worker["ports"]["health"]);
  for (const auto& [probe, grpc] : worker["probes"].items()) {
    ASSERT_FALSE(grpc.is_null()) << "worker " << probe;
    EXPECT_EQ(grpc["port"], worker["ports"]["health"]) << "worker " << probe;
  }
  const std::string worker_ports = root + "/worker-ports.json";
  worker_args.insert(worker_args.begin(), WorkerBinary());
  worker_args.push_back("--port-file=" + worker_ports);
  Process restyle_worker("restyle-worker", worker_args, root + "/worker.log");
  const Json worker_bound = ReadJsonFile(worker_ports, restyle_worker);
  ASSERT_TRUE(worker_bound.contains("health")) << restyle_worker.Log();
  const int health = worker_bound["health"];
  EXPECT_EQ(HealthOf(health, "liveness"), kServing);
  for (const auto& [probe, grpc] : worker["probes"].items()) {
    EXPECT_TRUE(WaitHealth(health, grpc["service"], absl::Seconds(60)))
        << "worker " << probe << ": \"" << grpc["service"] << "\" is not SERVING\n"
        << restyle_worker.Log() << restyled.Log();
  }
  // Readiness means the front has it, with the Secret's token.
  EXPECT_TRUE(WaitHealth(bound["health"], "", absl::Seconds(20))) << restyled.Log();
  EXPECT_EQ(HealthOf(health, "no-such-service"), -1);

  // SIGTERM: both finish within their grace periods, cleanly.
  restyle_worker.Signal(SIGTERM);
  EXPECT_EQ(restyle_worker.Wait(absl::Seconds(worker["terminationGracePeriodSeconds"].get<int>())), 0)
      << restyle_worker.Log();
  restyled.Signal(SIGTERM);
  EXPECT_EQ(restyled.Wait(absl::Seconds(front["terminationGracePeriodSeconds"].get<int>())), 0)
      << restyled.Log();
}

// overlays/replicated: its front replicas start at once, as the manifest
// runs them, on one database and one data directory (the ReadWriteMany
// claim): the Secret's URL and password, the pod's IP and the advertised
// address in their environment, the settings file's flags, the probes'
// services SERVING on each, the schema made once, no SQLite file, and each
// stops within its grace period. Its workers are the gpu overlay's (CUDA),
// which the cpu-dev case covers on the CPU with the same settings file.
TEST(DeployContractTest, TheReplicatedOverlaysFrontsRunAsRenderedOnOneDatabase) {
  const Json all = Contract();
  ASSERT_TRUE(all.contains("replicated"));
  Json contract = all["replicated"];
  const Json front = contract["workloads"]["front"];
  EXPECT_EQ(front["kind"], "Deployment");
  const int replicas = front["replicas"];
  ASSERT_GE(replicas, 2);

  // The database and its password from the operator's Secret, as the
  // example shows it; the advertised address is the pod's IP and api port.
  const Json& refs = front["envRefs"];
  ASSERT_TRUE(refs.contains("RESTYLE_DATABASE_URL")) << refs;
  ASSERT_TRUE(refs.contains("PGPASSWORD")) << refs;
  const std::string secret_name = refs["RESTYLE_DATABASE_URL"]["secret"];
  EXPECT_EQ(refs["PGPASSWORD"]["secret"], secret_name);
  ASSERT_TRUE(contract["exampleSecrets"].contains(secret_name)) << "no example of Secret " << secret_name;
  const Json secret = contract["exampleSecrets"][secret_name];
  const std::string example_url = secret.value(refs["RESTYLE_DATABASE_URL"]["key"].get<std::string>(), "");
  EXPECT_TRUE(absl::StartsWith(example_url, "postgresql://")) << example_url;
  EXPECT_TRUE(secret.contains(refs["PGPASSWORD"]["key"].get<std::string>()));
  ASSERT_TRUE(refs.contains("POD_IP"));
  EXPECT_EQ(refs["POD_IP"]["field"], "status.podIP");
  const std::string advertise = front["env"].value("RESTYLE_ADVERTISE_ADDRESS", "");
  EXPECT_EQ(PortOf(advertise), front["ports"]["api"]) << advertise;

  absl::StatusOr<PostgresServer*> pg = SharedPostgres();
  RESTYLE_REQUIRE_POSTGRES(pg);
  ASSERT_TRUE((*pg)->CreateDatabase("deploy_replicated").ok());
  // The operator's Secret: this server's URL (over its socket, where the
  // server trusts the user, so the password is not asked for).
  const std::string url = (*pg)->Url("deploy_replicated");
  // The tokens Secret the operator creates (docs/deploy.md).
  if (!contract["secrets"].contains("restyle-tokens")) {
    contract["secrets"]["restyle-tokens"] = {{"tokens", "deploy-contract-token\n"},
                                             {"worker-tokens", "deploy-contract-worker-token\n"},
                                             {"worker-token", "deploy-contract-worker-token"}};
  }

  const std::string root = FreshDir("deploy-contract-replicated");
  const std::string claims = root + "/claims";
  std::vector<std::unique_ptr<Container>> filesystems;
  std::vector<std::unique_ptr<Process>> fronts;
  std::vector<std::string> port_files;
  std::string data_dir;
  for (int i = 0; i < replicas; ++i) {
    const std::string pod = absl::StrCat(root, "/front-", i);
    filesystems.push_back(std::make_unique<Container>(contract, front, pod, claims));
    const Container& pod_fs = *filesystems.back();
    // Each pod's API port: the container's in the manifest, a free one here.
    const int api_port = FreePort();
    Settings settings;
    std::vector<std::string> args = Args(front, pod_fs, [&](Settings s) {
      settings = s;
      for (auto& [k, v] : s) {
        if (k == "data-dir" || absl::EndsWith(k, "-file")) v = Quoted(pod_fs.Map(Unquote(v)));
      }
      return Replace(s, {{"host", Quoted("127.0.0.1")}, {"port", std::to_string(api_port)},
                         {"worker-port", "0"}, {"health-port", "0"}, {"metrics-port", "0"}});
    });
    ASSERT_FALSE(settings.empty()) << "the front's args name no --config";
    EXPECT_EQ(PortOf(Get(settings, "port")), front["ports"]["api"]);
    EXPECT_EQ(PortOf(Get(settings, "health-port")), front["ports"]["health"]);
    data_dir = pod_fs.Map(Get(settings, "data-dir"));
    EXPECT_TRUE(absl::StartsWith(data_dir, claims + "/")) << "the data-dir is on no claim: " << data_dir;

    // The environment as the kubelet makes it, in the manifest's order.
    std::map<std::string, std::string> env;
    std::vector<std::string> argv = {"/usr/bin/env"};
    for (const std::string name : front["envOrder"]) {
      std::string v = Expand(front["env"][name].get<std::string>(), env);
      if (refs.contains(name) && refs[name].contains("field")) {
        ASSERT_EQ(refs[name]["field"], "status.podIP") << name;
        v = "127.0.0.1";
      } else if (refs.contains(name)) {
        const std::string key = refs[name]["key"];
        ASSERT_TRUE(secret.contains(key)) << "the example Secret has no " << key;
        v = name == "RESTYLE_DATABASE_URL" ? url : secret[key].get<std::string>();
      }
      if (name == "RESTYLE_ADVERTISE_ADDRESS") {
        // The manifest's port is the container's api port; here, this pod's.
        ASSERT_EQ(v, absl::StrCat("127.0.0.1:", front["ports"]["api"].get<int>()));
        v = absl::StrCat("127.0.0.1:", api_port);
      }
      env[name] = v;
      argv.push_back(absl::StrCat(name, "=", v));
    }
    argv.push_back(RestyledBinary());
    argv.insert(argv.end(), args.begin(), args.end());
    port_files.push_back(pod + "/ports.json");
    argv.push_back("--port-file=" + port_files.back());
    fronts.push_back(std::make_unique<Process>(absl::StrCat("restyled-", i), argv, pod + ".log"));
  }

  for (int i = 0; i < replicas; ++i) {
    const Json bound = ReadJsonFile(port_files[i], *fronts[i]);
    ASSERT_TRUE(bound.contains("health")) << fronts[i]->Log();
    for (const auto& [probe, grpc] : front["probes"].items()) {
      ASSERT_FALSE(grpc.is_null()) << "front " << probe;
      EXPECT_EQ(grpc["port"], front["ports"]["health"]) << "front " << probe;
      EXPECT_TRUE(WaitHealth(bound["health"], grpc["service"], absl::Seconds(30)))
          << "replica " << i << " " << probe << ": \"" << grpc["service"] << "\" is not SERVING\n"
          << fronts[i]->Log();
    }
  }
  // One schema, made once by replicas that started together; no SQLite.
  EXPECT_TRUE((*pg)->Execute("deploy_replicated",
                             "SELECT 1 / (SELECT CASE WHEN count(*) = 1 THEN 1 ELSE 0 END "
                             "FROM schema_version)")
                  .ok())
      << "not one schema_version row";
  EXPECT_TRUE((*pg)->Execute("deploy_replicated", "SELECT 1 FROM jobs LIMIT 1").ok());
  EXPECT_FALSE(fs::exists(data_dir + "/restyle.db")) << "a replica opened SQLite in " << data_dir;

  for (auto& f : fronts) f->Signal(SIGTERM);
  for (int i = 0; i < replicas; ++i) {
    EXPECT_EQ(fronts[i]->Wait(absl::Seconds(front["terminationGracePeriodSeconds"].get<int>())), 0)
        << fronts[i]->Log();
  }
}

}  // namespace
}  // namespace restyle::testing
