#include "trainer/run_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "data_service/batch_packer.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/util/json_util.h"

namespace maximus::trainer {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Reflection;

absl::Status BadFlag(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": ", why));
}

// One field's value as text: numbers as the flags print them, enums as
// their flag values.
std::string FieldText(const google::protobuf::Message& message, const FieldDescriptor* field) {
  const Reflection* r = message.GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(message, field));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(message, field));
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(message, field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(message, field));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat(r->GetDouble(message, field));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrCat(r->GetFloat(message, field));
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(message, field) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return absl::AsciiStrToLower(r->GetEnum(message, field)->name());
    case FieldDescriptor::CPPTYPE_STRING:
      return absl::StrCat("\"", r->GetString(message, field), "\"");
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return r->GetMessage(message, field).ShortDebugString();
  }
  return "?";
}

// Parses a flag's text into the field of the same name.
absl::Status SetField(RunConfig* config, const FieldDescriptor* field, const std::string& text) {
  const Reflection* r = config->GetReflection();
  const std::string& flag = field->name();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value = 0;
      if (!absl::SimpleAtoi(text, &value)) return BadFlag(flag, text, "not a 64-bit integer");
      r->SetInt64(config, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t value = 0;
      if (!absl::SimpleAtoi(text, &value)) {
        return BadFlag(flag, text, "not an unsigned 64-bit integer");
      }
      r->SetUInt64(config, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool value = false;
      if (!absl::SimpleAtob(text, &value)) return BadFlag(flag, text, "not true or false");
      r->SetBool(config, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double value = 0;
      if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
        return BadFlag(flag, text, "not a finite number");
      }
      r->SetDouble(config, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(config, field, text);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_ENUM: {
      const google::protobuf::EnumValueDescriptor* value =
          field->enum_type()->FindValueByName(absl::AsciiStrToUpper(text));
      if (value == nullptr || value->number() == 0) {
        std::string known;
        for (int i = 1; i < field->enum_type()->value_count(); ++i) {
          absl::StrAppend(&known, i > 1 ? " or " : "",
                          absl::AsciiStrToLower(field->enum_type()->value(i)->name()));
        }
        return BadFlag(flag, text, absl::StrCat("use ", known));
      }
      r->SetEnum(config, field, value);
      return absl::OkStatus();
    }
    default:
      return absl::InternalError(absl::StrCat("RunConfig.", flag, " has no flag form"));
  }
}

// Range checks by field name, so that the message names the flag.
absl::Status AtLeast(const RunConfig& config, absl::string_view name, int64_t min) {
  const FieldDescriptor* field = config.GetDescriptor()->FindFieldByName(std::string(name));
  const int64_t value = config.GetReflection()->GetInt64(config, field);
  if (value >= min) return absl::OkStatus();
  return BadFlag(name, absl::StrCat(value),
                 min == 1 ? "must be positive" : absl::StrCat("must be at least ", min));
}

absl::Status InRange(const RunConfig& config, absl::string_view name, double low, bool low_open,
                     double high, bool high_open) {
  const FieldDescriptor* field = config.GetDescriptor()->FindFieldByName(std::string(name));
  const double value = config.GetReflection()->GetDouble(config, field);
  const bool ok = std::isfinite(value) && (low_open ? value > low : value >= low) &&
                  (high_open ? value < high : value <= high);
  if (ok) return absl::OkStatus();
  const std::string range = std::isinf(high) ? absl::StrCat(low_open ? "> " : ">= ", low)
                                             : absl::StrCat("in ", low_open ? "(" : "[", low, ", ",
                                                            high, high_open ? ")" : "]");
  return BadFlag(name, absl::StrCat(value), absl::StrCat("must be finite and ", range));
}

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

RunConfig DefaultRunConfig() {
  RunConfig c;
  c.set_preset("tiny");
  c.set_steps(400);
  c.set_batch(4);
  c.set_seq_len(128);
  c.set_accumulation(1);
  c.set_lr(3e-3);
  c.set_warmup(30);
  c.set_decay_fraction(0.2);
  c.set_min_lr_ratio(0.1);
  c.set_weight_decay(0.1);
  c.set_adam_beta1(0.9);
  c.set_adam_beta2(0.95);
  c.set_adam_eps(1e-8);
  c.set_clip(1.0);
  c.set_loss(RunConfig::MAXIS);
  c.set_maxis_low_dim(64);
  c.set_maxis_stride(4);
  c.set_maxis_candidates(2048);
  c.set_maxis_aux_weight(0.2);
  c.set_attention("standard");
  c.set_backend("auto");
  c.set_seed(1);
  c.set_validation_fraction(0.02);
  c.set_eval_interval(50);
  c.set_eval_batches(4);
  c.set_log_interval(10);
  c.set_checkpoint_interval(100);
  c.set_keep_checkpoints(2);
  c.set_stop_at_step(0);
  return c;
}

absl::Status ApplyFlags(RunConfig* config) {
  const google::protobuf::Descriptor* descriptor = config->GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(field->name());
    if (flag == nullptr) continue;
    if (absl::Status s = SetField(config, field, flag->CurrentValue()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateRunConfig(const RunConfig& c) {
  for (absl::string_view count :
       {"steps", "batch", "seq_len", "accumulation", "eval_batches", "log_interval",
        "maxis_low_dim", "maxis_stride", "maxis_candidates"}) {
    if (absl::Status s = AtLeast(c, count, 1); !s.ok()) return s;
  }
  for (absl::string_view interval :
       {"warmup", "eval_interval", "checkpoint_interval", "keep_checkpoints", "stop_at_step"}) {
    if (absl::Status s = AtLeast(c, interval, 0); !s.ok()) return s;
  }
  struct Range {
    const char* name;
    double low;
    bool low_open;
    double high;
    bool high_open;
  };
  for (const Range& range :
       {Range{"lr", 0, true, kInf, false}, Range{"decay_fraction", 0, false, 1, false},
        Range{"min_lr_ratio", 0, false, 1, false}, Range{"weight_decay", 0, false, kInf, false},
        Range{"adam_beta1", 0, false, 1, true}, Range{"adam_beta2", 0, false, 1, true},
        Range{"adam_eps", 0, true, kInf, false}, Range{"clip", 0, false, kInf, false},
        Range{"maxis_aux_weight", 0, false, kInf, false},
        Range{"validation_fraction", 0, false, 1, true}}) {
    if (absl::Status s =
            InRange(c, range.name, range.low, range.low_open, range.high, range.high_open);
        !s.ok()) {
      return s;
    }
  }
  if (c.loss() != RunConfig::MAXIS && c.loss() != RunConfig::CE) {
    return BadFlag("loss", RunConfig::Loss_Name(c.loss()), "use maxis or ce");
  }
  if (c.attention() != "standard" && c.attention() != "randnla") {
    return BadFlag("attention", c.attention(),
                   "use standard (causal softmax) or randnla (kernels/randnla_attention.md)");
  }
  if (absl::StatusOr<std::vector<int64_t>> layers =
          ParseStandardAttentionLayers(c.standard_attention_layers());
      !layers.ok()) {
    return layers.status();
  } else if (!layers->empty() && c.attention() != "randnla") {
    return BadFlag("standard_attention_layers", c.standard_attention_layers(),
                   "needs --attention=randnla (with standard attention every layer is standard)");
  }
  // The data service's limits on one micro-batch (checked here, before the
  // narrowing to its 32-bit request fields).
  if (c.seq_len() > data::kMaxSeqLen) {
    return BadFlag("seq_len", absl::StrCat(c.seq_len()),
                   absl::StrCat("the data service streams at most ", data::kMaxSeqLen,
                                " tokens per sequence"));
  }
  if (c.batch() > data::kMaxBatchSize) {
    return BadFlag("batch", absl::StrCat(c.batch()),
                   absl::StrCat("the data service streams at most ", data::kMaxBatchSize,
                                " sequences per batch"));
  }
  data::StreamBatchesRequest request;
  request.mutable_selection()->set_split(data::SPLIT_TRAIN);
  request.mutable_selection()->set_world_size(1);
  request.set_seq_len(static_cast<uint32_t>(c.seq_len()));
  request.set_batch_size(static_cast<uint32_t>(c.batch()));
  if (absl::Status s = data::ValidateStreamRequest(request); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch=", c.batch(), " --seq_len=", c.seq_len(), ": ", s.message()));
  }
  // tokens_seen counts every token of the run in 64 bits.
  const __int128 tokens =
      static_cast<__int128>(c.steps()) * c.accumulation() * c.batch() * c.seq_len();
  if (tokens > std::numeric_limits<int64_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--steps=", c.steps(), " x --accumulation=", c.accumulation(), " x --batch=", c.batch(),
        " x --seq_len=", c.seq_len(), " tokens do not fit in 64 bits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> ParseStandardAttentionLayers(absl::string_view flag) {
  std::vector<int64_t> layers;
  if (flag.empty()) return layers;
  for (absl::string_view part : absl::StrSplit(flag, ',')) {
    int64_t layer = 0;
    if (!absl::SimpleAtoi(part, &layer) || layer < 0) {
      return BadFlag("standard_attention_layers", flag,
                     absl::StrCat("\"", part, "\" is not a layer index (comma-separated, from 0)"));
    }
    if (std::find(layers.begin(), layers.end(), layer) != layers.end()) {
      return BadFlag("standard_attention_layers", flag, absl::StrCat("layer ", layer, " twice"));
    }
    layers.push_back(layer);
  }
  return layers;
}

absl::Status ApplyAttentionFlags(const RunConfig& run, ModelConfig* model) {
  if (run.attention() == "standard") {
    if (model->attention != "standard") {
      return BadFlag("attention", run.attention(),
                     absl::StrCat("the model config asks for ", model->attention,
                                  " attention: pass --attention=", model->attention));
    }
    return absl::OkStatus();
  }
  MAXIMUS_ASSIGN_OR_RETURN(std::vector<int64_t> layers,
                           ParseStandardAttentionLayers(run.standard_attention_layers()));
  for (int64_t layer : layers) {
    if (layer >= model->layers) {
      return BadFlag("standard_attention_layers", run.standard_attention_layers(),
                     absl::StrCat("the model has layers 0..", model->layers - 1));
    }
  }
  model->attention = run.attention();
  model->standard_attention_layers = std::move(layers);
  return ValidateModelConfig(*model);
}

uint64_t ActivationBytes(const RunConfig& c, const ModelConfig& m) {
  const long double tokens = static_cast<long double>(c.batch()) * c.seq_len();
  const long double d = m.hidden, q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim,
                    f = m.mlp_hidden;
  // Model::Activations: per layer 6 d + 3 q + 3 kv + 3 f values (and row
  // statistics); the backward's scratch 7 d + 3 q + 3 kv + 3 f.
  const long double layer = 6 * d + 3 * q + 3 * kv + 3 * f + m.heads + m.kv_heads + 4;
  const long double kept =
      c.activation_checkpointing() ? layer + (m.layers - 1) * d : layer * m.layers;
  const long double bytes = tokens * (kept + 7 * d + 3 * q + 3 * kv + 3 * f) * sizeof(float);
  return bytes > static_cast<long double>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(bytes);
}

absl::Status ValidateBatchFitsMemory(const RunConfig& c, const ModelConfig& model,
                                     uint64_t memory_bytes, int optimizer_shards) {
  const long double parameters = ModelMemoryBytes(model, optimizer_shards);
  const long double activations = ActivationBytes(c, model);
  if (parameters + activations <= memory_bytes) return absl::OkStatus();
  constexpr double kGiB = 1ull << 30;
  return absl::InvalidArgumentError(absl::StrFormat(
      "--batch=%d --seq_len=%d: the parameters and optimizer state (%.3g GiB) and one "
      "micro-batch's activations (%.3g GiB) need more than the %.3g GiB of the backend's "
      "memory%s",
      c.batch(), c.seq_len(), static_cast<double>(parameters / kGiB),
      static_cast<double>(activations / kGiB), static_cast<double>(memory_bytes) / kGiB,
      c.activation_checkpointing() ? "" : " (--activation_checkpointing keeps less)"));
}

absl::Status CheckPackedBatch(const data::PackedBatch& batch, const RunConfig& c) {
  const uint64_t tokens = batch.tokens().size() / sizeof(int32_t);
  const bool ok = batch.row_length() == static_cast<uint64_t>(c.seq_len()) + 1 &&
                  batch.rows() >= 1 && batch.rows() <= static_cast<uint64_t>(c.batch()) &&
                  batch.tokens().size() % sizeof(int32_t) == 0 &&
                  tokens == uint64_t{batch.rows()} * batch.row_length() &&
                  (batch.loss_mask().empty() || batch.loss_mask().size() == tokens);
  if (ok) return absl::OkStatus();
  return absl::DataLossError(absl::StrFormat(
      "the data service returned a batch of %d rows x %d tokens (%d token bytes, a loss mask of "
      "%d bytes); the trainer asked for at most %d rows x %d tokens (seq_len %d + 1) and a mask "
      "of the same length or none",
      batch.rows(), batch.row_length(), batch.tokens().size(), batch.loss_mask().size(), c.batch(),
      c.seq_len() + 1, c.seq_len()));
}

std::vector<std::string> ResumeMismatches(const RunConfig& checkpoint, const RunConfig& run) {
  std::vector<std::string> out;
  const google::protobuf::Descriptor* descriptor = RunConfig::descriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (!field->options().GetExtension(must_match_on_resume)) continue;
    const std::string saved = FieldText(checkpoint, field);
    const std::string asked = FieldText(run, field);
    if (saved != asked) {
      out.push_back(absl::StrCat(field->name(), ": the checkpoint has ", saved,
                                 ", this run asks for ", asked));
    }
  }
  return out;
}

std::string RunConfigToJson(const RunConfig& config) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  std::string json;
  // Printing a message of this process's own descriptor cannot fail.
  (void)google::protobuf::util::MessageToJsonString(config, &json, options);
  return json;
}

absl::StatusOr<RunConfig> RunConfigFromJson(absl::string_view json) {
  RunConfig config;
  const auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &config);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat("not a RunConfig: ", status.message().ToString()));
  }
  return config;
}

absl::string_view LossFlagValue(RunConfig::Loss loss) {
  return loss == RunConfig::CE ? "ce" : "maxis";
}

LrSchedule ScheduleOf(const RunConfig& c) {
  LrSchedule s;
  s.peak_lr = static_cast<float>(c.lr());
  s.total_steps = std::max<int64_t>(1, c.steps());
  s.warmup_steps = std::min(c.warmup(), s.total_steps);
  s.decay_fraction = static_cast<float>(c.decay_fraction());
  s.min_lr_ratio = static_cast<float>(c.min_lr_ratio());
  return s;
}

AdamWConfig AdamWOf(const RunConfig& c) {
  AdamWConfig a;
  a.beta1 = static_cast<float>(c.adam_beta1());
  a.beta2 = static_cast<float>(c.adam_beta2());
  a.eps = static_cast<float>(c.adam_eps());
  a.weight_decay = static_cast<float>(c.weight_decay());
  return a;
}

LossSettings LossOf(const RunConfig& c) {
  LossSettings loss;
  loss.kind = c.loss() == RunConfig::CE ? LossKind::kCrossEntropy : LossKind::kMaxis;
  loss.maxis.low_dim = c.maxis_low_dim();
  loss.maxis.scout_stride = c.maxis_stride();
  loss.maxis.candidate_budget = c.maxis_candidates();
  loss.maxis.aux_weight = static_cast<float>(c.maxis_aux_weight());
  return loss;
}

}  // namespace maximus::trainer
