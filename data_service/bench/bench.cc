// Data service throughput: ingestion MB/s with the real Gemma 3 tokenizer
// (split into tokenisation and store time), then packed-batch streaming
// tokens/s at batch x seq_len: in-process, from one DataService over
// loopback gRPC, and merged from two servers each serving half the shards.
//
//   bazel run //data_service:bench [-- --corpus=DIR_OR_FILE,... --seconds=2]
//
// The servers are separate processes (//data_service:server), as deployed.
//
// The default corpus is the Python 3.11 documentation (one file, split into
// paragraphs); tools/fetch_corpus.sh builds a larger one.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "data_service/embedded_data_source.h"
#include "data_service/ingest.h"
#include "data_service/remote_data_source.h"
#include "data_service/server_process.h"
#include "data_service/store_opener.h"
#include "tokenizer/end_of_text.h"

ABSL_FLAG(std::string, tokenizer, "external/tokenizers/gemma3/tokenizer.json",
          "tokenizer.json to ingest with");
ABSL_FLAG(std::string, corpus, "external/english_corpus/english.txt",
          "Files or directories to ingest, comma-separated");
ABSL_FLAG(std::string, text_split, "paragraph", "Text documents: file or paragraph");
ABSL_FLAG(std::string, server, "data_service/server", "The DataService server binary");
ABSL_FLAG(std::string, work_dir, "", "Where the store is built (default: a temporary directory)");
ABSL_FLAG(int, shards, 4, "Shards of the store");
ABSL_FLAG(int, batch, 8, "Rows per batch");
ABSL_FLAG(int, seq_len, 2048, "Tokens per row, minus one");
ABSL_FLAG(double, seconds, 2, "Length of each timed streaming run");
ABSL_FLAG(std::string, streams, "embedded,one,two",
          "Streaming configurations to time: embedded, one (server), two (servers)");
ABSL_FLAG(int, repeats, 5, "Timed streaming runs per configuration (the median is reported)");

namespace maximus::data {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Check(const absl::Status& s, absl::string_view what) {
  if (!s.ok()) absl::FPrintF(stderr, "bench: %s: %s\n", what, s.ToString());
  return s;
}

StreamBatchesRequest Request() {
  StreamBatchesRequest r;
  r.mutable_selection()->set_split(SPLIT_TRAIN);
  r.mutable_selection()->set_seed(1);
  r.mutable_selection()->set_world_size(1);
  r.mutable_selection()->set_validation_fraction(0.01);
  r.set_seq_len(absl::GetFlag(FLAGS_seq_len));
  r.set_batch_size(absl::GetFlag(FLAGS_batch));
  return r;
}

// Median tokens/s of `repeats` runs, each reading one stream for `seconds`
// (continuing where the previous run stopped).
absl::StatusOr<double> StreamRate(DataSource* source) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<BatchStream> stream, source->OpenStream(Request()));
  PackedBatch batch;
  // Warm up: the first batches pay for connection setup and the epoch plan.
  for (int i = 0; i < 20; ++i) {
    MAXIMUS_RETURN_IF_ERROR(stream->Next(&batch).status());
  }
  std::vector<double> rates;
  for (int run = 0; run < absl::GetFlag(FLAGS_repeats); ++run) {
    const Clock::time_point start = Clock::now();
    int64_t tokens = 0;
    double elapsed = 0;
    while (elapsed < absl::GetFlag(FLAGS_seconds)) {
      MAXIMUS_RETURN_IF_ERROR(stream->Next(&batch).status());
      tokens += int64_t{batch.rows()} * batch.row_length();
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    }
    rates.push_back(tokens / elapsed);
  }
  return Median(rates);
}

