// DataService server:
//   server --data_dir=DIR --tokenizer=PATH/tokenizer.json
//          [--port=50052 | --listen=HOST:PORT] [--shards=N] [--serve_shards=all|0,2,4-7]
// Creates a store of --shards shards in --data_dir if there is none. Several
// servers can serve disjoint --serve_shards of one store; clients are given
// all their addresses. Listens on loopback unless --listen or --host names
// another address; stops gracefully on SIGTERM or SIGINT. TLS, mutual TLS
// and a bearer token: --tls_cert, --tls_key, --tls_client_ca, --token_file
// (rpc/server_flags.h).

#include <string.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "data_service/data_service_impl.h"
#include "data_service/store_opener.h"
#include "rpc/grpc_server.h"
#include "rpc/server_flags.h"

ABSL_FLAG(std::string, data_dir, "", "Directory of the token store (created if absent)");
ABSL_FLAG(std::string, tokenizer, "", "Path of the store's tokenizer.json");
ABSL_FLAG(int, port, 50052, "TCP port (0: any free port, printed on start)");
ABSL_FLAG(std::string, host, maximus::rpc::kLoopbackHost, "Host to listen on, with --port");
ABSL_FLAG(std::string, listen, "", "HOST:PORT (or PORT) to listen on; overrides --host and --port");
ABSL_FLAG(int, shards, 0, "Shard count: of a new store (0: 4), or checked against an existing one");
ABSL_FLAG(std::string, serve_shards, "all", "Shards to serve, e.g. 0,1 or 4-7");
ABSL_FLAG(int64_t, max_request_mb, 64, "Largest Ingest message accepted, MiB");
ABSL_FLAG(int64_t, max_response_mb, 64,
          "Largest StreamBatches message sent, MiB; larger batches are RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_streams, 128, "Streaming calls served at once; more are RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_bytes_in_flight_mb, 1024,
          "Stream messages built but not yet sent, all streams together, MiB");
ABSL_FLAG(int64_t, cache_mb, 4096,
          "Serve documents from memory when the served shards take at most this many MiB");

// Below gRPC's 2 GiB message bound, with room for the transport's margin.
constexpr int64_t kMaxRequestMebibytes = 2000;
// 16 TiB: far beyond any machine, far below overflowing when made bytes.
constexpr int64_t kMaxCacheMebibytes = int64_t{1} << 24;

int main(int argc, char** argv) {
  maximus::rpc::SetServerUsage(
      "DataService: sharded token store and packed-batch streaming.\n"
      "  server --data_dir=DIR --tokenizer=tokenizer.json [--port=50052 | --listen=HOST:PORT] "
      "[--shards=N] [--serve_shards=all]",
      {"data_service/server.cc"});
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_data_dir).empty() || absl::GetFlag(FLAGS_tokenizer).empty()) {
    absl::FPrintF(stderr, "server: --data_dir and --tokenizer are required (see --help)\n");
    return 2;
  }
  absl::StatusOr<std::vector<int>> shards =
      maximus::data::ParseShardList(absl::GetFlag(FLAGS_serve_shards));
  if (!shards.ok()) {
    absl::FPrintF(stderr, "server: --serve_shards: %s\n", shards.status().message());
    return 2;
  }
  const std::string address = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::ListenAddress(absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_port),
                                            absl::GetFlag(FLAGS_host)));
  const int64_t max_request_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_request_mb", absl::GetFlag(FLAGS_max_request_mb),
                                            1, kMaxRequestMebibytes));
  const int64_t cache_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("cache_mb", absl::GetFlag(FLAGS_cache_mb), 0,
                                            kMaxCacheMebibytes));
  const int64_t max_response_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_response_mb", absl::GetFlag(FLAGS_max_response_mb),
                                            1, kMaxRequestMebibytes));
  const int64_t max_bytes_in_flight = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_bytes_in_flight_mb",
                                            absl::GetFlag(FLAGS_max_bytes_in_flight_mb), 1,
                                            kMaxCacheMebibytes));
  if (absl::GetFlag(FLAGS_max_streams) < 1 || absl::GetFlag(FLAGS_max_streams) > 100000) {
    absl::FPrintF(stderr, "server: --max_streams: %d is not in [1, 100000]\n",
                  absl::GetFlag(FLAGS_max_streams));
    return 2;
  }
  if (absl::GetFlag(FLAGS_shards) < 0) {
    absl::FPrintF(stderr, "server: --shards: %d is negative\n", absl::GetFlag(FLAGS_shards));
    return 2;
  }
  maximus::rpc::ServerSecurity security =
      maximus::rpc::FlagValueOrExit("server", maximus::rpc::ServerSecurityFromFlags());
  const absl::Time start = absl::Now();
  auto tokenizer = maximus::tokenizer::Tokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer));
  if (!tokenizer.ok()) {
    absl::FPrintF(stderr, "server: %s\n", tokenizer.status().ToString());
    return 1;
  }
  maximus::data::DataServer::Options options;
  options.address = address;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.shards = *shards;
  options.num_shards = absl::GetFlag(FLAGS_shards);
  options.max_request_bytes = max_request_bytes;
  options.cache_bytes = cache_bytes;
  options.max_response_bytes = max_response_bytes;
  options.max_streams = static_cast<int>(absl::GetFlag(FLAGS_max_streams));
  options.max_bytes_in_flight = max_bytes_in_flight;
  options.security = std::move(security);
  auto server = maximus::data::DataServer::Start(
      std::shared_ptr<const maximus::tokenizer::Tokenizer>(*std::move(tokenizer)), options);
  if (!server.ok()) {
    absl::FPrintF(stderr, "server: %s\n", server.status().ToString());
    return 1;
  }
  const maximus::data::TokenStore& store = (*server)->store();
  absl::PrintF(
      "data server: port %d, on %s%s, %s, shards %s of %d, %d documents (%.1f MB in memory), "
      "ready in %.2f s\n",
      (*server)->port(), (*server)->address(), maximus::rpc::SecurityNote(options.security),
      options.data_dir, absl::StrJoin(store.open_shards(), ","), store.num_shards(),
      (*server)->documents(), (*server)->cached_bytes() / 1e6,
      absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  const absl::StatusOr<int> signal = (*server)->WaitForTerminationSignal();
  if (!signal.ok()) {
    absl::FPrintF(stderr, "server: %s\n", signal.status().ToString());
    return 1;
  }
  absl::PrintF("data server: %s, shut down\n", strsignal(*signal));
  return 0;
}
