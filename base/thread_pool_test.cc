#include "base/thread_pool.h"

#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
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

TEST(ThreadPoolTest, ParallelismLimitCapsTheWorkersOfThisThread) {
  ThreadPool pool(4);
  absl::Mutex mu;
  std::set<std::thread::id> threads;
  const auto record = [&](size_t) {
    absl::SleepFor(absl::Milliseconds(1));  // Long enough for other workers to join in.
    absl::MutexLock lock(&mu);
    threads.insert(std::this_thread::get_id());
  };
  {
    ThreadPool::ParallelismLimit limit(2);
    {
      ThreadPool::ParallelismLimit inner(1);
      pool.ParallelFor(60, 4, record);
      EXPECT_EQ(threads.size(), 1u);
    }
    threads.clear();
    pool.ParallelFor(60, 4, record);
    EXPECT_GE(threads.size(), 1u);
    EXPECT_LE(threads.size(), 2u);
  }
  // Other threads are not limited by this thread's scope.
  ThreadPool::ParallelismLimit limit(1);
  threads.clear();
  std::thread other([&] { pool.ParallelFor(60, 4, record); });
  other.join();
  EXPECT_GT(threads.size(), 1u);
}

TEST(ThreadPoolTest, ParallelForInsideAWorkerRunsInline) {
  ThreadPool pool(1);  // The outer call occupies the only worker.
  std::atomic<int> total{0};
  pool.ParallelFor(3, 1,
                   [&](size_t) { pool.ParallelFor(10, 1, [&](size_t) { total.fetch_add(1); }); });
  EXPECT_EQ(total.load(), 30);
}

TEST(ThreadPoolTest, ParseThreadCountNamesTheVariable) {
  EXPECT_EQ(ThreadPool::ParseThreadCount("3").value(), 3);
  for (const char* bad : {"", "0", "-2", "two", "4x"}) {
    absl::StatusOr<int> parsed = ThreadPool::ParseThreadCount(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("MAXIMUS_THREADS"), std::string::npos);
  }
}

// The shared pool is made once per process: each case runs in a child.
TEST(ThreadPoolDeathTest, SharedPoolFollowsTheAffinityMask) {
  EXPECT_EXIT(
      {
        unsetenv("MAXIMUS_THREADS");
        cpu_set_t set;
        CPU_ZERO(&set);
        sched_getaffinity(0, sizeof(set), &set);
        int first = 0;
        while (!CPU_ISSET(first, &set)) ++first;
        CPU_ZERO(&set);
        CPU_SET(first, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) std::exit(2);
        std::exit(ThreadPool::AvailableCpus() == 1 && ThreadPool::Shared().size() == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(ThreadPoolDeathTest, MaximusThreadsOverridesTheCpuCount) {
  EXPECT_EXIT(
      {
        setenv("MAXIMUS_THREADS", "5", 1);
        std::exit(ThreadPool::Shared().size() == 5 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("MAXIMUS_THREADS", "many", 1);
        std::exit(ThreadPool::Shared().size() == ThreadPool::AvailableCpus() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "MAXIMUS_THREADS must be a positive integer");
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
