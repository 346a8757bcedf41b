#include "trainer/model/model_config.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/importance_scorer.h"
#include "nlohmann/json.hpp"

namespace maximus::trainer {

int64_t ModelConfig::NumParameters() const {
  const int64_t attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2;
  const int64_t mlp = 3 * hidden * mlp_hidden;
  const int64_t norms = 4 * hidden + 2 * head_dim;
  return vocab_size * hidden + layers * (attention + mlp + norms) + hidden +
         RandnlaLayers() * RandnlaLayerParameters(*this);
}

bool ModelConfig::IsRandnlaLayer(int64_t layer) const {
  if (attention != "randnla") return false;
  return std::find(standard_attention_layers.begin(), standard_attention_layers.end(), layer) ==
         standard_attention_layers.end();
}

int64_t ModelConfig::RandnlaLayers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < layers; ++l) n += IsRandnlaLayer(l) ? 1 : 0;
  return n;
}

kernels::RandnlaConfig ModelConfig::Randnla() const {
  return {randnla_block, randnla_detail, randnla_sketch};
}

std::string AttentionDescription(const ModelConfig& c) {
  if (c.attention != "randnla") return absl::StrCat(c.attention, " attention");
  if (c.standard_attention_layers.empty()) return "RandNLA attention on every layer";
  return absl::StrCat("RandNLA attention (standard on layers ",
                      absl::StrJoin(c.standard_attention_layers, ", "), ")");
}

int64_t RandnlaLayerParameters(const ModelConfig& c) {
  const kernels::SketchFactorShape f = kernels::SketchFactorsOf(c.Randnla());
  return kernels::kImportanceScorerWidth * (c.hidden + 2) + 1 + f.sketch_outer * f.block_outer +
         f.sketch_inner * f.block_inner + 1;
}

float ModelConfig::AttentionScale() const { return 1.0f / std::sqrt(query_pre_attn_scalar); }

bool ModelConfig::IsSlidingLayer(int64_t layer) const {
  if (sliding_window <= 0) return false;
  if (!layer_types.empty()) return layer_types[layer] == "sliding_attention";
  return (layer + 1) % sliding_window_pattern != 0;
}

int64_t ModelConfig::WindowOf(int64_t layer) const {
  return IsSlidingLayer(layer) ? sliding_window : 0;
}

float ModelConfig::RopeThetaOf(int64_t layer) const {
  return IsSlidingLayer(layer) ? rope_local_theta : rope_theta;
}

absl::string_view ActivationName(Activation activation) {
  return activation == Activation::kGeluTanh ? "gelu_pytorch_tanh" : "silu";
}

absl::StatusOr<Activation> ParseActivation(absl::string_view name) {
  if (name == "gelu_pytorch_tanh" || name == "gelu_tanh") return Activation::kGeluTanh;
  if (name == "silu") return Activation::kSilu;
  return absl::InvalidArgumentError(
      absl::StrCat("model activation \"", name, "\" is not supported (gelu_pytorch_tanh, silu)"));
}

