#include "trainer/stop_signals.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <ctime>
#include <utility>

namespace maximus::trainer {
namespace {

sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

std::unique_ptr<StopSignals> StopSignals::Start() {
  const sigset_t set = StopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::unique_ptr<StopSignals> signals(new StopSignals());
  signals->thread_ = std::thread([s = signals.get()] { s->Loop(); });
  return signals;
}

StopSignals::~StopSignals() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
}

void StopSignals::SetAction(std::function<void(int)> action) {
  absl::MutexLock lock(&mu_);
  action_ = std::move(action);
}

void StopSignals::Loop() {
  const sigset_t set = StopSet();
  // Wakes now and then to notice the destructor.
  const timespec poll = {0, 100 * 1000 * 1000};
  while (!done_) {
    const int signal = sigtimedwait(&set, nullptr, &poll);
    if (signal < 0) continue;  // EAGAIN (timeout) or EINTR.
    {
      // Held while the action runs, so that once SetAction returns the old
      // action is not running and will not run.
      absl::MutexLock lock(&mu_);
      if (action_) {
        action_(signal);
        continue;
      }
    }
    // No action: the default, which ends the process.
    ::signal(signal, SIG_DFL);
    sigset_t just_this;
    sigemptyset(&just_this);
    sigaddset(&just_this, signal);
    pthread_sigmask(SIG_UNBLOCK, &just_this, nullptr);
    raise(signal);
  }
}

}  // namespace maximus::trainer
