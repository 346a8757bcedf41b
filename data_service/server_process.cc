#include "data_service/server_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace maximus::data {

absl::StatusOr<ServerProcess> ServerProcess::Start(const std::string& binary,
                                                   const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe failed");
  std::vector<std::string> argv_strings = {binary, "--port=0", "--host=127.0.0.1"};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string line;
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  close(fds[0]);
  ServerProcess process(pid, 0);
  const std::string marker = "port ";
  const size_t at = line.find(marker);
  const size_t end = at == std::string::npos ? at : line.find(',', at);
  if (at == std::string::npos ||
      !absl::SimpleAtoi(line.substr(at + marker.size(), end - at - marker.size()),
                        &process.port_)) {
    process.Stop(SIGKILL);
    return absl::UnavailableError(
        absl::StrCat(binary, " did not announce its port (it said \"", line, "\")"));
  }
  return process;
}

ServerProcess& ServerProcess::operator=(ServerProcess&& other) noexcept {
  if (this != &other) {
    Stop(SIGTERM);
    pid_ = other.pid_;
    port_ = other.port_;
    other.pid_ = -1;
  }
  return *this;
}

int ServerProcess::Stop(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

}  // namespace maximus::data
