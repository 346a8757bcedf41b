// The training loop on the CPU backend over a real embedded store: exact
// resume, refusal of foreign checkpoints, learning, metrics and checkpoints.

#include "trainer/trainer.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "data_service/embedded_data_source.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/trainer_test_util.h"

namespace maximus::trainer {
namespace {

constexpr int32_t kVocab = kTestVocab;

std::unique_ptr<data::EmbeddedDataSource> MakeData(const std::string& name) {
  return MakeTestData(name, 400);
}

TrainerOptions Options(const std::string& out) { return TestTrainerOptions(out); }

std::vector<float> Values(Model& model, Parameter& p) {
  std::vector<float> host(p.size());
  model.backend()->CopyToHost(p.value->data(), p.size(), host.data());
  return host;
}

TEST(TrainerTest, StopAndResumeEqualsRunningStraight) {
  CpuBackend backend;
  auto data = MakeData("resume_store");
  // 8 steps straight.
  TrainerOptions straight = Options("straight");
  auto a = Trainer::Create(&backend, data.get(), straight);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Run().ok());
  ASSERT_EQ((*a)->step_losses().size(), 8u);
  // 4 steps, stop (as if interrupted), then resume in a new process-like
  // trainer for the other 4.
  TrainerOptions first = Options("halves");
  first.run.set_stop_at_step(4);
  auto b = Trainer::Create(&backend, data.get(), first);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->Run().ok());
  ASSERT_EQ((*b)->step_losses().size(), 4u);
  TrainerOptions second = Options("halves_resumed");
  second.run.set_resume(first.run.out_dir());  // its checkpoints/latest
  auto c = Trainer::Create(&backend, data.get(), second);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Run().ok());
  ASSERT_EQ((*c)->step_losses().size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ((*b)->step_losses()[i], (*a)->step_losses()[i]) << "step " << i + 1;
    EXPECT_EQ((*c)->step_losses()[i], (*a)->step_losses()[4 + i]) << "step " << i + 5;
  }
  for (size_t i = 0; i < (*a)->model().parameters().size(); ++i) {
    EXPECT_EQ(Values((*a)->model(), (*a)->model().parameters()[i]),
              Values((*c)->model(), (*c)->model().parameters()[i]))
        << (*a)->model().parameters()[i].name;
  }
}