absl::Status ValidateModelConfig(const ModelConfig& c) {
  if (c.name.size() > kMaxModelNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("model name is longer than ", kMaxModelNameLength, " bytes"));
  }
  struct IntegerField {
    absl::string_view name;
    int64_t value;
    int64_t min;
    int64_t max;
  };
  // Each field within its bounds before any product of them is formed.
  for (const IntegerField& f :
       {IntegerField{"vocab_size", c.vocab_size, 1, kMaxVocabSize},
        {"hidden", c.hidden, 1, kMaxHidden},
        {"layers", c.layers, 1, kMaxLayers},
        {"heads", c.heads, 1, kMaxHeads},
        {"kv_heads", c.kv_heads, 1, kMaxHeads},
        {"head_dim", c.head_dim, 1, kMaxHeadDim},
        {"mlp_hidden", c.mlp_hidden, 1, kMaxMlpHidden},
        {"sliding_window", c.sliding_window, 0, kMaxPositions},
        {"sliding_window_pattern", c.sliding_window_pattern, 1, kMaxSlidingWindowPattern},
        {"max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions},
        {"randnla_block", c.randnla_block, 1, kMaxPositions},
        {"randnla_detail", c.randnla_detail, 0, kMaxPositions},
        {"randnla_sketch", c.randnla_sketch, 1, kMaxPositions}}) {
    if (f.value < f.min || f.value > f.max) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", f.name, " must be in ", f.min, "..", f.max, ", not ", f.value));
    }
  }
  if (c.heads % c.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model heads (", c.heads, ") must be a multiple of kv_heads (", c.kv_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model head_dim must be even for rotary embeddings, not ", c.head_dim));
  }
  struct RealField {
    absl::string_view name;
    float value;
    float max;
  };
  for (const RealField& f :
       {RealField{"rope_theta", c.rope_theta, kMaxRopeTheta},
        {"rope_local_theta", c.rope_local_theta, kMaxRopeTheta},
        {"query_pre_attn_scalar", c.query_pre_attn_scalar, kMaxQueryPreAttnScalar},
        {"norm_eps", c.norm_eps, kMaxNormEps}}) {
    if (!(f.value > 0) || !(f.value <= f.max)) {  // NaN fails both.
      return absl::InvalidArgumentError(absl::StrCat(
          "model ", f.name, " must be positive and at most ", f.max, ", not ", f.value));
    }
  }
  if (c.attention != "standard" && c.attention != "randnla") {
    return absl::InvalidArgumentError(
        absl::StrCat("model attention \"", c.attention, "\" is neither standard nor randnla"));
  }
  if (c.attention == "standard" && !c.standard_attention_layers.empty()) {
    return absl::InvalidArgumentError(
        "model standard_attention_layers needs attention \"randnla\" (every layer is standard)");
  }
  for (size_t i = 0; i < c.standard_attention_layers.size(); ++i) {
    const int64_t layer = c.standard_attention_layers[i];
    if (layer < 0 || layer >= c.layers) {
      return absl::InvalidArgumentError(absl::StrCat("model standard_attention_layers: layer ",
                                                     layer, " is not in 0..", c.layers - 1));
    }
    if (std::count(c.standard_attention_layers.begin(), c.standard_attention_layers.end(), layer) >
        1) {
      return absl::InvalidArgumentError(
          absl::StrCat("model standard_attention_layers names layer ", layer, " twice"));
    }
  }
  if (absl::Status s = kernels::ValidateRandnlaConfig(c.Randnla()); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model randnla_block/randnla_detail/randnla_sketch: ", s.message()));
  }
  if (!c.layer_types.empty()) {
    if (static_cast<int64_t>(c.layer_types.size()) != c.layers) {
      return absl::InvalidArgumentError(absl::StrCat("model layer_types has ", c.layer_types.size(),
                                                     " entries for ", c.layers, " layers"));
    }
    for (const std::string& type : c.layer_types) {
      if (type != "sliding_attention" && type != "full_attention") {
        return absl::InvalidArgumentError(
            absl::StrCat("model layer_types: \"", type,
                         "\" is neither \"sliding_attention\" nor \"full_attention\""));
      }
    }
  }
  return absl::OkStatus();
}

uint64_t ModelMemoryBytes(const ModelConfig& c, int optimizer_shards) {
  // 128-bit products: exact for any int64 fields, so a config outside the
  // bounds saturates instead of wrapping.
  using u128 = unsigned __int128;
  auto u = [](int64_t v) { return static_cast<u128>(v < 0 ? 0 : v); };
  const u128 attention = u(c.hidden) * u(c.head_dim) * (u(c.heads) + u(c.kv_heads)) * 2;
  const u128 mlp = 3 * u(c.hidden) * u(c.mlp_hidden);
  const u128 norms = 4 * u(c.hidden) + 2 * u(c.head_dim);
  // Within the bounds only: RandNLA's share is small and bounded by them.
  const u128 randnla =
      ValidateModelConfig(c).ok() ? u(c.RandnlaLayers()) * u(RandnlaLayerParameters(c)) : 0;
  const u128 parameters = u(c.vocab_size) * u(c.hidden) + u(c.layers) * (attention + mlp + norms) +
                          u(c.hidden) + randnla;
  // Value, gradient and the bf16 shadow, and exp_avg, exp_avg_sq (fp32) for
  // this rank's share of the parameters.
  const u128 shards = static_cast<u128>(optimizer_shards < 1 ? 1 : optimizer_shards);
  const u128 bytes =
      parameters * (2 * sizeof(float) + 2) + (parameters * 2 * sizeof(float) + shards - 1) / shards;
  return bytes > std::numeric_limits<uint64_t>::max() ? std::numeric_limits<uint64_t>::max()
                                                      : static_cast<uint64_t>(bytes);
}

