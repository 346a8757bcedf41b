#include "data_service/ingest.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "nlohmann/json.hpp"
#include "tokenizer/utf8.h"

namespace maximus::data {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kBom = "\xEF\xBB\xBF";
constexpr int kMaxJsonDepth = 100;

bool IsBlank(absl::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v' && c != '\n') return false;
  }
  return true;
}

// "12,345,678".
std::string Grouped(int64_t n) {
  std::string digits = absl::StrCat(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// "1 file", "2 files".
std::string Count(int64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(Grouped(n), " ", n == 1 ? one : many);
}

std::string Megabytes(int64_t bytes) { return absl::StrFormat("%.1f MB", bytes / 1e6); }

// Reads a file line by line through a fixed buffer. Lines longer than
// `max_bytes` are cut there (the rest is consumed and dropped), so memory
// stays bounded whatever the file holds.
class LineReader {
 public:
  LineReader(std::FILE* file, size_t max_bytes) : file_(file), max_bytes_(max_bytes) {}

  // False at the end of the file or on a read error (see error()). `line`
  // gets the line without its "\n"; `*cut` says it was longer than max_bytes.
  bool Next(std::string* line, bool* cut) {
    line->clear();
    *cut = false;
    bool any = false;
    while (true) {
      if (pos_ == end_ && !Fill()) return any;
      any = true;
      const char* begin = buffer_.data() + pos_;
      const size_t available = end_ - pos_;
      const void* newline = std::memchr(begin, '\n', available);
      const size_t length =
          newline != nullptr ? static_cast<const char*>(newline) - begin : available;
      const size_t room = max_bytes_ - std::min(max_bytes_, line->size());
      if (length > room) *cut = true;
      line->append(begin, std::min(length, room));
      pos_ += length;
      if (newline != nullptr) {
        ++pos_;
        return true;
      }
    }
  }

  // Bytes consumed so far.
  int64_t bytes() const { return bytes_; }
  int error() const { return error_; }

 private:
  bool Fill() {
    if (buffer_.empty()) buffer_.resize(kBufferBytes);
    const size_t n = std::fread(buffer_.data(), 1, buffer_.size(), file_);
    if (n == 0 && std::ferror(file_)) error_ = errno != 0 ? errno : EIO;
    pos_ = 0;
    end_ = n;
    bytes_ += static_cast<int64_t>(n);
    return n > 0;
  }

  static constexpr size_t kBufferBytes = 1 << 20;
  std::FILE* const file_;
  const size_t max_bytes_;
  std::vector<char> buffer_;
  size_t pos_ = 0;
  size_t end_ = 0;
  int64_t bytes_ = 0;
  int error_ = 0;
};

// "ill-formed UTF-8 (byte 7 of the line)" for the first bad byte of `line`,
// or "" if it is well-formed.
std::string Utf8Problem(absl::string_view line) {
  const size_t bad = tokenizer::FindInvalidUtf8(line);
  if (bad == absl::string_view::npos) return "";
  return absl::StrCat("ill-formed UTF-8 (byte ", bad + 1, " of the line)");
}

// Whether JSON text nests arrays and objects deeper than `limit`; checked
// before parsing, as a line of a million "[" would build a million nodes.
bool JsonNestsDeeperThan(absl::string_view json, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// "an object", "a string", "null" ... for messages about JSON values.
std::string Kind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::null:
      return "null";
    default:
      return absl::StrCat("a ", value.type_name());
  }
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

absl::StatusOr<IngestOptions::Format> ParseIngestFormat(absl::string_view name) {
  if (name == "auto") return IngestOptions::Format::kAuto;
  if (name == "text") return IngestOptions::Format::kText;
  if (name == "jsonl") return IngestOptions::Format::kJsonl;
  return absl::InvalidArgumentError(
      absl::StrCat("--format=", name, ": expected auto, text or jsonl"));
}

absl::StatusOr<IngestOptions::TextSplit> ParseTextSplit(absl::string_view name) {
  if (name == "file") return IngestOptions::TextSplit::kFile;
  if (name == "paragraph") return IngestOptions::TextSplit::kParagraph;
  return absl::InvalidArgumentError(
      absl::StrCat("--text_split=", name, ": expected file or paragraph"));
}

absl::StatusOr<IngestOptions::Progress> ParseProgress(absl::string_view name) {
  if (name == "auto") return IngestOptions::Progress::kAuto;
  if (name == "on") return IngestOptions::Progress::kOn;
  if (name == "off") return IngestOptions::Progress::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("--progress=", name, ": expected auto, on or off"));
}

std::string IngestSummary::ToString() const {
  std::string out =
      absl::StrFormat("Ingested %s, %s in %.2f s (%.1f MB/s)\n", Count(files, "file", "files"),
                      Megabytes(bytes), seconds, seconds > 0 ? bytes / 1e6 / seconds : 0.0);
  absl::StrAppendFormat(&out,
                        "  time       %.2f s tokenising, %.2f s in store writes (overlapped)\n",
                        tokenize_seconds, store_seconds);
  absl::StrAppend(&out, "  documents  ", Grouped(documents), " in ",
                  Count(batches, "batch", "batches"), " (", Grouped(added), " added, ",
                  Grouped(duplicates), " duplicates)\n");
  absl::StrAppend(&out, "  tokens     ", Grouped(tokens), "\n");
  absl::StrAppend(&out, "  bad lines  ", Grouped(bad_lines), bad_lines > 0 ? " (skipped)" : "",
                  "\n");
  for (const std::string& report : bad_line_reports) absl::StrAppend(&out, "    ", report, "\n");
  if (bad_lines > static_cast<int64_t>(bad_line_reports.size())) {
    absl::StrAppend(&out, "    ... and ",
                    Grouped(bad_lines - static_cast<int64_t>(bad_line_reports.size())), " more\n");
  }
  return out;
}

// One IngestPaths call: the file list, the pending batch and the progress bar.
class Ingestor::Run {
 public:
  explicit Run(Ingestor* ingestor)
      : tok_(*ingestor->tok_),
        store_(*ingestor->store_),
        options_(ingestor->options_),
        summary_(ingestor->summary_),
        start_(absl::Now()),
        last_draw_(start_) {
    switch (options_.progress) {
      case IngestOptions::Progress::kAuto:
        show_progress_ = isatty(STDERR_FILENO) == 1;
        break;
      case IngestOptions::Progress::kOn:
        show_progress_ = true;
        break;
      case IngestOptions::Progress::kOff:
        show_progress_ = false;
        break;
    }
  }

  ~Run() {
    AwaitWrite().IgnoreError();  // After an error: the thread must end first.
    ClearBar();
    summary_.seconds += absl::ToDoubleSeconds(absl::Now() - start_);
  }

  absl::Status Ingest(absl::Span<const std::string> paths) {
    if (store_.metadata().tokenizer_fingerprint != tok_.fingerprint()) {
      return absl::FailedPreconditionError(absl::StrCat("the store was built with tokenizer ",
                                                        store_.metadata().tokenizer_fingerprint,
                                                        ", not ", tok_.fingerprint()));
    }
    for (const std::string& path : paths) {
      MAXIMUS_RETURN_IF_ERROR(List(path));
    }
    for (size_t i = 0; i < files_.size(); ++i) {
      if (absl::Status s = IngestFile(files_[i].first, files_[i].second); !s.ok()) {
        // Documents before a bad line are still written under --strict.
        if (absl::IsInvalidArgument(s)) {
          MAXIMUS_RETURN_IF_ERROR(Finish());
        }
        return s;
      }
    }
    return Finish();
  }

 private:
  struct Pending {
    std::string where;  // "file:line", for errors.
    bool chat = false;
    std::string text;
    std::vector<ChatMessage> messages;
  };

  // Adds `path` (a file, or the files under a directory) to files_.
  absl::Status List(const std::string& path) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
    }
    std::vector<std::string> found;
    if (fs::is_directory(status)) {
      fs::recursive_directory_iterator it(path, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (absl::StartsWith(name, ".")) {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec)) found.push_back(it->path().string());
      }
      if (ec) return absl::UnavailableError(absl::StrCat("listing ", path, ": ", ec.message()));
      std::sort(found.begin(), found.end());
    } else if (fs::is_regular_file(status)) {
      found.push_back(path);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file or a directory"));
    }
    for (std::string& file : found) {
      const uintmax_t size = fs::file_size(file, ec);
      if (ec) return absl::UnavailableError(absl::StrCat(file, ": ", ec.message()));
      total_bytes_ += static_cast<int64_t>(size);
      files_.emplace_back(std::move(file), static_cast<int64_t>(size));
    }
    return absl::OkStatus();
  }

  bool IsJsonl(const std::string& path) const {
    switch (options_.format) {
      case IngestOptions::Format::kText:
        return false;
      case IngestOptions::Format::kJsonl:
        return true;
      case IngestOptions::Format::kAuto:
        break;
    }
    const std::string ext = fs::path(path).extension().string();
    return ext == ".jsonl" || ext == ".json";
  }

  absl::Status IngestFile(const std::string& path, int64_t size) {
    ++summary_.files;
    std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
    if (file == nullptr) {
      return absl::UnavailableError(absl::StrCat(path, ": ", std::strerror(errno)));
    }
    const int64_t done_before = done_bytes_;
    absl::Status status;
    int error = 0;
    if (IsJsonl(path)) {
      status = IngestJsonl(path, file.get(), &error);
    } else if (options_.text_split == IngestOptions::TextSplit::kParagraph) {
      status = IngestParagraphs(path, file.get(), &error);
    } else {
      status = IngestWholeFile(path, size, file.get(), &error);
    }
    if (status.ok() && error != 0) {
      status = absl::UnavailableError(absl::StrCat("reading ", path, ": ", std::strerror(error)));
    }
    // The byte count follows what was read (the file may have changed since
    // it was listed), except for a skipped file, counted at its listed size.
    summary_.bytes += done_bytes_ - done_before;
    return status;
  }

  absl::Status IngestWholeFile(const std::string& path, int64_t size, std::FILE* file, int* error) {
    if (size > options_.max_document_bytes) {
      done_bytes_ += size;
      return Bad(absl::StrCat(path, ": ", Grouped(size), " bytes, larger than ",
                              "max_document_bytes (", Grouped(options_.max_document_bytes),
                              "); file skipped"));
    }
    // Reads up to one byte past the limit, to see a file that grew past it.
    const size_t limit = static_cast<size_t>(options_.max_document_bytes) + 1;
    std::string text(std::min<size_t>(static_cast<size_t>(size) + 1, limit), '\0');
    size_t length = 0;
    while (true) {
      if (length == text.size()) {
        if (text.size() >= limit) break;
        text.resize(std::min(text.size() * 2, limit));
      }
      const size_t n = std::fread(text.data() + length, 1, text.size() - length, file);
      if (n == 0) break;
      length += n;
      done_bytes_ += static_cast<int64_t>(n);
    }
    if (std::ferror(file)) {
      *error = errno != 0 ? errno : EIO;
      return absl::OkStatus();
    }
    text.resize(length);
    if (length > static_cast<size_t>(options_.max_document_bytes)) {
      return Bad(absl::StrCat(path, ": larger than max_document_bytes (",
                              Grouped(options_.max_document_bytes), "); file skipped"));
    }
    if (absl::StartsWith(text, kBom)) text.erase(0, kBom.size());
    const size_t bad = tokenizer::FindInvalidUtf8(text);
    if (bad != absl::string_view::npos) {
      const size_t newline = bad == 0 ? std::string::npos : text.rfind('\n', bad - 1);
      const size_t column = newline == std::string::npos ? bad : bad - newline - 1;
      const int64_t line = 1 + std::count(text.begin(), text.begin() + bad, '\n');
      return Bad(absl::StrCat(path, ":", line, ": ill-formed UTF-8 (byte ", column + 1,
                              " of the line); file skipped"));
    }
    if (IsBlank(text)) return Bad(absl::StrCat(path, ": empty document; file skipped"));
    Pending doc;
    doc.where = path;
    doc.text = std::move(text);
    return Add(std::move(doc));
  }

  absl::Status IngestParagraphs(const std::string& path, std::FILE* file, int* error) {
    LineReader reader(file, static_cast<size_t>(options_.max_document_bytes));
    std::string line, paragraph;
    bool cut = false;
    int64_t line_number = 0;
    int64_t first_line = 0;  // Of the paragraph being read; 0: none.
    int64_t problem_line = 0;
    std::string problem;  // Why the paragraph is skipped, if it is.
    auto end_paragraph = [&]() -> absl::Status {
      if (first_line == 0) return absl::OkStatus();
      absl::Status status;
      if (!problem.empty()) {
        status = Bad(absl::StrCat(path, ":", problem_line, ": ", problem, "; paragraph skipped"));
      } else {
        Pending doc;
        doc.where = absl::StrCat(path, ":", first_line);
        doc.text = std::move(paragraph);
        status = Add(std::move(doc));
      }
      first_line = 0;
      problem.clear();
      paragraph.clear();
      return status;
    };
    int64_t read_before = 0;
    while (reader.Next(&line, &cut)) {
      done_bytes_ += reader.bytes() - read_before;
      read_before = reader.bytes();
      ++line_number;
      if (line_number == 1 && absl::StartsWith(line, kBom)) line.erase(0, kBom.size());
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!cut && IsBlank(line)) {
        MAXIMUS_RETURN_IF_ERROR(end_paragraph());
        continue;
      }
      if (first_line == 0) first_line = line_number;
      if (!problem.empty()) continue;
      const size_t joined = paragraph.size() + (paragraph.empty() ? 0 : 1) + line.size();
      if (cut || joined > static_cast<size_t>(options_.max_document_bytes)) {
        problem_line = first_line;
        problem = absl::StrCat("paragraph longer than max_document_bytes (",
                               Grouped(options_.max_document_bytes), ")");
        paragraph.clear();
        paragraph.shrink_to_fit();
        continue;
      }
      if (std::string p = Utf8Problem(line); !p.empty()) {
        problem_line = line_number;
        problem = std::move(p);
        continue;
      }
      if (!paragraph.empty()) paragraph += '\n';
      paragraph += line;
    }
    done_bytes_ += reader.bytes() - read_before;
    *error = reader.error();
    return end_paragraph();
  }

  absl::Status IngestJsonl(const std::string& path, std::FILE* file, int* error) {
    LineReader reader(file, static_cast<size_t>(options_.max_document_bytes));
    std::string line;
    bool cut = false;
    int64_t line_number = 0;
    int64_t read_before = 0;
    while (reader.Next(&line, &cut)) {
      done_bytes_ += reader.bytes() - read_before;
      read_before = reader.bytes();
      ++line_number;
      const std::string where = absl::StrCat(path, ":", line_number);
      if (line_number == 1 && absl::StartsWith(line, kBom)) line.erase(0, kBom.size());
      if (cut) {
        MAXIMUS_RETURN_IF_ERROR(Bad(absl::StrCat(where, ": line longer than max_document_bytes (",
                                                 Grouped(options_.max_document_bytes), ")")));
        continue;
      }
      if (IsBlank(line)) continue;
      Pending doc;
      doc.where = where;
      std::string problem = ParseJsonLine(line, &doc);
      MAXIMUS_RETURN_IF_ERROR(problem.empty() ? Add(std::move(doc))
                                              : Bad(absl::StrCat(where, ": ", problem)));
    }
    done_bytes_ += reader.bytes() - read_before;
    *error = reader.error();
    return absl::OkStatus();
  }

  // Fills `doc` from one JSONL line; returns why the line is bad, or "".
  std::string ParseJsonLine(const std::string& line, Pending* doc) const {
    if (std::string p = Utf8Problem(line); !p.empty()) return p;
    if (JsonNestsDeeperThan(line, kMaxJsonDepth)) {
      return absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels");
    }
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      // what() is "[json.exception.parse_error.101] parse error at ...".
      absl::string_view message = e.what();
      const size_t bracket = message.find("] ");
      if (bracket != absl::string_view::npos) message.remove_prefix(bracket + 2);
      return absl::StrCat("invalid JSON: ", message);
    }
    if (!json.is_object()) return absl::StrCat("the line is ", Kind(json), ", not a JSON object");
    const std::string& field = options_.text_field;
    if (auto it = json.find(field); it != json.end()) {
      if (!it->is_string()) {
        return absl::StrCat("\"", field, "\" is ", Kind(*it), ", not a string");
      }
      doc->text = std::move(it->get_ref<std::string&>());
      if (IsBlank(doc->text)) return absl::StrCat("empty document (\"", field, "\" is blank)");
      return "";
    }
    auto messages = json.find("messages");
    if (messages == json.end()) {
      return absl::StrCat("no \"", field, "\" field and no \"messages\" array");
    }
    if (!messages->is_array()) {
      return absl::StrCat("\"messages\" is ", Kind(*messages), ", not an array");
    }
    doc->chat = true;
    doc->messages.reserve(messages->size());
    for (size_t i = 0; i < messages->size(); ++i) {
      nlohmann::json& message = (*messages)[i];
      if (!message.is_object()) {
        return absl::StrCat("messages[", i, "] is ", Kind(message), ", not an object");
      }
      ChatMessage chat;
      for (const char* key : {"role", "content"}) {
        auto value = message.find(key);
        if (value == message.end()) return absl::StrCat("messages[", i, "].", key, ": missing");
        if (!value->is_string()) {
          return absl::StrCat("messages[", i, "].", key, ": ", Kind(*value), ", not a string");
        }
        (key[0] == 'r' ? chat.role : chat.content) = std::move(value->get_ref<std::string&>());
      }
      doc->messages.push_back(std::move(chat));
    }
    if (absl::Status s = ValidateChat(doc->messages); !s.ok()) return std::string(s.message());
    return "";
  }

  // Counts and reports a bad line; under --strict, returns it as the error.
  absl::Status Bad(std::string report) {
    ++summary_.bad_lines;
    if (summary_.bad_line_reports.size() < IngestSummary::kMaxReportedBadLines) {
      summary_.bad_line_reports.push_back(report);
    }
    if (options_.strict) return absl::InvalidArgumentError(report);
    ClearBar();
    absl::FPrintF(stderr, "%s\n", report);
    return absl::OkStatus();
  }

  absl::Status Add(Pending doc) {
    pending_bytes_ += doc.chat ? 0 : static_cast<int64_t>(doc.text.size());
    for (const ChatMessage& m : doc.messages) pending_bytes_ += m.content.size();
    pending_.push_back(std::move(doc));
    if (static_cast<int>(pending_.size()) >= options_.batch_documents ||
        pending_bytes_ >= options_.batch_bytes) {
      return Flush();
    }
    Draw();
    return absl::OkStatus();
  }

  // Tokenises the pending documents in parallel and writes them as one batch.
  absl::Status Flush() {
    if (pending_.empty()) return absl::OkStatus();
    const ChatLossMode mode =
        options_.train_on_user ? ChatLossMode::kAllTurns : ChatLossMode::kModelTurns;
    std::vector<absl::StatusOr<Document>> built(pending_.size());
    const int threads = options_.threads > 0 ? options_.threads : base::ThreadPool::Shared().size();
    const absl::Time tokenize_start = absl::Now();
    base::ThreadPool::Shared().ParallelFor(pending_.size(), threads, [&](size_t i) {
      const Pending& p = pending_[i];
      built[i] =
          p.chat ? BuildChatDocument(tok_, p.messages, mode) : BuildTextDocument(tok_, p.text);
    });
    const absl::Time tokenize_end = absl::Now();
    summary_.tokenize_seconds += absl::ToDoubleSeconds(tokenize_end - tokenize_start);
    std::vector<Document> batch;
    batch.reserve(built.size());
    int64_t tokens = 0;
    for (size_t i = 0; i < built.size(); ++i) {
      // Inputs were checked when read, so this is a tokenizer or template problem.
      if (!built[i].ok()) {
        return absl::Status(built[i].status().code(),
                            absl::StrCat(pending_[i].where, ": ", built[i].status().message()));
      }
      tokens += static_cast<int64_t>(built[i]->tokens.size());
      batch.push_back(*std::move(built[i]));
    }
    pending_.clear();
    pending_bytes_ = 0;
    // One batch is written while the next is read and tokenised; the store's
    // synced write is mostly waiting on the disk.
    MAXIMUS_RETURN_IF_ERROR(AwaitWrite());
    write_ = std::make_unique<Write>();
    write_->batch = std::move(batch);
    write_->tokens = tokens;
    writer_ = std::thread([this, write = write_.get()] {
      const absl::Time start = absl::Now();
      write->result = store_.AddDocuments(write->batch);
      write->seconds = absl::ToDoubleSeconds(absl::Now() - start);
    });
    Draw();
    return absl::OkStatus();
  }

  // Waits for the batch being written, if any, and counts it.
  absl::Status AwaitWrite() {
    if (!writer_.joinable()) return absl::OkStatus();
    writer_.join();
    std::unique_ptr<Write> write = std::move(write_);
    summary_.store_seconds += write->seconds;
    if (!write->result.ok()) return write->result.status();
    summary_.documents += static_cast<int64_t>(write->batch.size());
    ++summary_.batches;
    summary_.tokens += write->tokens;
    summary_.added += write->result->added;
    summary_.duplicates += write->result->duplicates;
    return absl::OkStatus();
  }

  // Writes everything pending and waits for it.
  absl::Status Finish() {
    if (absl::Status s = Flush(); !s.ok()) {
      AwaitWrite().IgnoreError();
      return s;
    }
    return AwaitWrite();
  }

  // One line, redrawn at most 10 times a second:
  // [#########           ]  45.2%  23.1 MB/s  1,234 docs/s  12.3M tokens
  void Draw() {
    if (!show_progress_) return;
    const absl::Time now = absl::Now();
    if (now - last_draw_ < absl::Milliseconds(100)) return;
    last_draw_ = now;
    const double fraction =
        total_bytes_ > 0 ? std::min(1.0, static_cast<double>(done_bytes_) / total_bytes_) : 1.0;
    const double seconds = std::max(1e-9, absl::ToDoubleSeconds(now - start_));
    constexpr int kWidth = 20;
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, ' ');
    // At most 73 columns, so that it never wraps on a terminal.
    absl::FPrintF(stderr, "\r[%s] %5.1f%%  %.1f MB/s  %s docs/s  %.1fM tokens\033[K", bar,
                  100 * fraction, done_bytes_ / 1e6 / seconds,
                  Grouped(static_cast<int64_t>(summary_.documents / seconds)),
                  summary_.tokens / 1e6);
    std::fflush(stderr);
    bar_shown_ = true;
  }

  void ClearBar() {
    if (!bar_shown_) return;
    absl::FPrintF(stderr, "\r\033[K");
    std::fflush(stderr);
    bar_shown_ = false;
    last_draw_ = absl::InfinitePast();
  }

  const tokenizer::Tokenizer& tok_;
  TokenStore& store_;
  const IngestOptions& options_;
  IngestSummary& summary_;
  const absl::Time start_;
  absl::Time last_draw_;  // The first bar comes after 0.1 s, with rates to show.
  bool show_progress_ = false;
  bool bar_shown_ = false;

  std::vector<std::pair<std::string, int64_t>> files_;  // Path and listed size.
  int64_t total_bytes_ = 0;
  int64_t done_bytes_ = 0;

  std::vector<Pending> pending_;
  int64_t pending_bytes_ = 0;

  struct Write {
    std::vector<Document> batch;
    int64_t tokens = 0;
    absl::StatusOr<WriteResult> result;
    double seconds = 0;
  };
  std::unique_ptr<Write> write_;  // The batch being written by writer_.
  std::thread writer_;
};

Ingestor::Ingestor(const tokenizer::Tokenizer* tok, TokenStore* store, IngestOptions options)
    : tok_(tok), store_(store), options_(std::move(options)) {}

Ingestor::~Ingestor() = default;

absl::Status Ingestor::IngestPaths(absl::Span<const std::string> paths) {
  Run run(this);
  return run.Ingest(paths);
}

}  // namespace maximus::data