TEST(TrainerTest, ForeignCheckpointsAreRefused) {
  CpuBackend backend;
  auto data = MakeData("refuse_store");
  TrainerOptions o = Options("refuse");
  o.run.set_steps(2);
  o.run.set_warmup(1);
  auto t = Trainer::Create(&backend, data.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)->Run().ok());

  TrainerOptions other_tokenizer = o;
  other_tokenizer.run.set_out_dir(data::FreshTestDir("refuse_tok"));
  other_tokenizer.run.set_resume(o.run.out_dir());
  other_tokenizer.tokenizer_fingerprint = "another";
  auto r1 = Trainer::Create(&backend, data.get(), other_tokenizer);
  ASSERT_FALSE(r1.ok());
  // The data check comes first: the store was built with another tokenizer.
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r1.status().message().find("another"), absl::string_view::npos) << r1.status();

  TrainerOptions other_model = o;
  other_model.run.set_out_dir(data::FreshTestDir("refuse_model"));
  other_model.run.set_resume(o.run.out_dir());
  other_model.model.layers = 3;
  auto r2 = Trainer::Create(&backend, data.get(), other_model);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r2.status().message().find("another model config"), absl::string_view::npos)
      << r2.status();

  TrainerOptions other_lr = o;
  other_lr.run.set_out_dir(data::FreshTestDir("refuse_lr"));
  other_lr.run.set_resume(o.run.out_dir());
  other_lr.run.set_lr(1e-2);
  other_lr.run.set_seq_len(16);
  auto r3 = Trainer::Create(&backend, data.get(), other_lr);
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), absl::StatusCode::kFailedPrecondition);
  // Every differing field, with both values.
  EXPECT_NE(r3.status().message().find("lr: the checkpoint has 0.003, this run asks for 0.01"),
            absl::string_view::npos)
      << r3.status();
  EXPECT_NE(r3.status().message().find("seq_len: the checkpoint has 32, this run asks for 16"),
            absl::string_view::npos)
      << r3.status();

  // What may change on resume: intervals, paths, the backend.
  TrainerOptions longer_intervals = o;
  longer_intervals.run.set_out_dir(data::FreshTestDir("refuse_none"));
  longer_intervals.run.set_resume(o.run.out_dir());
  longer_intervals.run.set_eval_interval(7);
  longer_intervals.run.set_keep_checkpoints(5);
  longer_intervals.run.set_data("elsewhere");
  EXPECT_TRUE(Trainer::Create(&backend, data.get(), longer_intervals).ok());

  // A checkpoint of format 1 (settings of their own shape under
  // "training") still reads, but is not resumed.
  {
    const std::string old_run = data::FreshTestDir("refuse_old_format");
    std::filesystem::create_directories(old_run);
    std::filesystem::copy(o.run.out_dir() + "/checkpoints", old_run + "/checkpoints",
                          std::filesystem::copy_options::recursive);
    auto dir = ResolveCheckpointDir(old_run);
    ASSERT_TRUE(dir.ok()) << dir.status();
    std::ifstream in(*dir + "/checkpoint.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["format_version"] = 1;
    j["training"] = {{"loss", "maxis"}, {"batch_rows", 2}};
    j.erase("run_config");
    std::ofstream(*dir + "/checkpoint.json") << j.dump();
    auto state = ReadCheckpointState(*dir, nullptr);
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_EQ(state->format_version, 1);
    EXPECT_EQ(state->training["batch_rows"], 2);
    TrainerOptions resume_old = o;
    resume_old.run.set_out_dir(data::FreshTestDir("refuse_old_format_out"));
    resume_old.run.set_resume(old_run);
    auto r4 = Trainer::Create(&backend, data.get(), resume_old);
    EXPECT_EQ(r4.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r4.status().message().find("format version 1"), absl::string_view::npos)
        << r4.status();
  }

  TrainerOptions missing = o;
  missing.run.set_out_dir(data::FreshTestDir("refuse_missing"));
  missing.run.set_resume(data::FreshTestDir("nothing_here"));
  EXPECT_EQ(Trainer::Create(&backend, data.get(), missing).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TrainerTest, PruningKeepsLatestAndTheResumedCheckpoint) {
  CpuBackend backend;
  auto data = MakeData("prune_store");
  TrainerOptions o = Options("prune");
  o.run.set_checkpoint_interval(2);  // step-2, 4, 6, 8
  o.run.set_keep_checkpoints(0);     // all of them
  auto first = Trainer::Create(&backend, data.get(), o);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Run().ok());
  const std::string root = o.run.out_dir() + "/checkpoints";
  ASSERT_TRUE(std::filesystem::exists(root + "/step-00000008"));

  // Back to step 4 in the same directory, keeping one checkpoint: the save
  // at step 5 sorts below step-6 and step-8 of the abandoned run.
  TrainerOptions again = o;
  again.run.set_resume(root + "/step-00000004");
  again.run.set_keep_checkpoints(1);
  again.run.set_stop_at_step(5);
  auto resumed = Trainer::Create(&backend, data.get(), again);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_TRUE((*resumed)->Run().ok());
  std::ifstream latest_file(root + "/latest");
  std::string latest;
  latest_file >> latest;
  EXPECT_EQ(latest, "step-00000005");
  EXPECT_TRUE(std::filesystem::exists(root + "/step-00000005/checkpoint.json"));
  EXPECT_TRUE(std::filesystem::exists(root + "/step-00000004/checkpoint.json"));
  EXPECT_FALSE(std::filesystem::exists(root + "/step-00000002"));
  auto dir = ResolveCheckpointDir(o.run.out_dir());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(std::filesystem::path(*dir).filename(), "step-00000005");
}

