#include "trainer/stop_signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace maximus::trainer {
namespace {

// The pipe's write end, for the handler; -1 when no instance exists. A
// lock-free atomic, so reading it in the handler is async-signal-safe.
std::atomic<int> g_write_fd{-1};
static_assert(std::atomic<int>::is_always_lock_free);

// Byte written by the destructor to end the thread (no signal is 0).
constexpr unsigned char kQuit = 0;

void OnSignal(int signal) {
  const int saved_errno = errno;
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signal);
    // Non-blocking: with the pipe full, signals are already waiting.
    (void)!write(fd, &byte, 1);
  }
  errno = saved_errno;
}

void SetHandler(int signal, void (*handler)(int)) {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(signal, &action, nullptr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<StopSignals>> StopSignals::Start() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  int none = -1;
  if (!g_write_fd.compare_exchange_strong(none, fds[1])) {
    close(fds[0]);
    close(fds[1]);
    return absl::FailedPreconditionError("StopSignals is already started");
  }
  std::unique_ptr<StopSignals> signals(new StopSignals(fds[0], fds[1]));
  signals->thread_ = std::thread([s = signals.get()] { s->Loop(); });
  SetHandler(SIGINT, OnSignal);
  SetHandler(SIGTERM, OnSignal);
  return signals;
}

StopSignals::~StopSignals() {
  SetHandler(SIGINT, SIG_DFL);
  SetHandler(SIGTERM, SIG_DFL);
  g_write_fd = -1;
  const unsigned char quit = kQuit;
  while (write(write_fd_, &quit, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  close(read_fd_);
  close(write_fd_);
}

void StopSignals::SetAction(std::function<void(int)> action) {
  absl::MutexLock lock(&mu_);
  action_ = std::move(action);
}

void StopSignals::Loop() {
  for (;;) {
    unsigned char byte = 0;
    const ssize_t n = read(read_fd_, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == kQuit) return;
    const int signal = byte;
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
    SetHandler(signal, SIG_DFL);
    raise(signal);
  }
}

}  // namespace maximus::trainer
