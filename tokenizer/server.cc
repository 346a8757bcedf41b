// TokenizerService server:
//   server --tokenizer=PATH/tokenizer.json [--port=50051] [--max_request_mb=256]

#include <csignal>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tokenizer/tokenizer_service.h"

ABSL_FLAG(std::string, tokenizer, "", "Path of the tokenizer.json to serve");
ABSL_FLAG(int, port, 50051, "TCP port (0: any free port, printed on start)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on");
ABSL_FLAG(int64_t, max_request_mb, 256, "Largest request (or stream message) accepted, MiB");

namespace {

volatile std::sig_atomic_t g_stop = 0;

void Stop(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) {
    absl::FPrintF(stderr, "server: --tokenizer=PATH is required\n");
    return 2;
  }
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
  options.address = absl::StrFormat("%s:%d", absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port));
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_mb) << 20;
  auto server = maximus::tokenizer::TokenizerServer::Start(*std::move(tokenizer), options);
  if (!server.ok()) {
    absl::FPrintF(stderr, "server: %s\n", server.status().ToString());
    return 1;
  }
  std::signal(SIGINT, Stop);
  std::signal(SIGTERM, Stop);
  absl::PrintF("tokenizer server: port %d, vocab %d, sha256 %s, loaded in %.2f s\n",
               (*server)->port(), vocab_size, fingerprint, load_s);
  std::fflush(stdout);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*server)->Shutdown();
  return 0;
}