TEST(TrainerTest, LearnsAndWritesItsOutputs) {
  CpuBackend backend;
  auto data = MakeData("learn_store");
  TrainerOptions o = Options("learn");
  o.run.set_steps(40);
  o.run.set_warmup(4);
  o.run.set_lr(1e-2);
  o.run.set_eval_interval(20);
  o.run.set_checkpoint_interval(10);
  auto t = Trainer::Create(&backend, data.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  auto before = (*t)->ValidationLoss();
  ASSERT_TRUE(before.ok());
  EXPECT_NEAR(*before, std::log(static_cast<double>(kVocab)), 1.0);
  ASSERT_TRUE((*t)->Run().ok());
  const TrainerStatus status = (*t)->status();
  EXPECT_EQ(status.state, TrainerStatus::State::kFinished);
  EXPECT_EQ(status.step, 40);
  EXPECT_LT(status.validation_loss, *before - 1.0) << "validation loss did not fall";
  EXPECT_EQ(status.tokens_seen, 40 * 2 * 2 * 32);
  namespace fs = std::filesystem;
  const std::string out = o.run.out_dir();
  EXPECT_TRUE(fs::exists(out + "/metrics.csv"));
  EXPECT_TRUE(fs::exists(out + "/loss.svg"));
  EXPECT_TRUE(fs::exists(out + "/checkpoints/step-00000040/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/checkpoints/step-00000040/optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/checkpoints/latest"));
  // Checkpoints every 10 steps, the newest 2 kept.
  EXPECT_FALSE(fs::exists(out + "/checkpoints/step-00000020"));
  EXPECT_TRUE(fs::exists(out + "/checkpoints/step-00000030"));
  // checkpoint.json records the RunConfig as proto JSON.
  auto state = ReadCheckpointState(out + "/checkpoints/step-00000040", nullptr);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->format_version, kCheckpointFormatVersion);
  auto saved = RunConfigFromJson(state->training.dump());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->SerializeAsString(), o.run.SerializeAsString());
  bool events = false;
  for (const auto& entry : fs::directory_iterator(out)) {
    events |= entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_TRUE(events);
  int64_t next = 0;
  const std::vector<MetricPoint> points = (*t)->MetricsSince(0, &next);
  EXPECT_GT(next, 40 * 4);
  int val_points = 0;
  for (const MetricPoint& p : points) val_points += p.tag == "val/loss";
  EXPECT_EQ(val_points, 3);  // steps 0, 20 and 40
}

