#include "trainer/model/hf_config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace maximus::trainer {
namespace {

using nlohmann::json;

// The shortest decimal that reads back as `value`, so that 1e-6f is written
// as 1e-06 rather than 9.999999974752427e-07.
double ShortestDecimal(float value) {
  for (int digits = 6; digits < 9; ++digits) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    const double parsed = std::strtod(text, nullptr);
    if (static_cast<float>(parsed) == value) return parsed;
  }
  return value;
}

absl::Status Refuse(absl::string_view key, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json ", key, ": ", why));
}

absl::Status ReadInteger(const json& j, const char* key, int64_t* field) {
  if (!j.contains(key)) return absl::OkStatus();  // Gemma3TextConfig's default
  if (!j[key].is_number_integer()) return Refuse(key, "must be an integer");
  if (j[key].is_number_unsigned() &&
      j[key].get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Refuse(key, absl::StrCat("is out of range: ", j[key].dump()));
  }
  *field = j[key].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& j, absl::string_view where, const char* key, float* field) {
  if (!j.contains(key)) return absl::OkStatus();
  if (!j[key].is_number()) return Refuse(absl::StrCat(where, key), "must be a number");
  *field = j[key].get<float>();
  return absl::OkStatus();
}

// The key must be absent or null: a value asks for arithmetic this model lacks.
absl::Status RequireNull(const json& j, const char* key, absl::string_view why) {
  if (j.contains(key) && !j[key].is_null()) return Refuse(key, why);
  return absl::OkStatus();
}

absl::Status RequireBool(const json& j, const char* key, bool expected, absl::string_view why) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  if (!j[key].is_boolean()) return Refuse(key, "must be true or false");
  if (j[key].get<bool>() != expected) return Refuse(key, why);
  return absl::OkStatus();
}

// One entry of rope_parameters: {"rope_type": "default", "rope_theta": x}.
absl::Status ReadRopeParameters(const json& rope, const char* layer_type, float* theta) {
  const std::string where = absl::StrCat("rope_parameters.", layer_type);
  if (!rope.contains(layer_type)) return absl::OkStatus();
  const json& entry = rope[layer_type];
  if (!entry.is_object()) return Refuse(where, "must be an object");
  if (entry.contains("rope_type") && entry["rope_type"] != "default") {
    return Refuse(absl::StrCat(where, ".rope_type"),
                  absl::StrCat(entry["rope_type"].dump(), " RoPE scaling is not supported"));
  }
  for (const char* scaling : {"factor", "rope_scaling"}) {
    if (entry.contains(scaling) && !entry[scaling].is_null()) {
      return Refuse(absl::StrCat(where, ".", scaling), "RoPE scaling is not supported");
    }
  }
  return ReadNumber(entry, where + ".", "rope_theta", theta);
}

}  // namespace

std::string ModelConfigToHfConfigJson(const ModelConfig& c) {
  std::vector<std::string> layer_types;
  for (int64_t layer = 0; layer < c.layers; ++layer) {
    layer_types.push_back(c.IsSlidingLayer(layer) ? "sliding_attention" : "full_attention");
  }
  // transformers needs a window even when no layer slides; then it is unused.
  const int64_t sliding_window =
      c.sliding_window > 0 ? c.sliding_window : c.max_position_embeddings;
  json j = {
      {"architectures", {"Gemma3ForCausalLM"}},
      {"model_type", "gemma3_text"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden},
      {"intermediate_size", c.mlp_hidden},
      {"num_hidden_layers", c.layers},
      {"num_attention_heads", c.heads},
      {"num_key_value_heads", c.kv_heads},
      {"head_dim", c.head_dim},
      {"hidden_activation", std::string(ActivationName(c.activation))},
      // transformers types it as an int (and refuses 64.0); a fractional
      // value, which it cannot hold, is written as it is.
      {"query_pre_attn_scalar", c.query_pre_attn_scalar == std::floor(c.query_pre_attn_scalar)
                                    ? json(static_cast<int64_t>(c.query_pre_attn_scalar))
                                    : json(ShortestDecimal(c.query_pre_attn_scalar))},
      {"sliding_window", sliding_window},
      {"layer_types", layer_types},
      {"rope_parameters",
       {{"full_attention",
         {{"rope_type", "default"}, {"rope_theta", ShortestDecimal(c.rope_theta)}}},
        {"sliding_attention",
         {{"rope_type", "default"}, {"rope_theta", ShortestDecimal(c.rope_local_theta)}}}}},
      {"rms_norm_eps", ShortestDecimal(c.norm_eps)},
      {"max_position_embeddings", c.max_position_embeddings},
      {"tie_word_embeddings", true},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"use_bidirectional_attention", false},
      {"final_logit_softcapping", nullptr},
      {"attn_logit_softcapping", nullptr},
      {"bos_token_id", kGemmaBosId},
      {"eos_token_id", kGemmaEosId},
      {"pad_token_id", kGemmaPadId},
      {"dtype", "float32"},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
  return j.dump(2) + "\n";
}

