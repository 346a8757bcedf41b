// TokenizerService server:
//   server --tokenizer=PATH/tokenizer.json [--port=50051 | --listen=HOST:PORT]
//          [--max_request_mb=256] [--tls_cert=PEM --tls_key=PEM [--tls_client_ca=PEM]]
//          [--token_file=FILE]
// Listens on loopback unless --listen or --host names another address; stops
// gracefully on SIGTERM or SIGINT. See rpc/server_flags.h for TLS and tokens.

#include <string.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "rpc/grpc_server.h"
#include "rpc/server_flags.h"
#include "tokenizer/tokenizer_service.h"

ABSL_FLAG(std::string, tokenizer, "", "Path of the tokenizer.json to serve");
ABSL_FLAG(int, port, 50051, "TCP port (0: any free port, printed on start)");
ABSL_FLAG(std::string, host, maximus::rpc::kLoopbackHost, "Host to listen on, with --port");
ABSL_FLAG(std::string, listen, "", "HOST:PORT (or PORT) to listen on; overrides --host and --port");
ABSL_FLAG(int64_t, max_request_mb, 256, "Largest request (or stream message) accepted, MiB");
ABSL_FLAG(int64_t, max_response_mb, 64,
          "Largest response (or stream message) sent, MiB; larger ones are RESOURCE_EXHAUSTED");

// Below gRPC's 2 GiB message bound, with room for the transport's margin.
constexpr int64_t kMaxRequestMebibytes = 2000;

int main(int argc, char** argv) {
  maximus::rpc::SetServerUsage(
      "TokenizerService: encodes and decodes text with a tokenizer.json.\n"
      "  server --tokenizer=PATH/tokenizer.json [--port=50051 | --listen=HOST:PORT]",
      {"tokenizer/server.cc"});
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) {
    absl::FPrintF(stderr, "server: --tokenizer=PATH is required\n");
    return 2;
  }
  const std::string address = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::ListenAddress(absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_port),
                                            absl::GetFlag(FLAGS_host)));
  const int64_t max_request_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_request_mb", absl::GetFlag(FLAGS_max_request_mb),
                                            1, kMaxRequestMebibytes));
  const int64_t max_response_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_response_mb", absl::GetFlag(FLAGS_max_response_mb),
                                            1, kMaxRequestMebibytes));
  maximus::rpc::ServerSecurity security =
      maximus::rpc::FlagValueOrExit("server", maximus::rpc::ServerSecurityFromFlags());
  const absl::Time start = absl::Now();
  auto tokenizer = maximus::tokenizer::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    absl::FPrintF(stderr, "server: %s\n", tokenizer.status().ToString());
    return 1;
  }
  const double load_s = absl::ToDoubleSeconds(absl::Now() - start);
  const std::string fingerprint = (*tokenizer)->fingerprint();
  const int vocab_size = (*tokenizer)->vocab_size();
  maximus::tokenizer::TokenizerServer::Options options;
  options.address = address;
  options.max_request_bytes = max_request_bytes;
  options.max_response_bytes = max_response_bytes;
  options.security = std::move(security);
  auto server = maximus::tokenizer::TokenizerServer::Start(*std::move(tokenizer), options);
  if (!server.ok()) {
    absl::FPrintF(stderr, "server: %s\n", server.status().ToString());
    return 1;
  }
  absl::PrintF("tokenizer server: port %d, on %s%s, vocab %d, sha256 %s, loaded in %.2f s\n",
               (*server)->port(), (*server)->address(),
               maximus::rpc::SecurityNote(options.security), vocab_size, fingerprint, load_s);
  std::fflush(stdout);
  const absl::StatusOr<int> signal = (*server)->WaitForTerminationSignal();
  if (!signal.ok()) {
    absl::FPrintF(stderr, "server: %s\n", signal.status().ToString());
    return 1;
  }
  absl::PrintF("tokenizer server: %s, shut down\n", strsignal(*signal));
  return 0;
}