// An observer woken by a step's metric points finds a status that includes
// that step (TrainerService answers GetStatus from it).
// --attention=randnla on the CPU: the validation loss falls, the scorer and
// sketch parameters move and are checkpointed, a resume continues exactly,
// and a run of another attention kind cannot resume from the checkpoint.
TEST(TrainerTest, TrainsWithRandnlaAttention) {
  CpuBackend backend;
  auto data = MakeData("randnla_store");
  TrainerOptions o = Options("randnla");
  o.model.randnla_block = 8;
  o.model.randnla_detail = 4;
  o.model.randnla_sketch = 4;
  o.run.set_attention("randnla");
  o.run.set_standard_attention_layers("1");
  o.run.set_steps(30);
  o.run.set_warmup(3);
  o.run.set_lr(1e-2);
  o.run.set_eval_interval(0);
  o.run.set_checkpoint_interval(15);
  o.run.set_keep_checkpoints(0);
  auto t = Trainer::Create(&backend, data.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  Model& model = (*t)->model();
  EXPECT_EQ(model.config().RandnlaLayers(), 1);
  Parameter* scale = model.Find("model.layers.0.self_attn.sketch.scale");
  Parameter* scorer = model.Find("model.layers.0.self_attn.importance_scorer.in_proj.weight");
  ASSERT_NE(scale, nullptr);
  ASSERT_NE(scorer, nullptr);
  EXPECT_EQ(model.Find("model.layers.1.self_attn.sketch.scale"), nullptr);
  const std::vector<float> scale_before = Values(model, *scale);
  const std::vector<float> scorer_before = Values(model, *scorer);
  auto before = (*t)->ValidationLoss();
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE((*t)->Run().ok());
  const TrainerStatus status = (*t)->status();
  EXPECT_EQ(status.step, 30);
  EXPECT_LT(status.validation_loss, *before - 1.0) << "validation loss did not fall";
  EXPECT_NE(Values(model, *scale), scale_before);
  EXPECT_NE(Values(model, *scorer), scorer_before);

  // Resuming from step 15 gives step 30's parameters again.
  TrainerOptions resumed = o;
  resumed.run.set_out_dir(data::FreshTestDir("randnla_resumed"));
  resumed.run.set_resume(o.run.out_dir() + "/checkpoints/step-00000015");
  auto r = Trainer::Create(&backend, data.get(), resumed);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->Run().ok());
  EXPECT_EQ(Values((*r)->model(), *(*r)->model().Find("model.layers.0.self_attn.sketch.scale")),
            Values(model, *scale));

  for (auto [attention, layers] :
       {std::pair<const char*, const char*>{"standard", ""}, {"randnla", ""}}) {
    TrainerOptions other = o;
    other.run.set_out_dir(data::FreshTestDir("randnla_other"));
    other.run.set_resume(o.run.out_dir());
    other.run.set_attention(attention);
    other.run.set_standard_attention_layers(layers);
    auto refused = Trainer::Create(&backend, data.get(), other);
    ASSERT_FALSE(refused.ok()) << attention;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(refused.status().message().find(
                  "has RandNLA attention (standard on layers 1), this run asks for"),
              absl::string_view::npos)
        << refused.status();
  }
}

TEST(TrainerTest, StatusIncludesEveryPublishedStep) {
  CpuBackend backend;
  auto data = MakeData("observe_store");
  TrainerOptions o = Options("observe");
  o.run.set_steps(30);
  o.run.set_accumulation(1);
  o.run.set_eval_interval(0);
  auto t = Trainer::Create(&backend, data.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  std::thread run([&] { EXPECT_TRUE((*t)->Run().ok()); });
  int64_t next = 0, checked = 0;
  for (;;) {
    const bool ended = (*t)->status().state == TrainerStatus::State::kFinished;
    for (const MetricPoint& p : (*t)->MetricsSince(next, &next)) {
      const TrainerStatus now = (*t)->status();
      ASSERT_GE(now.step, p.step) << p.tag;
      if (p.tag == "train/loss") EXPECT_GT(now.tokens_seen, 0);
      ++checked;
    }
    if (ended) break;
    (*t)->WaitForMetrics(next, absl::Seconds(10));
  }
  run.join();
  EXPECT_GE(checked, 30 * 4);
}

TEST(TrainerTest, BadOptionsNameTheFlag) {
  CpuBackend backend;
  auto data = MakeData("bad_store");
  TrainerOptions o = Options("bad");
  o.run.set_seq_len(0);
  auto t = Trainer::Create(&backend, data.get(), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("--seq_len=0"), absl::string_view::npos) << t.status();
  // Beyond 32 bits: refused, not wrapped into the data request.
  o = Options("bad_wrap");
  o.run.set_seq_len((int64_t{1} << 32) + 16);
  t = Trainer::Create(&backend, data.get(), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("--seq_len=4294967312"), absl::string_view::npos)
      << t.status();
  // Within the data service's limits, but the attention scores of one
  // micro-batch (512 TiB) exceed any memory.
  o = Options("bad_memory");
  o.run.set_batch(64);
  o.run.set_seq_len(int64_t{1} << 20);
  t = Trainer::Create(&backend, data.get(), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("--batch=64 --seq_len=1048576: the parameters and optimizer state"),
            absl::string_view::npos)
      << t.status();
  o = Options("bad2");
  o.model.vocab_size = 100;
  t = Trainer::Create(&backend, data.get(), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("vocabulary"), absl::string_view::npos) << t.status();
}

}  // namespace
}  // namespace maximus::trainer
