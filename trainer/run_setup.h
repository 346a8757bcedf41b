// What a training or evaluation program sets up before the loop: the
// tokenizer, and the data (an embedded store, filled from a corpus when
// empty, or DataServices).

#ifndef MAXIMUS_TRAINER_RUN_SETUP_H_
#define MAXIMUS_TRAINER_RUN_SETUP_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data_service/data_source.h"
#include "rpc/client_security.h"
#include "tokenizer/tokenizer.h"
#include "trainer/model/model_config.h"

namespace maximus::trainer {

// A --preset flag: a preset name, or a JSON file resolved like
// ResolveUserPath.
absl::StatusOr<ModelConfig> ModelConfigFromFlag(const std::string& flag);

// A path given on the command line, resolved against the directory `bazel
// run` was started from (BUILD_WORKING_DIRECTORY) when relative.
std::string ResolveUserPath(const std::string& path);

// The first existing of: `flag` (if set), the Gemma 3 tokenizer.json among
// the program's runfiles, ~/.cache/maximus/tokenizers/gemma3/tokenizer.json.
// NOT_FOUND saying how to fetch it otherwise.
absl::StatusOr<std::string> FindTokenizer(const std::string& flag);
// FindTokenizer, then Tokenizer::FromFile.
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizer(const std::string& flag);
// A --checkpoint flag: the run directory runs/default when empty.
std::string CheckpointFromFlag(const std::string& flag);

// The committed sample corpus (data/austen) among the runfiles or in the
// workspace.
absl::StatusOr<std::string> FindSampleCorpus();
// Where a run writes by default: <workspace>/runs/<name> under `bazel run`,
// else ./runs/<name>.
std::string DefaultRunDir(const std::string& name);

struct DataOptions {
  // "host:port[,host:port...]" for DataServices; otherwise the directory of
  // an embedded store (created when missing).
  std::string data;
  int shards = 4;
  // Ingested (paragraphs of text files, JSONL) when the embedded store is
  // empty.
  std::vector<std::string> ingest_if_empty;
  bool quiet = false;
  // TLS and bearer token for DataServices (trainer/data_flags.h); must be
  // empty for an embedded store.
  rpc::ClientSecurity security;
  // data::RemoteDataSource::Options::stream_window_bytes.
  int stream_window_bytes = 0;
  // Opens an embedded store read-only and ingests nothing (the other ranks
  // of a data-parallel run, beside rank 0 which prepared it).
  bool read_only = false;
};

// Whether --data names DataServices ("host:port[,host:port...]") rather than
// the directory of an embedded store.
bool IsDataServiceAddress(const std::string& data);

// Opens the data; the embedded store must have been built with `tokenizer`.
absl::StatusOr<std::unique_ptr<data::DataSource>> OpenData(const DataOptions& options,
                                                           const tokenizer::Tokenizer& tokenizer);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_RUN_SETUP_H_
