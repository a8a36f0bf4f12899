// main() shared by every Restyle test binary: sets LibTorch's thread count
// explicitly ($RESTYLE_THREADS or the CPU count; OpenMP may start with one)
// installs the caching CPU allocator and prints the golden deviation report at exit.
#include <gtest/gtest.h>

#include "tests/golden/deviation_report.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/threads.h"

namespace {

class DeviationReportPrinter : public ::testing::EmptyTestEventListener {
  void OnTestProgramEnd(const ::testing::UnitTest&) override {
    restyle::testing::PrintDeviationReport();
  }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  restyle::engine::SetThreadCount(0);
  // The engine runs under the caching CPU allocator in every binary; so do
  // the tests.
  restyle::engine::InstallCachingCpuAllocator();
  ::testing::UnitTest::GetInstance()->listeners().Append(new DeviationReportPrinter);
  return RUN_ALL_TESTS();
}
