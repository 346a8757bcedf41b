#include "trainer/run_setup.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "data_service/embedded_data_source.h"
#include "data_service/ingest.h"
#include "data_service/remote_data_source.h"
#include "data_service/store_opener.h"
#include "tokenizer/end_of_text.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && fs::exists(path, ec);
}

// Directories that may hold the program's runfiles.
std::vector<std::string> RunfilesRoots() {
  std::vector<std::string> roots;
  if (!Env("RUNFILES_DIR").empty()) roots.push_back(Env("RUNFILES_DIR"));
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.string() + ".runfiles");
  roots.push_back(".");
  return roots;
}

std::string FindRunfile(const std::string& workspace_path, const std::string& external_path) {
  for (const std::string& root : RunfilesRoots()) {
    for (const std::string& candidate :
         {root + "/maximus/" + workspace_path, root + "/" + external_path,
          root + "/maximus/external/" + external_path.substr(external_path.find('/') + 1)}) {
      if (Exists(candidate)) return candidate;
    }
  }
  return "";
}

}  // namespace

std::string ResolveUserPath(const std::string& path) {
  if (path.empty() || path[0] == '/' || Env("BUILD_WORKING_DIRECTORY").empty()) return path;
  if (path[0] == '~') return Env("HOME") + path.substr(1);
  return Env("BUILD_WORKING_DIRECTORY") + "/" + path;
}

absl::StatusOr<ModelConfig> ModelConfigFromFlag(const std::string& flag) {
  const bool path = absl::StrContains(flag, '/') || absl::EndsWith(flag, ".json");
  return LoadModelConfig(path ? ResolveUserPath(flag) : flag);
}

absl::StatusOr<std::string> FindTokenizer(const std::string& flag) {
  if (!flag.empty()) {
    const std::string path = ResolveUserPath(flag);
    if (!Exists(path)) return absl::NotFoundError(absl::StrCat("no tokenizer at ", path));
    return path;
  }
  const std::string runfile =
      FindRunfile("external/tokenizers/gemma3/tokenizer.json", "tokenizers/gemma3/tokenizer.json");
  if (!runfile.empty()) return runfile;
  const std::string cached = Env("HOME") + "/.cache/maximus/tokenizers/gemma3/tokenizer.json";
  if (Exists(cached)) return cached;
  return absl::NotFoundError(
      "no Gemma 3 tokenizer.json: run tools/fetch_tokenizers.sh (or `./bazelw run` the program, "
      "which fetches it), or pass --tokenizer=PATH");
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizer(const std::string& flag) {
  absl::StatusOr<std::string> path = FindTokenizer(flag);
  if (!path.ok()) return path.status();
  return tokenizer::Tokenizer::FromFile(*path);
}

std::string CheckpointFromFlag(const std::string& flag) {
  return flag.empty() ? DefaultRunDir("default") : ResolveUserPath(flag);
}

absl::StatusOr<std::string> FindSampleCorpus() {
  const std::string runfile = FindRunfile("data/austen", "maximus/data/austen");
  if (!runfile.empty()) return runfile;
  if (!Env("BUILD_WORKSPACE_DIRECTORY").empty()) {
    const std::string path = Env("BUILD_WORKSPACE_DIRECTORY") + "/data/austen";
    if (Exists(path)) return path;
  }
  return absl::NotFoundError("the sample corpus data/austen is not among the runfiles");
}

std::string DefaultRunDir(const std::string& name) {
  const std::string workspace = Env("BUILD_WORKSPACE_DIRECTORY");
  return (workspace.empty() ? std::string("runs") : workspace + "/runs") + "/" + name;
}

bool IsDataServiceAddress(const std::string& data) {
  // host:port lists have a colon and no slash.
  return absl::StrContains(data, ':') && !absl::StrContains(data, '/');
}

absl::StatusOr<std::unique_ptr<data::DataSource>> OpenData(const DataOptions& options,
                                                           const tokenizer::Tokenizer& tokenizer) {
  if (options.data.empty()) return absl::InvalidArgumentError("--data is empty");
  if (IsDataServiceAddress(options.data)) {
    data::RemoteDataSource::Options remote_options;
    remote_options.security = options.security;
    remote_options.stream_window_bytes = options.stream_window_bytes;
    absl::StatusOr<std::unique_ptr<data::RemoteDataSource>> remote =
        data::RemoteDataSource::Connect(data::SplitAddresses(options.data), remote_options);
    if (!remote.ok()) return remote.status();
    if ((*remote)->info().tokenizer().sha256() != tokenizer.fingerprint()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the DataServices hold tokens of tokenizer ", (*remote)->info().tokenizer().sha256(),
          ", not of ", tokenizer.fingerprint()));
    }
    return std::unique_ptr<data::DataSource>(*std::move(remote));
  }
  if (options.security.tls || !options.security.token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--data=", options.data, " is an embedded store; the --data_tls* and --data_token_file "
        "flags apply to DataService addresses (host:port)"));
  }
  const std::string dir = ResolveUserPath(options.data);
  data::StoreOptions store_options;
  store_options.read_only = options.read_only;
  absl::StatusOr<std::unique_ptr<data::TokenStore>> store =
      data::OpenOrCreateStore(dir, tokenizer, 0, {}, store_options);
  if (!store.ok()) return store.status();
  absl::StatusOr<int32_t> eos = tokenizer::EndOfTextId(tokenizer);
  if (!eos.ok()) return eos.status();
  absl::StatusOr<bool> has_documents = (*store)->HasDocuments();
  if (!has_documents.ok()) return has_documents.status();
  if (!*has_documents && !options.ingest_if_empty.empty() && !options.read_only) {
    if (!options.quiet) {
      absl::FPrintF(stderr, "data: %s is empty; ingesting %s\n", dir,
                    absl::StrJoin(options.ingest_if_empty, ", "));
    }
    data::IngestOptions ingest;
    ingest.text_split = data::IngestOptions::TextSplit::kParagraph;
    data::Ingestor ingestor(&tokenizer, store->get(), ingest);
    if (absl::Status s = ingestor.IngestPaths(options.ingest_if_empty); !s.ok()) return s;
    if (!options.quiet) absl::FPrintF(stderr, "%s", ingestor.summary().ToString());
  }
  absl::StatusOr<std::unique_ptr<data::EmbeddedDataSource>> source =
      data::EmbeddedDataSource::Open(*std::move(store), *eos);
  if (!source.ok()) return source.status();
  return std::unique_ptr<data::DataSource>(*std::move(source));
}

}  // namespace maximus::trainer
