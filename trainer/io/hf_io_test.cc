// Checkpoints as Hugging Face directories, and --init_from's loader.

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/hf_import.h"
#include "trainer/io/safetensors.h"
#include "trainer/model/model.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden = 16;
  c.layers = 3;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.mlp_hidden = 24;
  c.query_pre_attn_scalar = 12;
  c.sliding_window = 3;
  c.sliding_window_pattern = 3;
  c.rope_theta = 5000;
  c.rope_local_theta = 70;
  c.max_position_embeddings = 64;
  return c;
}

std::string TempDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/hf_io_test_", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A model with random values in every parameter (norm weights too).
std::unique_ptr<Model> RandomModel(CpuBackend& backend) {
  auto model = Model::Create(&backend, SmallConfig());
  EXPECT_TRUE(model.ok()) << model.status();
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (Parameter& p : (*model)->parameters()) {
    std::vector<float> host(p.size());
    for (float& x : host) x = normal(rng);
    backend.CopyFromHost(host.data(), p.size(), p.value->data());
  }
  return *std::move(model);
}

std::vector<float> Values(CpuBackend& backend, const Parameter& p) {
  std::vector<float> host(p.size());
  backend.CopyToHost(p.value->data(), p.size(), host.data());
  return host;
}

// The model's tensors under `rename(name)`, as safetensors of `dtype`.
void WriteTensors(CpuBackend& backend, Model& model, const std::string& path,
                  TensorDType dtype = TensorDType::kF32,
                  const std::function<std::string(const std::string&)>& rename = nullptr,
                  std::vector<TensorView> extra = {}) {
  std::vector<std::vector<float>> host;
  host.reserve(model.parameters().size());
  std::vector<TensorView> views;
  for (Parameter& p : model.parameters()) {
    host.push_back(Values(backend, p));
    views.push_back({rename ? rename(p.name) : p.name, p.shape, host.back().data()});
  }
  for (TensorView& view : extra) views.push_back(view);
  ASSERT_TRUE(WriteSafetensors(path, views, {{"format", "pt"}}, dtype).ok());
}

void ExpectSameParameters(CpuBackend& backend, Model& a, Model& b, float tolerance = 0) {
  ASSERT_EQ(a.parameters().size(), b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    const std::vector<float> x = Values(backend, a.parameters()[i]);
    const std::vector<float> y = Values(backend, b.parameters()[i]);
    ASSERT_EQ(x.size(), y.size());
    for (size_t k = 0; k < x.size(); ++k) {
      ASSERT_NEAR(x[k], y[k], tolerance * std::abs(x[k]))
          << a.parameters()[i].name << "[" << k << "]";
    }
  }
}

TEST(HfIoTest, CheckpointIsAHuggingFaceDirectory) {
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  const std::string root = TempDir("checkpoint");
  // A tokenizer.json in the layout of Hugging Face's (added_tokens first).
  const std::string tokenizer_path = root + "/tok.json";
  WriteText(tokenizer_path, R"({"version": "1.0", "added_tokens": [)"
                            R"({"id": 0, "content": "<pad>", "special": true},)"
                            R"({"id": 1, "content": "<eos>", "special": true},)"
                            R"({"id": 2, "content": "<bos>", "special": true},)"
                            R"({"id": 3, "content": "<u]n{k>", "special": true}],)"
                            R"( "model": {"type": "BPE", "vocab": {"a": 4}, "merges": []}})");
  CheckpointState state;
  state.tokenizer_path = tokenizer_path;
  const std::string dir = root + "/step-1";
  ASSERT_TRUE(SaveCheckpoint(dir, *model, {}, {}, state).ok());

  EXPECT_EQ(ReadText(dir + "/tokenizer.json"), ReadText(tokenizer_path));
  const nlohmann::json tokenizer_config =
      nlohmann::json::parse(ReadText(dir + "/tokenizer_config.json"));
  EXPECT_EQ(tokenizer_config["bos_token"], "<bos>");
  EXPECT_EQ(tokenizer_config["eos_token"], "<eos>");
  EXPECT_EQ(tokenizer_config["pad_token"], "<pad>");
  EXPECT_EQ(tokenizer_config["unk_token"], "<u]n{k>");
  const nlohmann::json generation =
      nlohmann::json::parse(ReadText(dir + "/generation_config.json"));
  EXPECT_EQ(generation["bos_token_id"], 2);
  const nlohmann::json config = nlohmann::json::parse(ReadText(dir + "/config.json"));
  EXPECT_EQ(config["model_type"], "gemma3_text");
  EXPECT_EQ(config["layer_types"],
            nlohmann::json({"sliding_attention", "sliding_attention", "full_attention"}));

  // --init_from reads it back exactly.
  absl::StatusOr<std::unique_ptr<Model>> loaded = LoadHfModel(dir, &backend);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const ModelConfig& c = (*loaded)->config();
  EXPECT_EQ(c.query_pre_attn_scalar, 12.0f);
  EXPECT_EQ(c.RopeThetaOf(0), 70.0f);
  EXPECT_EQ(c.RopeThetaOf(2), 5000.0f);
  EXPECT_EQ(c.WindowOf(0), 3);
  EXPECT_EQ(c.WindowOf(2), 0);
  ExpectSameParameters(backend, *model, **loaded);
}

TEST(HfIoTest, CheckpointWithoutTokenizerHasNoTokenizerFiles) {
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  const std::string dir = TempDir("no_tokenizer") + "/step-1";
  ASSERT_TRUE(SaveCheckpoint(dir, *model, {}, {}, CheckpointState()).ok());
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  EXPECT_FALSE(fs::exists(dir + "/tokenizer.json"));
}

