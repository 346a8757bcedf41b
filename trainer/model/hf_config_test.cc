#include "trainer/model/hf_config.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace maximus::trainer {
namespace {

using nlohmann::json;

std::string FixtureConfig() {
  std::ifstream in("trainer/model/testdata/gemma3_tiny/config.json");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What transformers 5.17 saved for the parity fixture.
TEST(HfConfigTest, ReadsTransformersOwnConfig) {
  const std::string text = FixtureConfig();
  ASSERT_FALSE(text.empty()) << "fixture config.json missing";
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfigJson(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 256);
  EXPECT_EQ(c->hidden, 64);
  EXPECT_EQ(c->mlp_hidden, 96);
  EXPECT_EQ(c->layers, 4);
  EXPECT_EQ(c->heads, 4);
  EXPECT_EQ(c->kv_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->activation, Activation::kGeluTanh);
  EXPECT_EQ(c->query_pre_attn_scalar, 24.0f);
  EXPECT_EQ(c->sliding_window, 4);
  EXPECT_EQ(c->rope_theta, 1000.0f);
  EXPECT_EQ(c->rope_local_theta, 50.0f);
  EXPECT_EQ(c->max_position_embeddings, 64);
  EXPECT_EQ(c->norm_eps, 1e-6f);
  EXPECT_TRUE(c->IsSlidingLayer(0));
  EXPECT_TRUE(c->IsSlidingLayer(1));
  EXPECT_FALSE(c->IsSlidingLayer(2));
  EXPECT_TRUE(c->IsSlidingLayer(3));
}

// Every key we write holds what transformers itself wrote for the same
// model, and we leave out none of its keys but its own bookkeeping.
TEST(HfConfigTest, WritesWhatTransformersWrites) {
  const json theirs = json::parse(FixtureConfig());
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfigJson(theirs.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  const json ours = json::parse(ModelConfigToHfConfigJson(*c));
  for (auto& [key, value] : ours.items()) {
    ASSERT_TRUE(theirs.contains(key)) << key;
    EXPECT_EQ(theirs[key], value) << key;
  }
  for (auto& [key, value] : theirs.items()) {
    if (key == "transformers_version" || key == "_sliding_window_pattern") continue;
    EXPECT_TRUE(ours.contains(key)) << key;
  }
}

TEST(HfConfigTest, RoundTripsPresets) {
  for (const char* name : {"tiny", "270m", "1b"}) {
    absl::StatusOr<ModelConfig> preset = PresetModelConfig(name);
    ASSERT_TRUE(preset.ok());
    const std::string text = ModelConfigToHfConfigJson(*preset);
    const json j = json::parse(text);
    EXPECT_EQ(j["architectures"], json({"Gemma3ForCausalLM"}));
    EXPECT_EQ(j["rms_norm_eps"].dump(), "1e-06") << "written as the float's shortest decimal";
    // transformers' strict config refuses 64.0 where it types an int.
    EXPECT_TRUE(j["query_pre_attn_scalar"].is_number_integer()) << j["query_pre_attn_scalar"];
    absl::StatusOr<ModelConfig> back = ModelConfigFromHfConfigJson(text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->vocab_size, preset->vocab_size);
    EXPECT_EQ(back->hidden, preset->hidden);
    EXPECT_EQ(back->mlp_hidden, preset->mlp_hidden);
    EXPECT_EQ(back->layers, preset->layers);
    EXPECT_EQ(back->heads, preset->heads);
    EXPECT_EQ(back->kv_heads, preset->kv_heads);
    EXPECT_EQ(back->head_dim, preset->head_dim);
    EXPECT_EQ(back->activation, preset->activation);
    EXPECT_EQ(back->query_pre_attn_scalar, preset->query_pre_attn_scalar);
    EXPECT_EQ(back->sliding_window, preset->sliding_window);
    EXPECT_EQ(back->rope_theta, preset->rope_theta);
    EXPECT_EQ(back->rope_local_theta, preset->rope_local_theta);
    EXPECT_EQ(back->max_position_embeddings, preset->max_position_embeddings);
    EXPECT_EQ(back->norm_eps, preset->norm_eps);
    for (int64_t layer = 0; layer < preset->layers; ++layer) {
      EXPECT_EQ(back->IsSlidingLayer(layer), preset->IsSlidingLayer(layer)) << name << " " << layer;
      EXPECT_EQ(back->RopeThetaOf(layer), preset->RopeThetaOf(layer));
    }
  }
}

TEST(HfConfigTest, NoSlidingLayersWritesAllFullAttention) {
  ModelConfig c;
  c.sliding_window = 0;
  const json j = json::parse(ModelConfigToHfConfigJson(c));
  for (const json& type : j["layer_types"]) EXPECT_EQ(type, "full_attention");
  absl::StatusOr<ModelConfig> back = ModelConfigFromHfConfigJson(j.dump());
  ASSERT_TRUE(back.ok()) << back.status();
  for (int64_t layer = 0; layer < c.layers; ++layer) EXPECT_FALSE(back->IsSlidingLayer(layer));
}

// transformers 4.5x: two RoPE keys and the every-Nth pattern.
TEST(HfConfigTest, ReadsOlderForm) {
  const json j = {{"model_type", "gemma3_text"},
                  {"hidden_size", 640},
                  {"intermediate_size", 2048},
                  {"num_hidden_layers", 7},
                  {"num_attention_heads", 4},
                  {"num_key_value_heads", 1},
                  {"head_dim", 256},
                  {"vocab_size", 262144},
                  {"rope_theta", 1000000.0},
                  {"rope_local_base_freq", 10000.0},
                  {"rope_scaling", nullptr},
                  {"sliding_window", 512},
                  {"sliding_window_pattern", 6},
                  {"torch_dtype", "bfloat16"}};
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfigJson(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->layer_types.size(), 7u);
  for (int64_t layer = 0; layer < 7; ++layer) EXPECT_EQ(c->IsSlidingLayer(layer), layer != 5);
  EXPECT_EQ(c->RopeThetaOf(5), 1000000.0f);
  EXPECT_EQ(c->RopeThetaOf(0), 10000.0f);
  EXPECT_EQ(c->query_pre_attn_scalar, 256.0f) << "Gemma3TextConfig's default";
  EXPECT_EQ(c->max_position_embeddings, 131072) << "Gemma3TextConfig's default";
}

TEST(HfConfigTest, ReadsMultimodalTextConfig) {
  const json j = {{"model_type", "gemma3"},
                  {"architectures", {"Gemma3ForConditionalGeneration"}},
                  {"text_config",
                   {{"hidden_size", 2560},
                    {"intermediate_size", 10240},
                    {"num_hidden_layers", 34},
                    {"model_type", "gemma3_text"}}},
                  {"vision_config", {{"model_type", "siglip_vision_model"}}}};
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfigJson(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden, 2560);
  EXPECT_EQ(c->layers, 34);
  EXPECT_EQ(c->vocab_size, 262208);
}

void ExpectRefused(json j, const std::string& key) {
  absl::StatusOr<ModelConfig> c = ModelConfigFromHfConfigJson(j.dump());
  ASSERT_FALSE(c.ok()) << "accepted " << j.dump();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status();
}

TEST(HfConfigTest, RefusesWhatTheModelCannotCompute) {
  const json base = json::parse(FixtureConfig());
  auto with = [&](const std::string& key, json value) {
    json j = base;
    j[key] = std::move(value);
    return j;
  };
  ExpectRefused(with("final_logit_softcapping", 30.0), "final_logit_softcapping");
  ExpectRefused(with("attn_logit_softcapping", 50.0), "attn_logit_softcapping");
  ExpectRefused(with("rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}), "rope_scaling");
  ExpectRefused(with("tie_word_embeddings", false), "tie_word_embeddings");
  ExpectRefused(with("hidden_activation", "gelu"), "hidden_activation");
  ExpectRefused(with("attention_bias", true), "attention_bias");
  ExpectRefused(with("use_bidirectional_attention", true), "use_bidirectional_attention");
  ExpectRefused(with("model_type", "llama"), "model_type");
  ExpectRefused(with("sliding_window", nullptr), "sliding_window");
  ExpectRefused(with("hidden_size", "64"), "hidden_size");
  ExpectRefused(with("layer_types", {"full_attention", "local"}), "layer_types");
  // Sizes are bounded before anything is made from them.
  ExpectRefused(with("num_hidden_layers", 1000000000), "num_hidden_layers");
  ExpectRefused(with("vocab_size", 2147483647), "vocab_size");
  ExpectRefused(with("hidden_size", 1048576), "hidden");
  ExpectRefused(with("intermediate_size", 18446744073709551615ull), "intermediate_size");
  json linear = base;
  linear["rope_parameters"]["full_attention"] = {
      {"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}};
  ExpectRefused(linear, "rope_parameters.full_attention.rope_type");
}

}  // namespace
}  // namespace maximus::trainer
