// Training checkpoints: a directory per save,
//   <dir>/model.safetensors      every parameter, F32, Hugging Face Gemma 3
//                                names and [out, in] layouts (model.h)
//   <dir>/optimizer.safetensors  AdamW moments: "<name>.exp_avg",
//                                "<name>.exp_avg_sq"
//   <dir>/config.json, ...       Hugging Face files (hf_export.h)
//   <dir>/checkpoint.json        format version, step, tokens seen, model
//                                config, the run's RunConfig (proto JSON,
//                                proto/run_config.proto), data cursor
//                                (StreamCursor as proto JSON), RNG state,
//                                tokenizer fingerprint and vocabulary size,
//                                and the SHA-256 of every other file
//                                ("file_sha256": {"model.safetensors": hex})
// written as <dir>.partial and renamed when complete, so a checkpoint
// directory is never half written; <parent>/latest names the newest.
//
// SHA-256 rather than CRC-32C: OpenSSL's SHA-256 (SHA-NI) runs at well over
// a GB/s, faster than base/crc32c.h's byte-at-a-time table, and the digests
// are what `sha256sum` prints, so a file can be checked by hand. (It guards
// against accidental damage; whoever can rewrite the tensors can rewrite
// checkpoint.json too.)

#ifndef MAXIMUS_TRAINER_IO_CHECKPOINT_H_
#define MAXIMUS_TRAINER_IO_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "proto/data.pb.h"
#include "trainer/model/model.h"

namespace maximus::trainer {

// 2: the run's settings are its RunConfig, under "run_config". Format 1
// (settings of their own shape under "training") still reads, for inference.
inline constexpr int kCheckpointFormatVersion = 2;

struct CheckpointState {
  int format_version = kCheckpointFormatVersion;  // As read; written as the current one.
  int64_t step = 0;
  int64_t tokens_seen = 0;
  std::string tokenizer_fingerprint;
  int64_t tokenizer_vocab_size = 0;
  // The run's settings as the trainer writes them: its RunConfig in proto
  // JSON (format 1: the older settings object).
  nlohmann::json training;
  data::StreamCursor data_cursor;
  // The run has no random state besides its seed: data order comes from the
  // cursor and MAXIS picks candidates deterministically.
  uint64_t seed = 0;
  // Ranks of the data-parallel run that wrote it (1 for checkpoints from
  // before it was recorded): a step took world_size x accumulation
  // micro-batches.
  int64_t world_size = 1;
  // The run's tokenizer.json, copied into the checkpoint for Hugging Face
  // loaders (hf_export.h); "" to copy none.
  std::string tokenizer_path;
  // As read: file name -> lowercase hex SHA-256; empty for checkpoints
  // written before checksums were recorded. (Computed anew when saving.)
  std::map<std::string, std::string> file_sha256;
};

// The largest step a checkpoint may record: far beyond any run (10^12 steps
// of 1 ms are 30 years), far below where int64 arithmetic on steps wraps.
inline constexpr int64_t kMaxCheckpointStep = 1000000000000;

// Writes model, optimizer moments (`m`, `v`: one buffer per parameter, may
// be empty to skip the optimizer file) and state to `dir` atomically, then
// points <parent of dir>/latest at it.
absl::Status SaveCheckpoint(const std::string& dir, Model& model,
                            const std::vector<std::unique_ptr<Buffer>>& m,
                            const std::vector<std::unique_ptr<Buffer>>& v,
                            const CheckpointState& state);

// Reads checkpoint.json. `path` is a checkpoint directory, or a directory
// holding a `latest` file (e.g. a run's checkpoints/ directory).
absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path);
// DATA_LOSS for a malformed checkpoint.json (not JSON, a key missing or of
// the wrong type); INVALID_ARGUMENT naming the field for a value out of
// range (step outside 0..kMaxCheckpointStep, negative tokens_seen, a
// tokenizer vocab_size or model config outside model_config.h's bounds);
// RESOURCE_EXHAUSTED when the model would not fit in physical memory.
absl::StatusOr<CheckpointState> ReadCheckpointState(const std::string& dir, ModelConfig* config);

// Loads parameters (and moments, when `m` is non-null) into `model`, whose
// config must equal the checkpoint's: FAILED_PRECONDITION naming the
// differing field or tensor otherwise. First checks the SHA-256 of every
// file checkpoint.json lists (optimizer.safetensors only when loading
// moments): DATA_LOSS naming the file on a mismatch. A non-finite value (or
// a negative exp_avg_sq) is DATA_LOSS naming the tensor, checksums or not.
absl::Status LoadCheckpointTensors(const std::string& dir, Model& model,
                                   std::vector<std::unique_ptr<Buffer>>* m,
                                   std::vector<std::unique_ptr<Buffer>>* v);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_CHECKPOINT_H_
