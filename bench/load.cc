// restyle-load: a closed-loop load generator for Generate, for benchmarks on
// loopback (docs/benchmarks.md#serving; bench/load.py runs the scenarios).
//
//   restyle-load --server 127.0.0.1:8700 --generator generators/demo \
//       --clients 16 --duration 20 --worker-metrics 127.0.0.1:8710
//
// N clients each send one Generate at a time (seeds drawn from a counter,
// so no two requests repeat an image; generators in turn from the mix),
// for a fixed duration or request count. A RESOURCE_EXHAUSTED answer waits
// out its grpc-retry-pushback-ms before the client's next request. At the
// end one JSON line on stdout: throughput, latency percentiles of the
// successful requests, errors by status code, and, from the workers'
// /metrics scraped before and after, the batches they formed (count, mean,
// histogram) and their generator loads and evictions.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/stats.h"
#include "restyle/v1/restyle_service.grpc.pb.h"

namespace {

using restyle::bench::CodeName;
using restyle::bench::Percentile;

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
namespace v1 = restyle::v1;

struct Options {
  std::string server = "127.0.0.1:8700";
  std::vector<std::string> generators;
  int clients = 4;
  double duration_s = 10;
  int64_t requests = 0;  // > 0: stop after this many instead
  int seeds_per_request = 1;
  double deadline_s = 60;
  double truncation = -1;  // < 0: the generator's default
  int max_resolution = 0;
  uint64_t seed_base = 0;
  std::string label;
  std::vector<std::string> worker_metrics;  // host:port
};

bool Loopback(const std::string& address) {
  return address.rfind("127.", 0) == 0 || address.rfind("localhost:", 0) == 0 ||
         address.rfind("[::1]:", 0) == 0;
}

// Samples of a Prometheus text page by their full name with labels
// ("restyle_worker_generation_batch_size_bucket{le=\"2\"}").
std::map<std::string, double> Scrape(const std::string& host_port) {
  std::map<std::string, double> samples;
  const size_t colon = host_port.rfind(':');
  httplib::Client client(host_port.substr(0, colon), std::stoi(host_port.substr(colon + 1)));
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  httplib::Result result = client.Get("/metrics");
  if (!result || result->status != 200) {
    std::fprintf(stderr, "restyle-load: cannot scrape http://%s/metrics\n", host_port.c_str());
    return samples;
  }
  for (absl::string_view line : absl::StrSplit(result->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) continue;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}



struct ClientResult {
  std::vector<double> latencies_ms;
  int64_t images = 0;
  std::map<std::string, int64_t> errors;
};

// What the workers' counters moved by between two scrapes.
Json WorkerDelta(const std::vector<std::map<std::string, double>>& before,
                 const std::vector<std::map<std::string, double>>& after) {
  auto sum = [](const std::vector<std::map<std::string, double>>& pages, const std::string& key) {
    double total = 0;
    for (const auto& page : pages) {
      auto it = page.find(key);
      if (it != page.end()) total += it->second;
    }
    return total;
  };
  auto delta = [&](const std::string& key) { return sum(after, key) - sum(before, key); };
  const std::string batch = "restyle_worker_generation_batch_size";
  const double batches = delta(batch + "_count");
  Json histogram = Json::object();
  double below = 0;
  for (int le = 1; le <= 1024; le *= 2) {
    const double cumulative = delta(batch + "_bucket{le=\"" + std::to_string(le) + "\"}");
    if (cumulative - below > 0) histogram["<=" + std::to_string(le)] = cumulative - below;
    below = cumulative;
  }
  const double loads = delta("restyle_generator_loads_total");
  const double load_seconds = delta("restyle_generator_load_seconds_sum");
  return {{"batches", batches},
          {"mean_batch", batches > 0 ? delta(batch + "_sum") / batches : 0},
          {"batch_histogram", histogram},
          {"engine_seconds", delta("restyle_worker_generation_seconds_sum")},
          {"images", delta("restyle_worker_images_generated_total")},
          {"generator_loads", loads},
          {"generator_evictions", delta("restyle_generator_evictions_total")},
          {"mean_load_ms", loads > 0 ? 1000 * load_seconds / loads : 0},
          {"expired", delta("restyle_worker_generation_expired_total")}};
}

int Run(const Options& o) {
  auto channel = grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "restyle-load: %s does not answer\n", o.server.c_str());
    return 1;
  }
  std::vector<std::map<std::string, double>> before, after;
  for (const std::string& m : o.worker_metrics) before.push_back(Scrape(m));

