// EmbeddingService server:
//   server --data_dir=DIR [--checkpoint=DIR [--tokenizer=PATH/tokenizer.json]] [--dim=D]
//          [--port=50053 | --listen=HOST:PORT] [--shard=I --num_shards=N]
// Opens (or creates) the index in --data_dir and rebuilds its search
// structure. With --checkpoint (ours or a Hugging Face Gemma 3 folder) it
// embeds texts too; without one it holds vectors of --dim dimensions. With
// --num_shards=N it holds only the ids that hash to --shard and refuses
// others; clients (embedding_client.h) fan out over all N. Listens on
// loopback unless --listen or --host names another address; stops
// gracefully on SIGTERM or SIGINT. TLS, mutual TLS and a bearer token:
// --tls_cert, --tls_key, --tls_client_ca, --token_file (rpc/server_flags.h).

#include <string.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "embedding_service/embedding_service_impl.h"
#include "rpc/grpc_server.h"
#include "rpc/server_flags.h"
#include "trainer/backend/select_backend.h"

ABSL_FLAG(std::string, data_dir, "", "Directory of the vector index (created if absent)");
ABSL_FLAG(std::string, checkpoint, "",
          "Checkpoint directory (ours or a Hugging Face Gemma 3 folder) to embed texts with; "
          "empty: vectors only");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json of the checkpoint (default: its own)");
ABSL_FLAG(std::string, backend, "auto", maximus::trainer::kBackendFlagHelp);
ABSL_FLAG(int64_t, dim, 0, "Dimension of a new index without --checkpoint");
ABSL_FLAG(std::string, vector_type, "fp32", "Element type of a new index: fp32 or fp16");
ABSL_FLAG(int, port, 50053, "TCP port (0: any free port, printed on start)");
ABSL_FLAG(std::string, host, maximus::rpc::kLoopbackHost, "Host to listen on, with --port");
ABSL_FLAG(std::string, listen, "", "HOST:PORT (or PORT) to listen on; overrides --host and --port");
ABSL_FLAG(int, shard, 0, "The shard of ids this server holds, with --num_shards");
ABSL_FLAG(int, num_shards, 1, "Servers the ids are spread over (by CRC-32C of the id)");
ABSL_FLAG(int64_t, max_k, 1000, "Largest k of a search");
ABSL_FLAG(int64_t, max_oversample, 100, "Largest oversample of a search");
ABSL_FLAG(int64_t, max_batch, 4096, "Vectors of one Upsert message or Delete call");
ABSL_FLAG(int64_t, max_texts, 64, "Texts of one Embed call or Upsert message");
ABSL_FLAG(int64_t, max_text_bytes, 65536, "Bytes of one text");
ABSL_FLAG(int64_t, max_tokens, 512, "Tokens of a text that are embedded (the rest is not read)");
ABSL_FLAG(int64_t, batch_tokens, 8192, "Padded tokens of one forward pass of the embedder");
ABSL_FLAG(int64_t, max_request_mb, 64, "Largest request message accepted, MiB");