int Main() {
  const std::string work_dir =
      absl::GetFlag(FLAGS_work_dir).empty()
          ? (std::filesystem::temp_directory_path() / "maximus-data-bench").string()
          : absl::GetFlag(FLAGS_work_dir);
  std::filesystem::remove_all(work_dir);
  auto loaded = tokenizer::Tokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer));
  if (!Check(loaded.status(), "loading the tokenizer").ok()) return 1;
  std::shared_ptr<const tokenizer::Tokenizer> tok(*std::move(loaded));
  auto eos = tokenizer::EndOfTextId(*tok);
  if (!Check(eos.status(), "end-of-text").ok()) return 1;
  auto split = ParseTextSplit(absl::GetFlag(FLAGS_text_split));
  if (!Check(split.status(), "--text_split").ok()) return 1;
  const std::vector<std::string> corpus = absl::StrSplit(absl::GetFlag(FLAGS_corpus), ',');
  const unsigned cores = std::thread::hardware_concurrency();

  // Ingestion.
  IngestSummary summary;
  {
    auto store = OpenOrCreateStore(work_dir, *tok, absl::GetFlag(FLAGS_shards));
    if (!Check(store.status(), "creating the store").ok()) return 1;
    IngestOptions options;
    options.text_split = *split;
    options.progress = IngestOptions::Progress::kOff;
    Ingestor ingestor(tok.get(), store->get(), options);
    if (!Check(ingestor.IngestPaths(corpus), "ingesting").ok()) return 1;
    summary = ingestor.summary();
  }
  const double mb = summary.bytes / 1e6;
  absl::PrintF("corpus: %s\n", absl::GetFlag(FLAGS_corpus));
  absl::PrintF("%d files, %.2f MB, %d documents, %d tokens (%.0f per document); %u cores\n\n",
               summary.files, mb, summary.documents, summary.tokens,
               static_cast<double>(summary.tokens) / std::max<int64_t>(1, summary.documents),
               cores);
  absl::PrintF("| ingestion | seconds | MB/s | tokens/s |\n|---|---:|---:|---:|\n");
  auto row = [&](const char* name, double seconds) {
    absl::PrintF("| %s | %.2f | %.2f | %.2fM |\n", name, seconds, mb / seconds,
                 summary.tokens / seconds / 1e6);
  };
  row("whole run (read, tokenise, store)", summary.seconds);
  row("tokenising only", summary.tokenize_seconds);
  row("store only (ids, RocksDB, sync)", summary.store_seconds);
  absl::PrintF("\nstore share of the run: %.1f%%, tokeniser share: %.1f%%\n\n",
               100 * summary.store_seconds / summary.seconds,
               100 * summary.tokenize_seconds / summary.seconds);

  // Streaming.
  const int64_t batch_tokens =
      int64_t{absl::GetFlag(FLAGS_batch)} * (absl::GetFlag(FLAGS_seq_len) + 1);
  absl::PrintF("| streaming, batch %d x %d (%d tokens) | tokens/s | MB/s of tokens |\n",
               absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_seq_len) + 1, batch_tokens);
  absl::PrintF("|---|---:|---:|\n");
  auto report = [](const char* name, const absl::StatusOr<double>& rate) {
    if (!rate.ok()) {
      absl::FPrintF(stderr, "bench: %s: %s\n", name, rate.status().ToString());
      return false;
    }
    absl::PrintF("| %s | %.1fM | %.0f |\n", name, *rate / 1e6, *rate * 4 / 1e6);
    return true;
  };
  const std::string streams = absl::GetFlag(FLAGS_streams);
  auto wanted = [&streams](absl::string_view name) {
    for (absl::string_view s : absl::StrSplit(streams, ',')) {
      if (s == name) return true;
    }
    return false;
  };
  if (wanted("embedded")) {
    auto store = OpenOrCreateStore(work_dir, *tok, 0);
    if (!Check(store.status(), "opening the store").ok()) return 1;
    auto source = EmbeddedDataSource::Open(*std::move(store), *eos);
    if (!Check(source.status(), "embedded source").ok()) return 1;
    if (!report("in-process (embedded)", StreamRate(source->get()))) return 1;
  }
  // Servers run as separate processes, as they are deployed.
  const std::vector<std::string> server_args = {"--data_dir=" + work_dir,
                                                "--tokenizer=" + absl::GetFlag(FLAGS_tokenizer)};
  if (wanted("one")) {
    auto server = ServerProcess::Start(absl::GetFlag(FLAGS_server), server_args);
    if (!Check(server.status(), "starting the server").ok()) return 1;
    auto source = RemoteDataSource::Connect({server->address()});
    if (!Check(source.status(), "connecting").ok()) return 1;
    if (!report("one DataService, loopback gRPC", StreamRate(source->get()))) return 1;
  }
  if (wanted("two")) {
    const int shards = absl::GetFlag(FLAGS_shards);
    std::vector<ServerProcess> servers;
    std::vector<std::string> addresses;
    for (int half = 0; half < 2; ++half) {
      std::vector<std::string> args = server_args;
      args.push_back(
          absl::StrCat("--serve_shards=", half * shards / 2, "-", (half + 1) * shards / 2 - 1));
      auto server = ServerProcess::Start(absl::GetFlag(FLAGS_server), args);
      if (!Check(server.status(), "starting a server").ok()) return 1;
      addresses.push_back(server->address());
      servers.push_back(*std::move(server));
    }
    auto source = RemoteDataSource::Connect(addresses);
    if (!Check(source.status(), "connecting").ok()) return 1;
    if (!report("two DataServices (half the shards each), merged", StreamRate(source->get()))) {
      return 1;
    }
  }
  std::filesystem::remove_all(work_dir);
  return 0;
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::data::Main();
}
