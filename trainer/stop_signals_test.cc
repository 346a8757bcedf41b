#include "trainer/stop_signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace maximus::trainer {
namespace {

bool WaitFor(const std::atomic<int>& value, int want) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (value.load() != want && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  return value.load() == want;
}

TEST(StopSignalsTest, SignalsBecomeActionsOnItsThread) {
  auto started = StopSignals::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<StopSignals> signals = *std::move(started);
  EXPECT_EQ(StopSignals::Start().status().code(), absl::StatusCode::kFailedPrecondition);
  std::atomic<int> last{0};
  std::atomic<int> count{0};
  // Locks and allocation are fine in the action: it is no signal handler.
  signals->SetAction([&](int signal) {
    last = signal;
    ++count;
  });
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_TRUE(WaitFor(count, 1));
  EXPECT_EQ(last.load(), SIGINT);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(WaitFor(count, 2));
  EXPECT_EQ(last.load(), SIGTERM);
  // Whichever thread the kernel picks runs the handler; the action runs on
  // StopSignals' thread.
  std::thread([] { raise(SIGINT); }).join();
  EXPECT_TRUE(WaitFor(count, 3));
  signals.reset();  // Joins its thread.
  // Another instance may start once the first is gone.
  EXPECT_TRUE(StopSignals::Start().ok());
}

TEST(StopSignalsTest, WithoutAnActionTheSignalEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::unique_ptr<StopSignals> signals = *StopSignals::Start();
        signals->SetAction([](int) {});
        signals->SetAction(nullptr);
        kill(getpid(), SIGTERM);
        absl::SleepFor(absl::Seconds(10));
      },
      ::testing::KilledBySignal(SIGTERM), "");
}

}  // namespace
}  // namespace maximus::trainer
