#include "base/thread_pool.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/huge_page_buffer.h"
#include "gtest/gtest.h"

namespace maximus::base {
namespace {

TEST(ThreadPoolTest, RunsEveryIndexOnceOnSeveralThreads) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  std::vector<std::atomic<int>> hits(10000);
  absl::Mutex mu;
  std::set<std::thread::id> threads;
  pool.ParallelFor(hits.size(), 4, [&](size_t i) {
    hits[i].fetch_add(1);
    absl::MutexLock lock(&mu);
    threads.insert(std::this_thread::get_id());
  });
  for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
  EXPECT_GE(threads.size(), 1u);
  EXPECT_LE(threads.size(), 4u);
  // Parallelism 1 uses one worker; an empty range returns at once.
  threads.clear();
  pool.ParallelFor(100, 1, [&](size_t) {
    absl::MutexLock lock(&mu);
    threads.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(threads.size(), 1u);
  pool.ParallelFor(0, 4, [&](size_t) { FAIL(); });
}

TEST(ThreadPoolTest, ConcurrentCallersShareThePool) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] { pool.ParallelFor(1000, 2, [&](size_t) { total.fetch_add(1); }); });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4000);
}

TEST(HugePageBufferTest, ReadsFilesWithZeroPadding) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/file.txt";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const std::string content(3 << 20, 'x');
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
  auto buffer = HugePageBuffer::ReadFile(path, 64);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_EQ(buffer->size(), content.size());
  EXPECT_EQ(std::string(buffer->data(), buffer->size()), content);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(buffer->data()[content.size() + i], 0);
  HugePageBuffer moved = *std::move(buffer);
  EXPECT_EQ(moved.size(), content.size());
  EXPECT_FALSE(HugePageBuffer::ReadFile("/nonexistent/file", 64).ok());
  EXPECT_FALSE(HugePageBuffer::ReadFile(std::getenv("TEST_TMPDIR"), 64).ok());  // A directory.
}

}  // namespace
}  // namespace maximus::base