absl::Status ValidateModelFitsMemory(const ModelConfig& c, uint64_t memory_bytes,
                                     int optimizer_shards) {
  const uint64_t needed = ModelMemoryBytes(c, optimizer_shards);
  if (needed <= memory_bytes) return absl::OkStatus();
  constexpr double kGiB = 1ull << 30;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "model of vocab_size %d, hidden %d, layers %d, mlp_hidden %d needs %.4g GiB for its "
      "parameters, gradients and AdamW moments, more than the %.4g GiB of the backend's memory",
      c.vocab_size, c.hidden, c.layers, c.mlp_hidden, needed / kGiB, memory_bytes / kGiB));
}

absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view name) {
  ModelConfig c;
  c.name = std::string(name);
  if (name == "tiny") return c;
  auto gemma = [&c](int64_t hidden, int64_t layers, int64_t mlp_hidden) {
    c.hidden = hidden;
    c.layers = layers;
    c.heads = 4;
    c.kv_heads = 1;
    c.head_dim = 256;
    c.mlp_hidden = mlp_hidden;
    c.query_pre_attn_scalar = 256;
    c.sliding_window = 512;
    c.sliding_window_pattern = 6;
    return c;
  };
  if (name == "270m") return gemma(640, 18, 2048);
  if (name == "1b") return gemma(1152, 26, 6912);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model preset \"", name, "\" (tiny, 270m, 1b, or a JSON file)"));
}

std::string ModelConfigToJson(const ModelConfig& c) {
  nlohmann::json j = {{"name", c.name},
                      {"vocab_size", c.vocab_size},
                      {"hidden", c.hidden},
                      {"layers", c.layers},
                      {"heads", c.heads},
                      {"kv_heads", c.kv_heads},
                      {"head_dim", c.head_dim},
                      {"mlp_hidden", c.mlp_hidden},
                      {"activation", std::string(ActivationName(c.activation))},
                      {"query_pre_attn_scalar", c.query_pre_attn_scalar},
                      {"sliding_window", c.sliding_window},
                      {"sliding_window_pattern", c.sliding_window_pattern},
                      {"rope_theta", c.rope_theta},
                      {"rope_local_theta", c.rope_local_theta},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"norm_eps", c.norm_eps}};
  if (!c.layer_types.empty()) j["layer_types"] = c.layer_types;
  // Standard models print as before, so their files and checkpoints compare
  // equal to older ones.
  if (c.attention != "standard") {
    j["attention"] = c.attention;
    j["standard_attention_layers"] = c.standard_attention_layers;
    j["randnla_block"] = c.randnla_block;
    j["randnla_detail"] = c.randnla_detail;
    j["randnla_sketch"] = c.randnla_sketch;
  }
  return j.dump(2);
}

