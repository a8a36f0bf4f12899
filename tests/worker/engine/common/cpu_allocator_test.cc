// The caching CPU allocator: reuse by size class, the cap on kept memory,
// release, small requests untouched, tensors correct under it.
#include "worker/engine/common/cpu_allocator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace restyle::engine {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

class CpuAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CpuCacheOptions options;
    options.max_cached_bytes = 64 * kMiB;
    ASSERT_TRUE(InstallCachingCpuAllocator(options));
    ReleaseCachedCpuMemory();
  }
  void TearDown() override {
    InstallCachingCpuAllocator(CpuCacheOptionsFromEnv());
    ReleaseCachedCpuMemory();
  }
};

TEST_F(CpuAllocatorTest, ReleasedBlockServesTheNextRequestOfItsClass) {
  const auto before = GetCpuCacheStats();
  EXPECT_TRUE(before.installed);
  void* first = nullptr;
  {
    auto t = torch::empty({4 * kMiB / 4}, torch::kFloat32);
    first = t.data_ptr();
  }
  EXPECT_GT(GetCpuCacheStats().cached_bytes, 0u);
  // Slightly smaller, same class: the same block comes back.
  auto again = torch::empty({4 * kMiB / 4 - 1000}, torch::kFloat32);
  EXPECT_EQ(again.data_ptr(), first);
  const auto after = GetCpuCacheStats();
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(after.misses, before.misses + 1);
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_GE(after.live_bytes, static_cast<size_t>(4 * kMiB - 4000));
}

TEST_F(CpuAllocatorTest, ValuesAreCorrectInReusedMemory) {
  torch::manual_seed(1);
  auto a = torch::randn({512, 1024});
  auto b = torch::randn({1024, 512});
  auto expected = torch::matmul(a, b);
  for (int i = 0; i < 3; ++i) {
    auto got = torch::matmul(a, b);
    EXPECT_TRUE(torch::equal(got, expected));
    auto zeros = torch::zeros({512, 512});  // reused block must read as zeros
    EXPECT_EQ(zeros.abs().sum().item<double>(), 0.0);
  }
}

TEST_F(CpuAllocatorTest, KeepsNoMoreThanTheCap) {
  {
    std::vector<torch::Tensor> blocks;
    for (int i = 0; i < 6; ++i) blocks.push_back(torch::empty({16 * kMiB / 4}));
  }
  const auto stats = GetCpuCacheStats();
  EXPECT_LE(stats.cached_bytes, static_cast<size_t>(64 * kMiB));
  EXPECT_GT(stats.cached_bytes, 0u);
  ReleaseCachedCpuMemory();
  EXPECT_EQ(GetCpuCacheStats().cached_bytes, 0u);
}

TEST_F(CpuAllocatorTest, SmallRequestsBypassTheCache) {
  const auto before = GetCpuCacheStats();
  for (int i = 0; i < 10; ++i) {
    auto t = torch::ones({1000});
    EXPECT_EQ(t.sum().item<float>(), 1000.0f);
  }
  const auto after = GetCpuCacheStats();
  EXPECT_EQ(after.hits + after.misses, before.hits + before.misses);
}

TEST(CpuCacheOptions, EnvironmentSetsTheCap) {
  setenv("RESTYLE_CPU_CACHE_MB", "12", 1);
  EXPECT_EQ(CpuCacheOptionsFromEnv().max_cached_bytes, static_cast<size_t>(12 * kMiB));
  setenv("RESTYLE_CPU_CACHE_MB", "junk", 1);
  EXPECT_EQ(CpuCacheOptionsFromEnv().max_cached_bytes, CpuCacheOptions().max_cached_bytes);
  unsetenv("RESTYLE_CPU_CACHE_MB");
}

}  // namespace
}  // namespace restyle::engine