  std::atomic<uint64_t> next_seed{o.seed_base};
  std::atomic<int64_t> requests_started{0};
  std::vector<ClientResult> results(o.clients);
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop =
      start + std::chrono::microseconds(static_cast<int64_t>(o.duration_s * 1e6));
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::RestyleService::NewStub(channel);
      ClientResult& r = results[c];
      for (int64_t n = c;; n += o.clients) {
        if (o.requests > 0 ? requests_started.fetch_add(1) >= o.requests : Clock::now() >= stop) {
          break;
        }
        v1::GenerateRequest request;
        request.set_generator(o.generators[static_cast<size_t>(n) % o.generators.size()]);
        const uint64_t first = next_seed.fetch_add(static_cast<uint64_t>(o.seeds_per_request));
        for (int i = 0; i < o.seeds_per_request; ++i) request.add_seeds(first + i);
        if (o.truncation >= 0) request.set_truncation(o.truncation);
        request.set_max_resolution(o.max_resolution);
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::microseconds(static_cast<int64_t>(o.deadline_s * 1e6)));
        const Clock::time_point sent = Clock::now();
        auto reader = stub->Generate(&context, request);
        v1::GenerateResponse image;
        int64_t images = 0;
        while (reader->Read(&image)) ++images;
        const grpc::Status status = reader->Finish();
        if (status.ok()) {
          r.latencies_ms.push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
          r.images += images;
          continue;
        }
        ++r.errors[CodeName(status.error_code())];
        int64_t pushback = 100;
        for (const auto& [key, value] : context.GetServerTrailingMetadata()) {
          if (key == "grpc-retry-pushback-ms") {
            absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &pushback);
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp<int64_t>(pushback, 1, 5000)));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  for (const std::string& m : o.worker_metrics) after.push_back(Scrape(m));

  std::vector<double> latencies;
  int64_t images = 0;
  std::map<std::string, int64_t> errors;
  for (const ClientResult& r : results) {
    latencies.insert(latencies.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    images += r.images;
    for (const auto& [code, n] : r.errors) errors[code] += n;
  }
  double mean = 0;
  for (double l : latencies) mean += l;
  if (!latencies.empty()) mean /= static_cast<double>(latencies.size());
  Json line = {{"bench", "load"},
               {"label", o.label},
               {"clients", o.clients},
               {"generators", o.generators.size()},
               {"seeds_per_request", o.seeds_per_request},
               {"wall_s", wall},
               {"requests_ok", latencies.size()},
               {"images", images},
               {"images_per_s", static_cast<double>(images) / wall},
               {"latency_ms",
                {{"p50", Percentile(latencies, 50)},
                 {"p95", Percentile(latencies, 95)},
                 {"p99", Percentile(latencies, 99)},
                 {"mean", mean},
                 {"max", latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end())}}},
               {"errors", errors}};
  if (!o.worker_metrics.empty()) line["worker"] = WorkerDelta(before, after);
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"restyle-load: closed-loop Generate load on a loopback Restyle, one JSON line"};
  app.add_option("--server", o.server, "the front's API address (loopback only)")
      ->capture_default_str();
  app.add_option("--generator", o.generators, "a generator of the mix (repeat for several)")
      ->required();
  app.add_option("--clients", o.clients, "concurrent clients")->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds of load")->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--requests", o.requests, "stop after this many requests instead")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seeds-per-request", o.seeds_per_request, "images per request")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--deadline", o.deadline_s, "seconds each request may take")
      ->check(CLI::Range(0.001, 3600.0))->capture_default_str();
  app.add_option("--truncation", o.truncation, "truncation (default: the generator's)");
  app.add_option("--max-resolution", o.max_resolution, "images no larger than this");
  app.add_option("--seed-base", o.seed_base, "the first seed")->capture_default_str();
  app.add_option("--label", o.label, "a name for the JSON line");
  app.add_option("--worker-metrics", o.worker_metrics,
                 "a worker's metrics address, host:port (repeat for several)");
  CLI11_PARSE(app, argc, argv);
  if (!Loopback(o.server)) {
    std::fprintf(stderr, "restyle-load: --server %s is not a loopback address\n", o.server.c_str());
    return 2;
  }
  for (const std::string& m : o.worker_metrics) {
    if (!Loopback(m) || m.rfind(':') == std::string::npos) {
      std::fprintf(stderr, "restyle-load: --worker-metrics %s: a loopback host:port\n", m.c_str());
      return 2;
    }
  }
  return Run(o);
}