namespace {

// The field named `key` among `fields`, or null.
template <typename T, size_t N>
T* FieldByKey(const std::pair<absl::string_view, T*> (&fields)[N], absl::string_view key) {
  for (const auto& [name, field] : fields) {
    if (name == key) return field;
  }
  return nullptr;
}

// The numeric fields of a config file, by key; null for other keys.
int64_t* IntegerField(ModelConfig& c, absl::string_view key) {
  const std::pair<absl::string_view, int64_t*> fields[] = {
      {"vocab_size", &c.vocab_size},
      {"hidden", &c.hidden},
      {"layers", &c.layers},
      {"heads", &c.heads},
      {"kv_heads", &c.kv_heads},
      {"head_dim", &c.head_dim},
      {"mlp_hidden", &c.mlp_hidden},
      {"sliding_window", &c.sliding_window},
      {"sliding_window_pattern", &c.sliding_window_pattern},
      {"max_position_embeddings", &c.max_position_embeddings},
      {"randnla_block", &c.randnla_block},
      {"randnla_detail", &c.randnla_detail},
      {"randnla_sketch", &c.randnla_sketch}};
  return FieldByKey(fields, key);
}

float* RealField(ModelConfig& c, absl::string_view key) {
  const std::pair<absl::string_view, float*> fields[] = {
      {"query_pre_attn_scalar", &c.query_pre_attn_scalar},
      {"rope_theta", &c.rope_theta},
      {"rope_local_theta", &c.rope_local_theta},
      {"norm_eps", &c.norm_eps}};
  return FieldByKey(fields, key);
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfigFromJson(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("model config is not a JSON object");
  }
  ModelConfig c;
  if (j.contains("preset")) {
    if (!j["preset"].is_string())
      return absl::InvalidArgumentError("model preset must be a string");
    absl::StatusOr<ModelConfig> preset = PresetModelConfig(j["preset"].get<std::string>());
    if (!preset.ok()) return preset.status();
    c = *preset;
  }
  for (auto& [key, value] : j.items()) {
    auto integer = [&](int64_t* field) -> absl::Status {
      if (!value.is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("model ", key, " must be an integer"));
      }
      if (value.is_number_unsigned() &&
          value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(
            absl::StrCat("model ", key, " is out of range: ", value.dump()));
      }
      *field = value.get<int64_t>();
      return absl::OkStatus();
    };
    auto real = [&](float* field) -> absl::Status {
      if (!value.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat("model ", key, " must be a number"));
      }
      *field = value.get<float>();
      return absl::OkStatus();
    };
    absl::Status s;
    if (key == "preset") continue;
    if (key == "name") {
      if (!value.is_string()) return absl::InvalidArgumentError("model name must be a string");
      c.name = value.get<std::string>();
    } else if (int64_t* field = IntegerField(c, key)) {
      s = integer(field);
    } else if (float* field = RealField(c, key)) {
      s = real(field);
    } else if (key == "activation") {
      if (!value.is_string())
        return absl::InvalidArgumentError("model activation must be a string");
      absl::StatusOr<Activation> activation = ParseActivation(value.get<std::string>());
      if (!activation.ok()) return activation.status();
      c.activation = *activation;
    } else if (key == "attention") {
      if (!value.is_string()) return absl::InvalidArgumentError("model attention must be a string");
      c.attention = value.get<std::string>();
    } else if (key == "standard_attention_layers") {
      if (!value.is_array()) {
        return absl::InvalidArgumentError("model standard_attention_layers must be a list");
      }
      c.standard_attention_layers.clear();
      for (const auto& layer : value) {
        if (!layer.is_number_integer()) {
          return absl::InvalidArgumentError(
              "model standard_attention_layers must hold layer indices");
        }
        c.standard_attention_layers.push_back(layer.get<int64_t>());
      }
    } else if (key == "layer_types") {
      if (!value.is_array()) return absl::InvalidArgumentError("model layer_types must be a list");
      c.layer_types.clear();
      for (const auto& type : value) {
        if (!type.is_string())
          return absl::InvalidArgumentError("model layer_types must hold strings");
        c.layer_types.push_back(type.get<std::string>());
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown model config key \"", key, "\""));
    }
    if (!s.ok()) return s;
  }
  if (absl::Status s = ValidateModelConfig(c); !s.ok()) return s;
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& preset_or_path) {
  if (preset_or_path.find('/') == std::string::npos &&
      preset_or_path.find(".json") == std::string::npos) {
    return PresetModelConfig(preset_or_path);
  }
  std::ifstream in(preset_or_path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read model config ", preset_or_path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> c = ModelConfigFromJson(text.str());
  if (!c.ok())
    return absl::Status(c.status().code(),
                        absl::StrCat(preset_or_path, ": ", c.status().message()));
  return c;
}

}  // namespace maximus::trainer