namespace {

constexpr int64_t kMaxRequestMebibytes = 2000;

// The flag's value when in [low, high]; exits with a usage error otherwise.
int64_t BoundedFlag(const char* name, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    absl::FPrintF(stderr, "server: --%s: %d is not in [%d, %d]\n", name, value, low, high);
    std::exit(2);
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  maximus::rpc::SetServerUsage(
      "EmbeddingService: Matryoshka embeddings and coarse-to-fine vector search.\n"
      "  server --data_dir=DIR [--checkpoint=DIR [--tokenizer=tokenizer.json]] [--dim=D] "
      "[--port=50053 | --listen=HOST:PORT] [--shard=I --num_shards=N]",
      {"embedding_service/server.cc"});
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_data_dir).empty()) {
    absl::FPrintF(stderr, "server: --data_dir is required (see --help)\n");
    return 2;
  }
  namespace embedding = maximus::embedding;
  embedding::EmbeddingServer::Options options;
  options.address = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::ListenAddress(absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_port),
                                            absl::GetFlag(FLAGS_host)));
  options.max_request_bytes = maximus::rpc::FlagValueOrExit(
      "server", maximus::rpc::MebibytesFlag("max_request_mb", absl::GetFlag(FLAGS_max_request_mb),
                                            1, kMaxRequestMebibytes));
  options.vector_type = maximus::rpc::FlagValueOrExit(
      "server", embedding::ParseElementType(absl::GetFlag(FLAGS_vector_type), "--vector_type"));
  if (absl::Status s = maximus::trainer::ValidateBackendName(absl::GetFlag(FLAGS_backend));
      !s.ok()) {
    absl::FPrintF(stderr, "server: %s\n", s.message());
    return 2;
  }
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.checkpoint = absl::GetFlag(FLAGS_checkpoint);
  options.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  options.embedder.backend = absl::GetFlag(FLAGS_backend);
  options.dims = BoundedFlag("dim", absl::GetFlag(FLAGS_dim), 0, embedding::kMaxDims);
  options.shard.count =
      static_cast<int>(BoundedFlag("num_shards", absl::GetFlag(FLAGS_num_shards), 1, 4096));
  options.shard.index = static_cast<int>(
      BoundedFlag("shard", absl::GetFlag(FLAGS_shard), 0, options.shard.count - 1));
  options.index_limits.max_k = BoundedFlag("max_k", absl::GetFlag(FLAGS_max_k), 1, 100000);
  options.index_limits.max_oversample =
      BoundedFlag("max_oversample", absl::GetFlag(FLAGS_max_oversample), 1, 10000);
  options.index_limits.max_batch =
      BoundedFlag("max_batch", absl::GetFlag(FLAGS_max_batch), 1, 1000000);
  options.limits.max_texts = BoundedFlag("max_texts", absl::GetFlag(FLAGS_max_texts), 1, 100000);
  options.limits.max_text_bytes =
      BoundedFlag("max_text_bytes", absl::GetFlag(FLAGS_max_text_bytes), 1, 1 << 30);
  options.embedder.max_tokens =
      BoundedFlag("max_tokens", absl::GetFlag(FLAGS_max_tokens), 1, 1 << 20);
  options.embedder.batch_tokens =
      BoundedFlag("batch_tokens", absl::GetFlag(FLAGS_batch_tokens),
                  options.embedder.max_tokens + 1, int64_t{1} << 30);
  options.security = maximus::rpc::FlagValueOrExit("server", maximus::rpc::ServerSecurityFromFlags());
  const absl::Time start = absl::Now();
  auto server = embedding::EmbeddingServer::Start(options);
  if (!server.ok()) {
    absl::FPrintF(stderr, "server: %s\n", server.status().ToString());
    return 1;
  }
  const embedding::EmbeddingIndex& index = (*server)->index();
  absl::PrintF(
      "embedding server: port %d, on %s%s, %s, %d %s vectors of %d dimensions, shard %d of %d, "
      "%s, stage 1 on %s, ready in %.2f s\n",
      (*server)->port(), (*server)->address(), maximus::rpc::SecurityNote(options.security),
      options.data_dir, index.vectors().size(), embedding::ElementTypeName(index.config().type),
      index.config().dims, index.shard().index, index.shard().count,
      (*server)->embedder() != nullptr
          ? absl::StrCat("embedding with ", options.checkpoint, " (",
                         (*server)->embedder()->backend_description(), ")")
          : std::string("no checkpoint (vectors only)"),
      (*server)->scan_device(), absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  const absl::StatusOr<int> signal = (*server)->WaitForTerminationSignal();
  if (!signal.ok()) {
    absl::FPrintF(stderr, "server: %s\n", signal.status().ToString());
    return 1;
  }
  absl::PrintF("embedding server: %s, shut down\n", strsignal(*signal));
  return 0;
}
