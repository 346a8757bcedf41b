// SIGINT and SIGTERM as calls on an ordinary thread. A signal handler may
// only do async-signal-safe things (no locks, no allocation), so there is
// none: the signals are blocked and a thread takes them with sigtimedwait,
// then calls the action, which may lock and allocate like any code.

#ifndef MAXIMUS_TRAINER_STOP_SIGNALS_H_
#define MAXIMUS_TRAINER_STOP_SIGNALS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace maximus::trainer {

class StopSignals {
 public:
  // Blocks SIGINT and SIGTERM in the calling thread, and so in every thread
  // it starts afterwards, and starts the thread that takes them. Call it
  // first thing in main, before any other thread exists (a thread started
  // earlier could still receive them).
  static std::unique_ptr<StopSignals> Start();
  // Stops the thread; the signals stay blocked.
  ~StopSignals();

  // What a signal does: `action(signal)` while one is set; with none, the
  // signal's default (the process ends, as if nothing had blocked it). Once
  // SetAction returns, the previous action neither runs nor will run.
  void SetAction(std::function<void(int)> action);

 private:
  StopSignals() = default;
  void Loop();

  absl::Mutex mu_;
  std::function<void(int)> action_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_STOP_SIGNALS_H_
