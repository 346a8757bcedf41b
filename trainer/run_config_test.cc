#include "trainer/run_config.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

// A program's flags, as trainer/main.cc defines them (a subset).
ABSL_FLAG(int64_t, steps, 400, "");
ABSL_FLAG(int64_t, seq_len, 128, "");
ABSL_FLAG(double, lr, 3e-3, "");
ABSL_FLAG(std::string, loss, "maxis", "");
ABSL_FLAG(uint64_t, seed, 1, "");
ABSL_FLAG(std::string, out_dir, "", "");

namespace maximus::trainer {
namespace {

using google::protobuf::FieldDescriptor;

void ExpectError(const RunConfig& config, const std::string& text) {
  const absl::Status s = ValidateRunConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_NE(s.message().find(text), absl::string_view::npos) << s;
}

TEST(RunConfigTest, DefaultsAreValidAndTheDefaultRun) {
  const RunConfig c = DefaultRunConfig();
  EXPECT_TRUE(ValidateRunConfig(c).ok()) << ValidateRunConfig(c);
  EXPECT_EQ(c.preset(), "tiny");
  EXPECT_EQ(c.steps(), 400);
  EXPECT_EQ(c.batch(), 4);
  EXPECT_EQ(c.seq_len(), 128);
  EXPECT_EQ(c.loss(), RunConfig::MAXIS);
  EXPECT_EQ(c.checkpoint_interval(), 100);
}

TEST(RunConfigTest, FlagsSetTheFieldsOfTheirNames) {
  absl::SetFlag(&FLAGS_steps, 12);
  absl::SetFlag(&FLAGS_seq_len, 64);
  absl::SetFlag(&FLAGS_lr, 0.5);
  absl::SetFlag(&FLAGS_loss, "ce");
  absl::SetFlag(&FLAGS_seed, 18446744073709551615u);
  absl::SetFlag(&FLAGS_out_dir, "runs/x");
  RunConfig c = DefaultRunConfig();
  ASSERT_TRUE(ApplyFlags(&c).ok());
  EXPECT_EQ(c.steps(), 12);
  EXPECT_EQ(c.seq_len(), 64);
  EXPECT_EQ(c.lr(), 0.5);
  EXPECT_EQ(c.loss(), RunConfig::CE);
  EXPECT_EQ(c.seed(), 18446744073709551615u);
  EXPECT_EQ(c.out_dir(), "runs/x");
  // No flag: untouched.
  EXPECT_EQ(c.batch(), 4);
  EXPECT_EQ(c.eval_interval(), 50);

  absl::SetFlag(&FLAGS_loss, "sampled");
  absl::Status s = ApplyFlags(&c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--loss=sampled: use maxis or ce"), absl::string_view::npos) << s;
  absl::SetFlag(&FLAGS_loss, "maxis");
  absl::SetFlag(&FLAGS_lr, std::nan(""));
  s = ApplyFlags(&c);
  EXPECT_NE(s.message().find("--lr=nan: not a finite number"), absl::string_view::npos) << s;
  absl::SetFlag(&FLAGS_lr, 3e-3);
}

TEST(RunConfigTest, RangesNameTheFlagAndValue) {
  RunConfig c = DefaultRunConfig();
  c.set_steps(0);
  ExpectError(c, "--steps=0: must be positive");
  c = DefaultRunConfig();
  c.set_batch(-3);
  ExpectError(c, "--batch=-3: must be positive");
  c = DefaultRunConfig();
  c.set_maxis_candidates(0);
  ExpectError(c, "--maxis_candidates=0");
  c = DefaultRunConfig();
  c.set_eval_interval(-1);
  ExpectError(c, "--eval_interval=-1: must be at least 0");
  c = DefaultRunConfig();
  c.set_checkpoint_interval(0);  // An interval may be 0.
  EXPECT_TRUE(ValidateRunConfig(c).ok());
  c.set_lr(INFINITY);
  ExpectError(c, "--lr=inf: must be finite");
  c = DefaultRunConfig();
  c.set_lr(0);
  ExpectError(c, "--lr=0: must be finite and > 0");
  c = DefaultRunConfig();
  c.set_validation_fraction(1);
  ExpectError(c, "--validation_fraction=1: must be finite and in [0, 1)");
  c = DefaultRunConfig();
  c.set_decay_fraction(std::nan(""));
  ExpectError(c, "--decay_fraction=nan");
  c = DefaultRunConfig();
  c.set_loss(RunConfig::LOSS_UNSPECIFIED);
  ExpectError(c, "--loss=LOSS_UNSPECIFIED");
  c = DefaultRunConfig();
  c.set_attention("linear");
  ExpectError(c, "--attention=linear");
}

TEST(RunConfigTest, AttentionFlagsReachTheModelAndNameTheFlag) {
  RunConfig c = DefaultRunConfig();
  c.set_standard_attention_layers("1");
  ExpectError(c, "--standard_attention_layers=1: needs --attention=randnla");
  c.set_attention("randnla");
  EXPECT_TRUE(ValidateRunConfig(c).ok());
  for (const char* bad : {"1,x", "-1", "1,,2", "2,2"}) {
    c.set_standard_attention_layers(bad);
    ExpectError(c, absl::StrCat("--standard_attention_layers=", bad));
  }
  ModelConfig model = *PresetModelConfig("tiny");
  c.set_standard_attention_layers("0,3");
  ASSERT_TRUE(ApplyAttentionFlags(c, &model).ok());
  EXPECT_EQ(model.RandnlaLayers(), 2);
  EXPECT_FALSE(model.IsRandnlaLayer(0));
  EXPECT_TRUE(model.IsRandnlaLayer(1));
  EXPECT_EQ(AttentionDescription(model), "RandNLA attention (standard on layers 0, 3)");
  ASSERT_TRUE(ApplyAttentionFlags(c, &model).ok());  // idempotent
  EXPECT_EQ(model.RandnlaLayers(), 2);
  c.set_standard_attention_layers("4");
  const absl::Status beyond = ApplyAttentionFlags(c, &model);
  EXPECT_NE(beyond.message().find("--standard_attention_layers=4: the model has layers 0..3"),
            std::string::npos)
      << beyond;
  // A model file that asks for RandNLA needs the flag to say so.
  RunConfig standard = DefaultRunConfig();
  const absl::Status file = ApplyAttentionFlags(standard, &model);
  EXPECT_NE(file.message().find("--attention=standard: the model config asks for randnla"),
            std::string::npos)
      << file;
}

TEST(RunConfigTest, BatchShapeWithinTheDataServiceAndSixtyFourBits) {
  RunConfig c = DefaultRunConfig();
  // 2^32 + 128 would wrap to 128 in the data request's 32-bit field.
  c.set_seq_len((int64_t{1} << 32) + 128);
  ExpectError(c, "--seq_len=4294967424: the data service streams at most 1048576");
  c = DefaultRunConfig();
  c.set_batch(int64_t{1} << 40);
  ExpectError(c, "--batch=1099511627776");
  c = DefaultRunConfig();
  c.set_batch(65536);
  c.set_seq_len(1 << 20);
  ExpectError(c, "--batch=65536 --seq_len=1048576: batch_size * (seq_len + 1)");
  c = DefaultRunConfig();
  c.set_steps(int64_t{1} << 62);
  ExpectError(c, "do not fit in 64 bits");
}

TEST(RunConfigTest, MemoryCheckNamesTheBatchShape) {
  RunConfig c = DefaultRunConfig();
  c.set_batch(8);
  c.set_seq_len(2048);
  ModelConfig model;  // tiny: hidden 256, 4 layers, MLP 1024, vocabulary 262,144
  const uint64_t parameters = ModelMemoryBytes(model);
  // Per token: 4 layers x (6·256 + 3·256 + 3·64 + 3·1024 + 9) + scratch
  // (7·256 + 3·256 + 3·64 + 3·1024) = 4 x 5577 + 5824 values.
  const uint64_t activations = uint64_t{8} * 2048 * (4 * 5577 + 5824) * 4;
  EXPECT_EQ(ActivationBytes(c, model), activations);
  EXPECT_TRUE(ValidateBatchFitsMemory(c, model, parameters + activations).ok());
  const absl::Status s = ValidateBatchFitsMemory(c, model, parameters + activations - 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--batch=8 --seq_len=2048: the parameters"), absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find("--activation_checkpointing keeps less"), absl::string_view::npos)
      << s;
  // Checkpointing keeps each layer's input and one layer's activations.
  c.set_activation_checkpointing(true);
  EXPECT_EQ(ActivationBytes(c, model), uint64_t{8} * 2048 * (5577 + 3 * 256 + 5824) * 4);
  EXPECT_TRUE(ValidateBatchFitsMemory(c, model, parameters + activations - 1).ok());
}

data::PackedBatch Batch(uint32_t rows, uint32_t row_length, size_t tokens, size_t mask) {
  data::PackedBatch b;
  b.set_rows(rows);
  b.set_row_length(row_length);
  b.set_tokens(std::string(tokens * 4, '\0'));
  b.set_loss_mask(std::string(mask, '\1'));
  return b;
}

TEST(RunConfigTest, PackedBatchesMustHaveTheAskedShape) {
  RunConfig c = DefaultRunConfig();
  c.set_batch(4);
  c.set_seq_len(8);
  EXPECT_TRUE(CheckPackedBatch(Batch(4, 9, 36, 0), c).ok());
  EXPECT_TRUE(CheckPackedBatch(Batch(4, 9, 36, 36), c).ok());
  EXPECT_TRUE(CheckPackedBatch(Batch(1, 9, 9, 9), c).ok());  // A short last batch.
  for (const data::PackedBatch& bad : {Batch(4, 8, 32, 0), Batch(5, 9, 45, 0), Batch(0, 9, 0, 0),
                                       Batch(4, 9, 35, 0), Batch(4, 9, 36, 35)}) {
    const absl::Status s = CheckPackedBatch(bad, c);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << bad.ShortDebugString();
    EXPECT_NE(s.message().find(
                  absl::StrCat("batch of ", bad.rows(), " rows x ", bad.row_length(), " tokens")),
              absl::string_view::npos)
        << s;
    EXPECT_NE(s.message().find("at most 4 rows x 9 tokens"), absl::string_view::npos) << s;
  }
  data::PackedBatch odd = Batch(4, 9, 36, 0);
  odd.mutable_tokens()->push_back('\0');  // Not whole int32s.
  EXPECT_FALSE(CheckPackedBatch(odd, c).ok());
}

// Changes one field of `c` (any type) to another value.
void Change(RunConfig* c, const FieldDescriptor* field) {
  const google::protobuf::Reflection* r = c->GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
      r->SetInt64(c, field, r->GetInt64(*c, field) + 1);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->SetUInt64(c, field, r->GetUInt64(*c, field) + 1);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->SetDouble(c, field, r->GetDouble(*c, field) + 0.25);
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(c, field, r->GetString(*c, field) + "x");
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->SetEnumValue(c, field, r->GetEnumValue(*c, field) == 1 ? 2 : 1);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->SetBool(c, field, !r->GetBool(*c, field));
      break;
    default:
      FAIL() << "unexpected field type of " << field->name();
  }
}

TEST(RunConfigTest, ResumeComparesExactlyTheMarkedFields) {
  const RunConfig saved = DefaultRunConfig();
  EXPECT_TRUE(ResumeMismatches(saved, saved).empty());
  const google::protobuf::Descriptor* d = RunConfig::descriptor();
  int marked = 0;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* field = d->field(i);
    RunConfig run = saved;
    Change(&run, field);
    const std::vector<std::string> differences = ResumeMismatches(saved, run);
    if (field->options().GetExtension(must_match_on_resume)) {
      ++marked;
      ASSERT_EQ(differences.size(), 1u) << field->name();
      EXPECT_EQ(differences[0].rfind(field->name() + ": the checkpoint has ", 0), 0u)
          << differences[0];
    } else {
      EXPECT_TRUE(differences.empty()) << field->name();
    }
  }
  EXPECT_GT(marked, 15);
  RunConfig run = saved;
  run.set_seq_len(64);
  run.set_loss(RunConfig::CE);
  run.set_checkpoint_interval(7);  // May change.
  run.set_out_dir("elsewhere");    // May change.
  const std::vector<std::string> differences = ResumeMismatches(saved, run);
  ASSERT_EQ(differences.size(), 2u);
  EXPECT_EQ(differences[0], "seq_len: the checkpoint has 128, this run asks for 64");
  EXPECT_EQ(differences[1], "loss: the checkpoint has maxis, this run asks for ce");
}

TEST(RunConfigTest, JsonRoundTripPrintsEveryField) {
  RunConfig c = DefaultRunConfig();
  c.set_out_dir("runs/a");
  c.set_seed(18446744073709551615u);
  const std::string json = RunConfigToJson(c);
  EXPECT_NE(json.find("\"stop_at_step\""), std::string::npos) << json;  // A zero default.
  EXPECT_NE(json.find("\"seq_len\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"MAXIS\""), std::string::npos) << json;
  absl::StatusOr<RunConfig> back = RunConfigFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), c.SerializeAsString());
  const absl::StatusOr<RunConfig> unknown = RunConfigFromJson(R"({"batch_rows": 4})");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kDataLoss);
}

TEST(RunConfigTest, WhatTheLoopTakes) {
  RunConfig c = DefaultRunConfig();
  c.set_steps(10);
  c.set_warmup(30);
  const LrSchedule s = ScheduleOf(c);
  EXPECT_EQ(s.warmup_steps, 10);  // At most the run.
  EXPECT_EQ(s.total_steps, 10);
  EXPECT_FLOAT_EQ(s.peak_lr, 3e-3f);
  EXPECT_FLOAT_EQ(AdamWOf(c).weight_decay, 0.1f);
  c.set_loss(RunConfig::CE);
  c.set_maxis_candidates(77);
  const LossSettings loss = LossOf(c);
  EXPECT_EQ(loss.kind, LossKind::kCrossEntropy);
  EXPECT_EQ(loss.maxis.candidate_budget, 77);
  EXPECT_EQ(LossFlagValue(RunConfig::MAXIS), "maxis");
}

}  // namespace
}  // namespace maximus::trainer
