// Checkpoints that cannot fool a resume: checksums of every file, values
// checked for corruption, checkpoint.json's fields range-checked.

#include "trainer/io/checkpoint.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/safetensors.h"
#include "trainer/model/model.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = 1;
  c.head_dim = 8;
  c.mlp_hidden = 24;
  c.sliding_window = 3;
  c.max_position_embeddings = 64;
  return c;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A model with its moments (views into the arena, as the trainer keeps them)
// saved to a fresh checkpoint directory.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::Create(&backend_, SmallConfig());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    model_->Initialize(7);
    ParameterArena& arena = model_->arena();
    std::vector<float> ones(arena.size(), 0.25f);
    backend_.CopyFromHost(ones.data(), arena.size(), arena.m().data());
    backend_.CopyFromHost(ones.data(), arena.size(), arena.v().data());
    for (const ParameterArena::Segment& s : arena.segments()) {
      m_.push_back(std::make_unique<BufferView>(arena.m().data() + s.offset, s.size, DType::kF32));
      v_.push_back(std::make_unique<BufferView>(arena.v().data() + s.offset, s.size, DType::kF32));
    }
    const std::string root =
        absl::StrCat(::testing::TempDir(), "/checkpoint_test_",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
    dir_ = root + "/step-00000003";
    CheckpointState state;
    state.step = 3;
    state.tokens_seen = 96;
    state.tokenizer_fingerprint = "test-tokenizer";
    state.tokenizer_vocab_size = 40;
    ASSERT_TRUE(SaveCheckpoint(dir_, *model_, m_, v_, state).ok());
  }

  absl::Status Load(bool with_moments) {
    return LoadCheckpointTensors(dir_, *model_, with_moments ? &m_ : nullptr,
                                 with_moments ? &v_ : nullptr);
  }

  nlohmann::json StateJson() { return nlohmann::json::parse(ReadText(dir_ + "/checkpoint.json")); }
  void WriteStateJson(const nlohmann::json& j) { WriteText(dir_ + "/checkpoint.json", j.dump(2)); }

  // Overwrites the tensor bytes of `file` (past its header) with finite
  // random floats: a file of the right size and format, with wrong contents.
  void OverwriteWithRandomFloats(const std::string& file) {
    const std::string path = dir_ + "/" + file;
    std::string bytes = ReadText(path);
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), sizeof(header));
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> uniform(-100.0f, 100.0f);
    for (size_t at = 8 + header; at + sizeof(float) <= bytes.size(); at += sizeof(float)) {
      const float x = uniform(rng);
      std::memcpy(&bytes[at], &x, sizeof(x));
    }
    WriteText(path, bytes);
  }

  // Rewrites model.safetensors with `value` at index 5 of `tensor`.
  void PlantInModel(const std::string& tensor, float value) {
    std::vector<std::vector<float>> host;
    host.reserve(model_->parameters().size());
    std::vector<TensorView> views;
    for (Parameter& p : model_->parameters()) {
      host.emplace_back(p.size());
      backend_.CopyToHost(p.value->data(), p.size(), host.back().data());
      if (p.name == tensor) host.back()[5] = value;
      views.push_back({p.name, p.shape, host.back().data()});
    }
    ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", views, {}).ok());
  }

  CpuBackend backend_;
  std::unique_ptr<Model> model_;
  std::vector<std::unique_ptr<Buffer>> m_, v_;
  std::string dir_;
};

TEST_F(CheckpointTest, RecordsTheSha256OfEveryFile) {
  auto state = ReadCheckpointState(dir_, nullptr);
  ASSERT_TRUE(state.ok()) << state.status();
  for (const char* file :
       {"model.safetensors", "optimizer.safetensors", "config.json", "generation_config.json"}) {
    ASSERT_TRUE(state->file_sha256.count(file)) << file;
    EXPECT_EQ(state->file_sha256.at(file).size(), 64u) << file;
  }
  EXPECT_FALSE(state->file_sha256.count("checkpoint.json"));
  EXPECT_TRUE(Load(/*with_moments=*/true).ok());
}

