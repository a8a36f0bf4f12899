#include "tests/golden/deviation_report.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

namespace restyle::testing {
namespace {

struct Entry {
  int count = 0;
  double relative = 0;
  double absolute = 0;
  std::string unit;
};

std::mutex& Mu() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

std::map<std::string, Entry>& Table() {
  static auto* table = new std::map<std::string, Entry>;
  return *table;
}

}  // namespace

void RecordDeviation(const std::string& key, double relative, double absolute,
                     const std::string& unit) {
  std::lock_guard<std::mutex> lock(Mu());
  Entry& e = Table()[key];
  e.count++;
  e.relative = std::max(e.relative, relative);
  e.absolute = std::max(e.absolute, absolute);
  e.unit = unit;
}

void PrintDeviationReport() {
  std::lock_guard<std::mutex> lock(Mu());
  if (Table().empty()) return;
  std::printf("\nLargest deviation from the golden data per tensor kind:\n");
  std::printf("  %-52s %6s %12s %12s  %s\n", "kind", "checks", "worst", "max|a-b|", "unit");
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [key, e] : Table()) {
    std::printf("  %-52s %6d %12.3g %12.3g  %s\n", key.c_str(), e.count, e.relative, e.absolute,
                e.unit.c_str());
    json[key] = {{"checks", e.count}, {"worst", e.relative}, {"max_abs", e.absolute},
                 {"unit", e.unit}};
  }
  if (const char* dir = std::getenv("RESTYLE_DEVIATION_REPORT_DIR"); dir && *dir) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "run";
    std::ofstream out(std::string(dir) + "/" + name + ".json");
    out << json.dump(1) << "\n";
  }
}

}  // namespace restyle::testing
