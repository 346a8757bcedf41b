// A training run's options (RunConfig, proto/run_config.proto): their one
// set of defaults, how command-line flags fill them, their checks, the
// resume comparison, their JSON form, and the settings the loop's parts
// (schedule, optimizer, loss) take from them.

#ifndef MAXIMUS_TRAINER_RUN_CONFIG_H_
#define MAXIMUS_TRAINER_RUN_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/data.pb.h"
#include "proto/run_config.pb.h"
#include "trainer/model/model.h"
#include "trainer/model/model_config.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"

namespace maximus::trainer {

// The defaults of every option: the default run of trainer/main.cc (the tiny
// preset on the CPU, 400 steps of 4 x 128 tokens with MAXIS). `out_dir`,
// `data` and `tokenizer` are empty: the programs choose their locations.
RunConfig DefaultRunConfig();

// Sets each field of `config` for which the program defines an absl flag of
// the field's name (--steps sets `steps`) to that flag's current value.
// Fields without a flag keep their value. INVALID_ARGUMENT naming the flag
// and its value when the value does not fit the field (a number that is not
// finite, an unknown --loss).
absl::Status ApplyFlags(RunConfig* config);

// INVALID_ARGUMENT naming the flag and its value unless: counts (steps,
// batch, seq_len, accumulation, eval_batches, log_interval, the MAXIS sizes)
// are positive; intervals (warmup, eval_interval, checkpoint_interval,
// keep_checkpoints, stop_at_step) are >= 0; every float is finite and in its
// range; the loss and attention are known; one micro-batch, batch x
// (seq_len + 1) tokens, is within what the data service streams; and the
// run's token count fits in 64 bits.
absl::Status ValidateRunConfig(const RunConfig& config);

// The bytes of what Model keeps for one micro-batch's backward (every
// layer's activations, or with --activation_checkpointing each layer's input
// and one layer's) and its backward scratch.
uint64_t ActivationBytes(const RunConfig& config, const ModelConfig& model);

// INVALID_ARGUMENT naming --batch and --seq_len when the model's parameters
// and optimizer state (ModelMemoryBytes) and one micro-batch's activations
// (ActivationBytes) need more than `memory_bytes` (the backend's memory). A
// lower bound: the losses' scratch (exact CE's V x d gradient and its chunk of
// logits, MAXIS's workspace), the attention state and a GPU's context come on
// top, so a run that passes can still run out of device memory. With
// optimizer_shards > 1 a rank holds that share of the moments (ZeRO-1).
absl::Status ValidateBatchFitsMemory(const RunConfig& config, const ModelConfig& model,
                                     uint64_t memory_bytes, int optimizer_shards = 1);

// INVALID_ARGUMENT naming both shapes unless `batch` has row_length
// seq_len + 1, 1..`batch` rows, rows x row_length tokens and a loss mask that
// is empty or of the same length. (A bounded stream's last batch may be
// short.)
absl::Status CheckPackedBatch(const data::PackedBatch& batch, const RunConfig& config);

// The settings a checkpoint's run and this run must share
// (must_match_on_resume in the proto) that differ, one line per field:
// "seq_len: the checkpoint has 32, this run asks for 64".
std::vector<std::string> ResumeMismatches(const RunConfig& checkpoint, const RunConfig& run);

// Proto JSON with the proto field names and every field printed (defaults
// too, so the file shows the whole run).
std::string RunConfigToJson(const RunConfig& config);
// Unknown fields are an error (DATA_LOSS naming the parser's complaint).
absl::StatusOr<RunConfig> RunConfigFromJson(absl::string_view json);

// "maxis" or "ce".
absl::string_view LossFlagValue(RunConfig::Loss loss);

// The layer indices of --standard_attention_layers ("0,3"; empty: none), or
// INVALID_ARGUMENT naming the flag.
absl::StatusOr<std::vector<int64_t>> ParseStandardAttentionLayers(absl::string_view flag);

// Gives `model` the run's attention: --attention=randnla makes every layer
// RandNLA but those of --standard_attention_layers. INVALID_ARGUMENT naming
// the flag for a layer the model lacks, or for --attention=standard with a
// model config file that asks for RandNLA (the flag must say so too, so that
// the run's record tells the truth). Idempotent.
absl::Status ApplyAttentionFlags(const RunConfig& run, ModelConfig* model);

// What the loop's parts take from the run (for a valid config). The
// schedule's warmup is at most the run's steps.
LrSchedule ScheduleOf(const RunConfig& config);
AdamWConfig AdamWOf(const RunConfig& config);
LossSettings LossOf(const RunConfig& config);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_RUN_CONFIG_H_
