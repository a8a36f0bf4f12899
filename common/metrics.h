// Prometheus metrics plumbing shared by restyled and restyle-worker: the
// /metrics endpoint on a registry its owner passes in (no global registry),
// restyle_build_info, and bucket sets. Names follow Prometheus' guide: the
// restyle_ prefix, base units (_seconds, _bytes), _total on counters, bounded
// label values only (never a job id, a generator id or a text).
//
// The endpoint is cpp-httplib serving prometheus-cpp's text format.
// (prometheus-cpp's own exposer runs on civetweb, whose Debian build starts
// its threads with a 100 KiB stack: glibc refuses that (EINVAL) in a process
// that loads LibTorch, whose thread-local storage alone is larger.)
//
// Thread-safety: prometheus-cpp's metrics are thread-safe; MetricsServer
// serves from threads of its own and is immutable after Start.
#ifndef RESTYLE_COMMON_METRICS_H_
#define RESTYLE_COMMON_METRICS_H_

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace restyle {

class MetricsServer {
 public:
  // Serves `registry` at http://HOST:PORT/metrics (port 0 picks a free
  // one). UNAVAILABLE (PORT_IN_USE) when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

// "0.0.0.0:8710" -> {"0.0.0.0", 8710}; INVALID_ARGUMENT for anything else.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(const std::string& address);

// restyle_build_info{program, version} 1.
void AddBuildInfo(prometheus::Registry& registry, const std::string& program,
                  const std::string& version);

// Histogram buckets for durations from 1 ms to about 1 h (1, 2.5, 5 steps).
prometheus::Histogram::BucketBoundaries DurationBuckets();
// Buckets for counts of things per request: 1, 2, 4, ..., 1024.
prometheus::Histogram::BucketBoundaries CountBuckets();

}  // namespace restyle

#endif  // RESTYLE_COMMON_METRICS_H_
