// Streaming ingestion of text and JSONL files into a TokenStore.
//
// Inputs are read a line (or, for one-document-per-file text, a file) at a
// time and gathered into batches; a batch is tokenised on the shared thread
// pool and written with one TokenStore::AddDocuments call, whose synced write
// makes it the unit of acknowledgement. Memory is bounded by one batch plus
// one document, whatever the input size.
//
// Formats:
//   text   --text_split=file: one document per file (files larger than
//          max_document_bytes are reported and skipped). --text_split=paragraph:
//          documents separated by one or more blank (empty or white-space)
//          lines; a paragraph's lines are joined with "\n" (CRLF becomes LF)
//          and it has no trailing newline.
//   jsonl  one JSON object per line: {"text": "..."} (field name configurable)
//          is a text document; {"messages": [{"role", "content"}, ...]} is a
//          Gemma chat document (see chat_template.h). The text field wins if
//          an object has both. Empty lines are ignored.
// A leading UTF-8 byte order mark is dropped. A document that is empty or
// only white space is a bad line.
//
// Bad input (broken JSON, a missing or non-string field, ill-formed UTF-8,
// an unknown role, an empty or oversized document) is reported to stderr as
// "file:line: reason", counted, and skipped; with `strict` ingestion stops
// there instead (documents before it are still written).

#ifndef MAXIMUS_DATA_SERVICE_INGEST_H_
#define MAXIMUS_DATA_SERVICE_INGEST_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "data_service/chat_template.h"
#include "data_service/token_store.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {

struct IngestOptions {
  enum class Format { kAuto, kText, kJsonl };  // kAuto: .jsonl/.json -> kJsonl, else kText.
  enum class TextSplit { kFile, kParagraph };
  enum class Progress { kAuto, kOn, kOff };  // kAuto: a bar when stderr is a terminal.

  Format format = Format::kAuto;
  TextSplit text_split = TextSplit::kFile;
  std::string text_field = "text";
  // Chat documents train on user turns too (ChatLossMode::kAllTurns).
  bool train_on_user = false;
  // Stop at the first bad line (IngestPaths returns INVALID_ARGUMENT).
  bool strict = false;
  // A batch is written when it holds this many documents or this many bytes
  // of input text, whichever comes first.
  int batch_documents = 512;
  int64_t batch_bytes = 4 << 20;
  // Larger documents (and JSONL lines) are reported and skipped.
  int64_t max_document_bytes = int64_t{64} << 20;
  // Tokenizer threads of the shared pool; 0: all of them.
  int threads = 0;
  Progress progress = Progress::kAuto;
};

// Flag spellings: "auto" | "text" | "jsonl", "file" | "paragraph",
// "auto" | "on" | "off". INVALID_ARGUMENT naming the accepted values.
absl::StatusOr<IngestOptions::Format> ParseIngestFormat(absl::string_view name);
absl::StatusOr<IngestOptions::TextSplit> ParseTextSplit(absl::string_view name);
absl::StatusOr<IngestOptions::Progress> ParseProgress(absl::string_view name);

struct IngestSummary {
  static constexpr int kMaxReportedBadLines = 100;

  int64_t files = 0;
  int64_t bytes = 0;      // Input bytes read.
  int64_t documents = 0;  // Documents tokenised and given to the store.
  int64_t batches = 0;    // AddDocuments calls.
  int64_t tokens = 0;
  int64_t added = 0;       // New in the store.
  int64_t duplicates = 0;  // Already stored, or repeated in the input.
  int64_t bad_lines = 0;
  // The first kMaxReportedBadLines bad lines, "file:line: reason".
  std::vector<std::string> bad_line_reports;
  double seconds = 0;
  // Parts of `seconds`: tokenising batches, and TokenStore::AddDocuments
  // (content ids, RocksDB writes and their sync). The rest is reading and
  // parsing the input.
  double tokenize_seconds = 0;
  double store_seconds = 0;

  // Closing summary for people, several lines ending in "\n".
  std::string ToString() const;
};

class Ingestor {
 public:
  // `tok` and `store` must outlive the Ingestor; the store must have been
  // made with `tok` (checked by IngestPaths).
  Ingestor(const tokenizer::Tokenizer* tok, TokenStore* store, IngestOptions options);
  ~Ingestor();
  Ingestor(const Ingestor&) = delete;
  Ingestor& operator=(const Ingestor&) = delete;

  // Ingests each path: a file, or every regular file under a directory
  // (recursively, in sorted path order; names starting with "." are left out
  // of the walk).
  // All paths are listed and sized first, for the progress bar. Errors: the
  // first bad line under `strict` (INVALID_ARGUMENT "file:line: reason"), a
  // path that cannot be read, or a store failure. The summary accumulates
  // over calls, including failed ones.
  absl::Status IngestPaths(absl::Span<const std::string> paths);

  const IngestSummary& summary() const { return summary_; }

 private:
  class Run;  // State of one IngestPaths call (ingest.cc).

  const tokenizer::Tokenizer* const tok_;
  TokenStore* const store_;
  const IngestOptions options_;
  IngestSummary summary_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_INGEST_H_
