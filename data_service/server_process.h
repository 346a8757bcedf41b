// Runs the DataService server binary as a child process, for tests and
// benchmarks that need a real, separately scheduled (and killable) server.

#ifndef MAXIMUS_DATA_SERVICE_SERVER_PROCESS_H_
#define MAXIMUS_DATA_SERVICE_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace maximus::data {

class ServerProcess {
 public:
  // Starts `binary --port=0 --host=127.0.0.1 ARGS...` and waits for the line
  // that announces its port.
  static absl::StatusOr<ServerProcess> Start(const std::string& binary,
                                             const std::vector<std::string>& args);

  ServerProcess(ServerProcess&& other) noexcept : pid_(other.pid_), port_(other.port_) {
    other.pid_ = -1;
  }
  ServerProcess& operator=(ServerProcess&& other) noexcept;
  ~ServerProcess() { Stop(kTerminate); }

  // Sends `signal` and waits; returns the wait status (-1 if not running).
  int Stop(int signal);

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const;

 private:
  static constexpr int kTerminate = 15;  // SIGTERM
  ServerProcess(pid_t pid, int port) : pid_(pid), port_(port) {}

  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_SERVER_PROCESS_H_
