// SIGINT and SIGTERM as calls on an ordinary thread. A signal handler may
// only do async-signal-safe things (no locks, no allocation), so the handler
// here only writes the signal's number to a pipe (write(2) is
// async-signal-safe); a thread reads the pipe and calls the action, which may
// lock and allocate like any code. The handler works in whichever thread
// the kernel picks, including threads that libraries started before main.

#ifndef MAXIMUS_TRAINER_STOP_SIGNALS_H_
#define MAXIMUS_TRAINER_STOP_SIGNALS_H_

#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace maximus::trainer {

class StopSignals {
 public:
  // Installs the handler for SIGINT and SIGTERM and starts the thread that
  // acts on them. One instance at a time.
  static absl::StatusOr<std::unique_ptr<StopSignals>> Start();
  // Restores both signals' default handling and stops the thread.
  ~StopSignals();

  // What a signal does: `action(signal)` while one is set; with none, the
  // signal's default (the process ends). Once SetAction returns, the
  // previous action neither runs nor will run.
  void SetAction(std::function<void(int)> action);

 private:
  StopSignals(int read_fd, int write_fd) : read_fd_(read_fd), write_fd_(write_fd) {}
  void Loop();

  const int read_fd_;
  const int write_fd_;
  absl::Mutex mu_;
  std::function<void(int)> action_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_STOP_SIGNALS_H_
