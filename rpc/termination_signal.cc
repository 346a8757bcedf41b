#include "rpc/termination_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::rpc {
namespace {

constexpr int kTerminationSignals[] = {SIGTERM, SIGINT};

// The pipe's ends. The handler reads only the write end, through a lock-free
// atomic.
static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<int> g_signal_write_fd{-1};
int g_signal_read_fd = -1;

void OnTerminationSignal(int signal) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal);
  const int fd = g_signal_write_fd.load(std::memory_order_relaxed);
  // Non-blocking: with the pipe full, one more byte is not needed.
  if (fd >= 0) (void)!write(fd, &byte, 1);
  errno = saved_errno;
}

absl::Status ErrnoError(absl::string_view call) {
  return absl::InternalError(absl::StrCat(call, ": ", strerror(errno)));
}

absl::Status CreateSignalPipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2 for the termination signal");
  // The handler must never block; the reader does.
  if (fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) return ErrnoError("fcntl O_NONBLOCK");
  g_signal_read_fd = fds[0];
  g_signal_write_fd.store(fds[1]);
  return absl::OkStatus();
}

}  // namespace

absl::Status InstallTerminationSignalHandlers() {
  // Created once, before any handler can write to it.
  static const absl::Status* const pipe_created = new absl::Status(CreateSignalPipe());
  if (!pipe_created->ok()) return *pipe_created;
  struct sigaction action = {};
  action.sa_handler = OnTerminationSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int signal : kTerminationSignals) sigaddset(&action.sa_mask, signal);
  for (int signal : kTerminationSignals) {
    if (sigaction(signal, &action, nullptr) != 0) return ErrnoError("sigaction");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> WaitForTerminationSignal() {
  MAXIMUS_RETURN_IF_ERROR(InstallTerminationSignalHandlers());
  unsigned char byte = 0;
  ssize_t got;
  do {
    got = read(g_signal_read_fd, &byte, 1);
  } while (got < 0 && errno == EINTR);
  if (got != 1) return ErrnoError("read of the termination signal pipe");
  for (int signal : kTerminationSignals) ::signal(signal, SIG_DFL);
  return static_cast<int>(byte);
}

}  // namespace maximus::rpc