TEST_F(CheckpointTest, ChangedTensorsAreDataLossNamingTheFile) {
  OverwriteWithRandomFloats("model.safetensors");
  const absl::Status s = Load(/*with_moments=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("model.safetensors"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("SHA-256"), absl::string_view::npos) << s;
}

TEST_F(CheckpointTest, ChangedMomentsAreDataLossWhenResuming) {
  OverwriteWithRandomFloats("optimizer.safetensors");
  // Inference reads no moments, so it does not hash them.
  EXPECT_TRUE(Load(/*with_moments=*/false).ok());
  const absl::Status s = Load(/*with_moments=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("optimizer.safetensors"), absl::string_view::npos) << s;
}

TEST_F(CheckpointTest, ChangedOrMissingSideFilesAreDataLoss) {
  WriteText(dir_ + "/config.json", ReadText(dir_ + "/config.json") + " ");
  absl::Status s = Load(/*with_moments=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("config.json"), absl::string_view::npos) << s;
  fs::remove(dir_ + "/config.json");
  s = Load(/*with_moments=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("config.json is missing"), absl::string_view::npos) << s;
}

TEST_F(CheckpointTest, NonFiniteValuesAreCorruptionEvenWithoutChecksums) {
  // A checkpoint from before checksums: it loads...
  nlohmann::json j = StateJson();
  j.erase("file_sha256");
  WriteStateJson(j);
  ASSERT_TRUE(Load(/*with_moments=*/true).ok());
  // ...but a NaN or an infinity in it is reported as corruption of the
  // checkpoint, naming the tensor, not later as a diverging loss.
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    PlantInModel("model.layers.1.mlp.up_proj.weight", bad);
    const absl::Status s = Load(/*with_moments=*/false);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_NE(s.message().find("model.layers.1.mlp.up_proj.weight"), absl::string_view::npos) << s;
  }
  // A negative second moment cannot come from AdamW either.
  PlantInModel("", 0);  // The model file clean again.
  std::vector<std::vector<float>> host;
  std::vector<TensorView> views;
  host.reserve(2 * model_->parameters().size());
  for (Parameter& p : model_->parameters()) {
    host.emplace_back(p.size(), 0.25f);
    views.push_back({p.name + ".exp_avg", p.shape, host.back().data()});
    host.emplace_back(p.size(), 0.25f);
    if (p.name == "model.norm.weight") host.back()[0] = -1.0f;
    views.push_back({p.name + ".exp_avg_sq", p.shape, host.back().data()});
  }
  ASSERT_TRUE(WriteSafetensors(dir_ + "/optimizer.safetensors", views, {}).ok());
  const absl::Status s = Load(/*with_moments=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("model.norm.weight.exp_avg_sq"), absl::string_view::npos) << s;
}

TEST_F(CheckpointTest, FieldsOutOfRangeAreNamed) {
  const nlohmann::json good = StateJson();
  auto expect = [&](const nlohmann::json& j, absl::StatusCode code, const std::string& field) {
    WriteStateJson(j);
    ModelConfig config;
    auto state = ReadCheckpointState(dir_, &config);
    ASSERT_FALSE(state.ok()) << j.dump();
    EXPECT_EQ(state.status().code(), code) << state.status();
    EXPECT_NE(state.status().message().find(field), absl::string_view::npos) << state.status();
  };
  auto with = [&](const nlohmann::json::json_pointer& at, nlohmann::json value) {
    nlohmann::json j = good;
    j[at] = std::move(value);
    return j;
  };
  using P = nlohmann::json::json_pointer;
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  expect(with(P("/step"), -5), kInvalid, "step");
  expect(with(P("/step"), int64_t{1} << 62), kInvalid, "step");
  expect(with(P("/step"), 18446744073709551615ull), kInvalid, "step");
  expect(with(P("/step"), 2.5), kInvalid, "step");
  expect(with(P("/tokens_seen"), -1), kInvalid, "tokens_seen");
  expect(with(P("/tokenizer/vocab_size"), 2147483647), kInvalid, "tokenizer.vocab_size");
  expect(with(P("/rng/seed"), -3), kInvalid, "rng.seed");
  nlohmann::json huge = with(P("/model/hidden"), 1048576);
  huge["model"]["vocab_size"] = 2147483647;
  expect(huge, kInvalid, "vocab_size");
  expect(with(P("/model/layers"), 1000000000), kInvalid, "layers");
  expect(with(P("/file_sha256/model.safetensors"), "not a digest"), absl::StatusCode::kDataLoss,
         "file_sha256");
  expect(with(P("/file_sha256/..~1latest"), std::string(64, 'a')), absl::StatusCode::kDataLoss,
         "file_sha256");
  nlohmann::json missing = good;
  missing.erase("step");
  expect(missing, absl::StatusCode::kDataLoss, "step");
  WriteStateJson(good);
  EXPECT_TRUE(ReadCheckpointState(dir_, nullptr).ok());
}

}  // namespace
}  // namespace maximus::trainer