std::string HfDir(const std::string& name, const ModelConfig& config) {
  const std::string dir = TempDir(name);
  CpuBackend backend;
  auto model = Model::Create(&backend, config);
  std::error_code ec;
  // Only config.json: the tests write the tensors their own way.
  EXPECT_TRUE(SaveCheckpoint(dir + "/ckpt", **model, {}, {}, CheckpointState()).ok());
  fs::copy_file(dir + "/ckpt/config.json", dir + "/config.json", ec);
  return dir;
}

TEST(HfIoTest, ReadsBf16WithATiedLmHead) {
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  const std::string dir = HfDir("bf16", SmallConfig());
  const std::vector<float> embedding = Values(backend, model->embedding());
  WriteTensors(backend, *model, dir + "/model.safetensors", TensorDType::kBF16, nullptr,
               {{"lm_head.weight", model->embedding().shape, embedding.data()}});
  absl::StatusOr<std::unique_ptr<Model>> loaded = LoadHfModel(dir, &backend);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameParameters(backend, *model, **loaded, 1.0f / 128);  // bf16's 8-bit mantissa
}

TEST(HfIoTest, ReadsShardsAndMultimodalNames) {
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  const std::string dir = HfDir("shards", SmallConfig());
  // transformers 5.x's multimodal names, split over two shards, with a
  // vision tensor that is skipped.
  auto rename = [](const std::string& name) {
    return "model.language_model." + name.substr(std::string("model.").size());
  };
  std::vector<std::vector<float>> host;
  std::vector<TensorView> first, second;
  host.reserve(model->parameters().size() + 1);
  nlohmann::json weight_map;
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    Parameter& p = model->parameters()[i];
    host.push_back(Values(backend, p));
    const std::string shard =
        i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    (i % 2 ? second : first).push_back({rename(p.name), p.shape, host.back().data()});
    weight_map[rename(p.name)] = shard;
  }
  host.push_back({1, 2, 3, 4});
  second.push_back({"model.vision_tower.patch.weight", {2, 2}, host.back().data()});
  weight_map["model.vision_tower.patch.weight"] = "model-00002-of-00002.safetensors";
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", first, {}).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", second, {}).ok());
  WriteText(dir + "/model.safetensors.index.json",
            nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump());
  absl::StatusOr<std::unique_ptr<Model>> loaded = LoadHfModel(dir, &backend);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameParameters(backend, *model, **loaded);
}

void ExpectRefused(const std::string& dir, CpuBackend& backend, const std::string& needle) {
  absl::StatusOr<std::unique_ptr<Model>> loaded = LoadHfModel(dir, &backend);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition) << loaded.status();
  EXPECT_NE(loaded.status().message().find(needle), std::string::npos) << loaded.status();
}

TEST(HfIoTest, RefusesMissingWrongOrUntiedTensors) {
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  const std::string name = "model.layers.1.self_attn.k_proj.weight";
  {
    const std::string dir = HfDir("missing", SmallConfig());
    WriteTensors(backend, *model, dir + "/model.safetensors", TensorDType::kF32,
                 [&](const std::string& n) { return n == name ? "model.other" : n; });
    ExpectRefused(dir, backend, "no tensor " + name);
  }
  {
    ModelConfig wider = SmallConfig();
    wider.kv_heads = 4;
    const std::string dir = HfDir("shape", wider);
    WriteTensors(backend, *model, dir + "/model.safetensors");
    ExpectRefused(dir, backend, "model.layers.0.self_attn.k_proj.weight has shape [16, 16]");
  }
  {
    const std::string dir = HfDir("untied", SmallConfig());
    std::vector<float> head = Values(backend, model->embedding());
    head[7] += 1;
    WriteTensors(backend, *model, dir + "/model.safetensors", TensorDType::kF32, nullptr,
                 {{"lm_head.weight", model->embedding().shape, head.data()}});
    ExpectRefused(dir, backend, "lm_head.weight");
  }
  {
    const std::string dir = HfDir("extra", SmallConfig());
    std::vector<float> bias(16);
    WriteTensors(backend, *model, dir + "/model.safetensors", TensorDType::kF32, nullptr,
                 {{"model.layers.0.self_attn.o_proj.bias", {16}, bias.data()}});
    ExpectRefused(dir, backend, "model.layers.0.self_attn.o_proj.bias");
  }
}

TEST(HfIoTest, NonFiniteWeightsAreCorruptionNamingTheTensor) {
  // A Hugging Face folder has no checksums of ours; a NaN or an infinity in
  // it is still refused at load, not found steps later as a diverging loss.
  CpuBackend backend;
  std::unique_ptr<Model> model = RandomModel(backend);
  Parameter& target = model->parameters()[5];
  std::vector<float> values = Values(backend, target);
  values[3] = std::numeric_limits<float>::infinity();
  backend.CopyFromHost(values.data(), target.size(), target.value->data());
  const std::string dir = HfDir("non_finite", SmallConfig());
  WriteTensors(backend, *model, dir + "/model.safetensors", TensorDType::kBF16);
  absl::StatusOr<std::unique_ptr<Model>> loaded = LoadHfModel(dir, &backend);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
  EXPECT_NE(loaded.status().message().find(target.name), std::string::npos) << loaded.status();
}

}  // namespace
}  // namespace maximus::trainer
