// health_probe: asks a server's grpc.health.v1.Health/Check whether it is
// SERVING, with the same TLS and bearer-token settings as its clients. Exit
// status 0 when it is, 1 when it answers otherwise or not within --timeout_s,
// 2 on bad flags. Container health checks and scripts that wait for a
// server run it.
//
//   health_probe --addr=127.0.0.1:50051 [--tls_ca=ca.pem --token_file=token]
//                [--tls_cert=client.pem --tls_key=client.key] [--tls_server_name=NAME]
//                [--service=NAME] [--timeout_s=3]

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "rpc/client_security.h"

ABSL_FLAG(std::string, addr, "", "HOST:PORT of the server");
ABSL_FLAG(std::string, service, "", "Service name to check (empty: the whole server)");
ABSL_FLAG(std::string, tls_ca, "", "PEM of the CA that signed the server's certificate (TLS)");
ABSL_FLAG(std::string, tls_cert, "", "This client's certificate (PEM), for mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "The key (PEM) of --tls_cert");
ABSL_FLAG(std::string, token_file, "", "File holding the bearer token (needs TLS)");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate is checked against instead of the dialled host");
ABSL_FLAG(double, timeout_s, 3, "Deadline of the check, seconds (0.1 to 600)");

namespace {

// The serialized HealthCheckRequest: field 1 (service) when not empty.
std::string CheckRequest(const std::string& service) {
  if (service.empty()) return "";
  std::string bytes = "\x0a";
  size_t n = service.size();
  do {
    bytes.push_back(static_cast<char>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
    n >>= 7;
  } while (n != 0);
  return bytes + service;
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Exits 0 when the gRPC server at --addr reports SERVING to a health check.");
  absl::ParseCommandLine(argc, argv);
  const std::string addr = absl::GetFlag(FLAGS_addr);
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (addr.empty()) {
    absl::FPrintF(stderr, "health_probe: --addr is required\n");
    return 2;
  }
  if (!(timeout_s >= 0.1 && timeout_s <= 600)) {
    absl::FPrintF(stderr, "health_probe: --timeout_s: %g is not in [0.1, 600]\n", timeout_s);
    return 2;
  }
  absl::StatusOr<maximus::rpc::ClientSecurity> security =
      maximus::rpc::ClientSecurity::FromFiles(absl::GetFlag(FLAGS_tls_ca),
                                              absl::GetFlag(FLAGS_tls_cert),
                                              absl::GetFlag(FLAGS_tls_key),
                                              absl::GetFlag(FLAGS_token_file));
  if (!security.ok()) {
    absl::FPrintF(stderr, "health_probe: %s\n", security.status().message());
    return 2;
  }
  security->tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      maximus::rpc::MakeChannel(addr, *security);
  if (!channel.ok()) {
    absl::FPrintF(stderr, "health_probe: %s\n", channel.status().message());
    return 2;
  }
  grpc::GenericStub stub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
  grpc::Slice request_slice(CheckRequest(absl::GetFlag(FLAGS_service)));
  grpc::ByteBuffer request(&request_slice, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status status) { done.set_value(status); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    absl::FPrintF(stderr, "health_probe: %s: %s (code %d)\n", addr, status.error_message(),
                  static_cast<int>(status.error_code()));
    return 1;
  }
  // HealthCheckResponse{status: SERVING = 1} is the bytes 08 01.
  if (Bytes(response) != std::string("\x08\x01", 2)) {
    absl::FPrintF(stderr, "health_probe: %s: not serving\n", addr);
    return 1;
  }
  absl::PrintF("health_probe: %s: serving\n", addr);
  return 0;
}
