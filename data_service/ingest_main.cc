// ingest --data_dir=DIR --tokenizer=PATH [flags] PATH...
//
// Tokenises text and JSONL files (or directory trees of them) into the token
// store in --data_dir, creating the store if there is none. Prints a summary.
// Exit status: 0 done (bad lines, if any, were skipped and are listed),
// 1 an error (including a --strict stop), 2 a usage error.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data_service/ingest.h"
#include "data_service/store_opener.h"
#include "data_service/token_store.h"
#include "tokenizer/tokenizer.h"

ABSL_FLAG(std::string, data_dir, "", "Token store directory (created if it holds no store)");
ABSL_FLAG(std::string, tokenizer, "", "Path of the tokenizer.json the store uses");
ABSL_FLAG(int, shards, 0,
          "Shard count of a new store (0: 4), or expected of an existing one (0: any)");
ABSL_FLAG(std::string, format, "auto", "auto (.jsonl/.json are JSONL, the rest text), text, jsonl");
ABSL_FLAG(std::string, text_split, "file",
          "Text files: file (one document per file) or paragraph (split on blank lines)");
ABSL_FLAG(std::string, text_field, "text", "JSONL: the field holding a text document");
ABSL_FLAG(bool, train_on_user, false, "JSONL chats: user turns count in the loss too");
ABSL_FLAG(bool, strict, false, "Stop at the first bad line instead of skipping it");
ABSL_FLAG(int, threads, 0, "Tokenizer threads; 0: one per core");
ABSL_FLAG(std::string, progress, "auto", "Progress bar on stderr: auto (if a terminal), on, off");
ABSL_FLAG(int, batch_documents, 512, "Documents per store write");
ABSL_FLAG(int64_t, batch_bytes, 4 << 20, "Bytes of text per store write");
ABSL_FLAG(int64_t, max_document_bytes, int64_t{64} << 20,
          "Larger documents and JSONL lines are skipped");

namespace maximus::data {
namespace {

constexpr char kUsage[] =
    "ingest --data_dir=DIR --tokenizer=PATH/tokenizer.json [--shards=4] "
    "[--format=auto|text|jsonl]\n"
    "       [--text_split=file|paragraph] [--text_field=text] [--train_on_user] [--strict]\n"
    "       [--threads=0] [--progress=auto|on|off] PATH...\n"
    "Tokenises text and JSONL files, or directory trees of them, into a token store.";

int UsageError(absl::string_view message) {
  absl::FPrintF(stderr, "ingest: %s\nusage: %s\n", message, kUsage);
  return 2;
}

// absl::ParseCommandLine exits with status 1 on an unknown flag or a bad
// value; check those first so that usage errors exit with 2.
std::string CheckFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    // absl's usage flags (--help, --helpfull, --version ...) are handled by
    // ParseCommandLine itself.
    if (name == "help" || absl::StartsWith(name, "help") || name == "version" ||
        name == "only_check_args") {
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>() && eq == absl::string_view::npos) {
        continue;
      }
    }
    if (flag == nullptr) return absl::StrCat("unknown flag --", name);
    if (!absl::StrContains(flag->Filename(), "ingest_main")) continue;  // --help and the like.
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::StrCat("--", name, " needs a value");
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) return absl::StrCat("--", name, ": ", error);
  }
  return "";
}

// `bazel run` starts the program in its runfiles; relative paths are meant
// from where the user typed the command.
std::string Resolve(const std::string& path) {
  const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || cwd == nullptr || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(cwd) / path).string();
}

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "ingest: %s\n", status.message());
  return 1;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help lists this program's flags.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "ingest_main");
  };
  absl::SetFlagsUsageConfig(usage);
  if (std::string problem = CheckFlags(argc, argv); !problem.empty()) return UsageError(problem);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);

  IngestOptions options;
  absl::StatusOr<IngestOptions::Format> format = ParseIngestFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return UsageError(format.status().message());
  options.format = *format;
  absl::StatusOr<IngestOptions::TextSplit> split = ParseTextSplit(absl::GetFlag(FLAGS_text_split));
  if (!split.ok()) return UsageError(split.status().message());
  options.text_split = *split;
  absl::StatusOr<IngestOptions::Progress> progress = ParseProgress(absl::GetFlag(FLAGS_progress));
  if (!progress.ok()) return UsageError(progress.status().message());
  options.progress = *progress;
  options.text_field = absl::GetFlag(FLAGS_text_field);
  options.train_on_user = absl::GetFlag(FLAGS_train_on_user);
  options.strict = absl::GetFlag(FLAGS_strict);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.batch_documents = absl::GetFlag(FLAGS_batch_documents);
  options.batch_bytes = absl::GetFlag(FLAGS_batch_bytes);
  options.max_document_bytes = absl::GetFlag(FLAGS_max_document_bytes);
  const int shards = absl::GetFlag(FLAGS_shards);

  const std::string data_dir = Resolve(absl::GetFlag(FLAGS_data_dir));
  const std::string tokenizer_path = Resolve(absl::GetFlag(FLAGS_tokenizer));
  if (data_dir.empty()) return UsageError("--data_dir=DIR is required");
  if (tokenizer_path.empty()) return UsageError("--tokenizer=PATH/tokenizer.json is required");
  if (args.size() < 2) return UsageError("no input files or directories given");
  if (shards < 0) return UsageError("--shards must be 0 (as stored, or 4 for a new store) or more");
  if (options.text_field.empty()) return UsageError("--text_field must not be empty");
  if (options.threads < 0) return UsageError("--threads must be 0 or more");
  if (options.batch_documents < 1 || options.batch_bytes < 1) {
    return UsageError("--batch_documents and --batch_bytes must be at least 1");
  }
  if (options.max_document_bytes < 1) return UsageError("--max_document_bytes must be at least 1");
  std::vector<std::string> inputs;
  for (size_t i = 1; i < args.size(); ++i) inputs.push_back(Resolve(args[i]));

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) return Fail(tok.status());

  // Ingestion needs a writable store: on a full disk, fail now with the
  // reason rather than open read-only.
  StoreOptions store_options;
  store_options.read_only_if_disk_full = false;
  absl::StatusOr<std::unique_ptr<TokenStore>> store =
      OpenOrCreateStore(data_dir, **tok, shards, {}, store_options);
  if (!store.ok()) return Fail(store.status());

  Ingestor ingestor(tok->get(), store->get(), options);
  const absl::Status status = ingestor.IngestPaths(inputs);
  absl::FPrintF(stdout, "%s", ingestor.summary().ToString());
  std::fflush(stdout);
  if (!status.ok()) return Fail(status);
  return 0;
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) { return maximus::data::Main(argc, argv); }
