// What the service benchmarks (restyle-load, restyle-replica-bench) share:
// percentiles of their samples and gRPC codes by name for their reports.
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_BENCH_STATS_H_
#define RESTYLE_BENCH_STATS_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace restyle::bench {

// The p-th percentile (0..100) of `v`, interpolated between ranks; 0 when
// empty.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

// "UNAVAILABLE", "RESOURCE_EXHAUSTED", ... (the number for an unknown code).
inline std::string CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {
      "OK",           "CANCELLED",          "UNKNOWN",             "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS",      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",      "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",         "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : std::to_string(i);
}

}  // namespace restyle::bench

#endif  // RESTYLE_BENCH_STATS_H_