absl::StatusOr<ModelConfig> ModelConfigFromHfConfigJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json is not a JSON object");
  }
  // A multimodal Gemma 3 keeps its decoder's settings under text_config.
  if (j.contains("model_type") && j["model_type"] == "gemma3") {
    if (!j.contains("text_config") || !j["text_config"].is_object()) {
      return Refuse("text_config", "a \"gemma3\" config needs a text_config object");
    }
    json text_config = j["text_config"];
    if (!text_config.contains("model_type")) text_config["model_type"] = "gemma3_text";
    j = std::move(text_config);
  }
  if (!j.contains("model_type") || j["model_type"] != "gemma3_text") {
    return Refuse("model_type",
                  absl::StrCat(j.contains("model_type") ? j["model_type"].dump() : "(missing)",
                               " is not \"gemma3_text\" (or \"gemma3\" with a text_config)"));
  }

  // Gemma3TextConfig's defaults, for the keys a file leaves out.
  ModelConfig c;
  c.name = "gemma3_text";
  c.vocab_size = 262208;
  c.hidden = 2304;
  c.mlp_hidden = 9216;
  c.layers = 26;
  c.heads = 8;
  c.kv_heads = 4;
  c.head_dim = 256;
  c.activation = Activation::kGeluTanh;
  c.query_pre_attn_scalar = 256;
  c.sliding_window = 4096;
  c.sliding_window_pattern = 6;
  c.rope_theta = 1000000.0f;
  c.rope_local_theta = 10000.0f;
  c.max_position_embeddings = 131072;
  c.norm_eps = 1e-6f;

  for (auto [key, field] : {std::pair<const char*, int64_t*>{"vocab_size", &c.vocab_size},
                            {"hidden_size", &c.hidden},
                            {"intermediate_size", &c.mlp_hidden},
                            {"num_hidden_layers", &c.layers},
                            {"num_attention_heads", &c.heads},
                            {"head_dim", &c.head_dim},
                            {"max_position_embeddings", &c.max_position_embeddings}}) {
    if (absl::Status s = ReadInteger(j, key, field); !s.ok()) return s;
  }
  // transformers: num_key_value_heads defaults to num_attention_heads when null.
  if (j.contains("num_key_value_heads") && j["num_key_value_heads"].is_null()) {
    c.kv_heads = c.heads;
  } else if (absl::Status s = ReadInteger(j, "num_key_value_heads", &c.kv_heads); !s.ok()) {
    return s;
  }
  for (auto [key, field] :
       {std::pair<const char*, float*>{"query_pre_attn_scalar", &c.query_pre_attn_scalar},
        {"rms_norm_eps", &c.norm_eps}}) {
    if (absl::Status s = ReadNumber(j, "", key, field); !s.ok()) return s;
  }

  for (const char* key : {"hidden_activation", "hidden_act"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_string()) return Refuse(key, "must be a string");
    absl::StatusOr<Activation> activation = ParseActivation(j[key].get<std::string>());
    if (!activation.ok()) return Refuse(key, activation.status().message());
    c.activation = *activation;
    break;  // hidden_activation wins, as in transformers
  }

  // Layer kinds: explicit layer_types, else the older every-Nth pattern.
  for (const char* key : {"sliding_window_pattern", "_sliding_window_pattern"}) {
    if (absl::Status s = ReadInteger(j, key, &c.sliding_window_pattern); !s.ok()) return s;
  }
  // Bounded before the loop below makes a list of this many layer kinds.
  if (c.layers < 1 || c.layers > kMaxLayers) {
    return Refuse("num_hidden_layers",
                  absl::StrCat("must be in 1..", kMaxLayers, ", not ", c.layers));
  }
  if (c.sliding_window_pattern <= 0) {
    return Refuse("sliding_window_pattern", "must be positive");
  }
  c.layer_types.clear();
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    if (!j["layer_types"].is_array()) return Refuse("layer_types", "must be a list");
    for (const json& type : j["layer_types"]) {
      if (!type.is_string()) return Refuse("layer_types", "must hold strings");
      c.layer_types.push_back(type.get<std::string>());
    }
  } else {
    for (int64_t layer = 0; layer < c.layers; ++layer) {
      c.layer_types.push_back((layer + 1) % c.sliding_window_pattern != 0 ? "sliding_attention"
                                                                          : "full_attention");
    }
  }
  bool any_sliding = false;
  for (const std::string& type : c.layer_types) any_sliding |= type == "sliding_attention";
  if (j.contains("sliding_window") && j["sliding_window"].is_null()) {
    if (any_sliding) return Refuse("sliding_window", "is null but layer_types has sliding layers");
    c.sliding_window = 0;
  } else if (absl::Status s = ReadInteger(j, "sliding_window", &c.sliding_window); !s.ok()) {
    return s;
  }
  if (any_sliding && c.sliding_window <= 0) return Refuse("sliding_window", "must be positive");

  // RoPE bases: transformers 5.x nests them per layer kind; 4.5x has two keys.
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    const json& rope = j["rope_parameters"];
    if (!rope.is_object()) return Refuse("rope_parameters", "must be an object");
    if (!rope.contains("full_attention") && !rope.contains("sliding_attention")) {
      return Refuse("rope_parameters", "must hold full_attention and sliding_attention entries");
    }
    if (absl::Status s = ReadRopeParameters(rope, "full_attention", &c.rope_theta); !s.ok()) {
      return s;
    }
    if (absl::Status s = ReadRopeParameters(rope, "sliding_attention", &c.rope_local_theta);
        !s.ok()) {
      return s;
    }
  } else {
    if (absl::Status s = ReadNumber(j, "", "rope_theta", &c.rope_theta); !s.ok()) return s;
    if (absl::Status s = ReadNumber(j, "", "rope_local_base_freq", &c.rope_local_theta); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = RequireNull(j, "rope_scaling", "RoPE scaling is not supported"); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RequireNull(j, "final_logit_softcapping", "logit soft-capping is not supported");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RequireNull(j, "attn_logit_softcapping", "attention soft-capping is not supported");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireBool(j, "tie_word_embeddings", true,
                                   "untied embeddings are not supported (the LM head is the "
                                   "embedding)");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RequireBool(j, "attention_bias", false, "attention biases are not supported");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RequireBool(j, "use_bidirectional_attention", false,
                                   "bidirectional attention is not supported");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateModelConfig(c); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("config.json: ", s.message()));
  }
  return c;
}

}  // namespace maximus::trainer
