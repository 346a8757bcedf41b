#include "trainer/model/model_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace maximus::trainer {

int64_t ModelConfig::NumParameters() const {
  const int64_t attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2;
  const int64_t mlp = 3 * hidden * mlp_hidden;
  const int64_t norms = 4 * hidden + 2 * head_dim;
  return vocab_size * hidden + layers * (attention + mlp + norms) + hidden;
}

float ModelConfig::AttentionScale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto positive = [](absl::string_view field, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("model ", field, " must be positive, not ", v));
  };
  for (auto [field, value] : {std::pair<absl::string_view, int64_t>{"vocab_size", c.vocab_size},
                              {"hidden", c.hidden},
                              {"layers", c.layers},
                              {"heads", c.heads},
                              {"kv_heads", c.kv_heads},
                              {"head_dim", c.head_dim},
                              {"mlp_hidden", c.mlp_hidden}}) {
    if (absl::Status s = positive(field, value); !s.ok()) return s;
  }
  if (c.heads % c.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model heads (", c.heads, ") must be a multiple of kv_heads (", c.kv_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model head_dim must be even for rotary embeddings, not ", c.head_dim));
  }
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
    return absl::InvalidArgumentError("model rope_theta must be positive");
  }
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps)) {
    return absl::InvalidArgumentError("model norm_eps must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view name) {
  ModelConfig c;
  c.name = std::string(name);
  if (name == "tiny") return c;
  if (name == "270m") {
    c.hidden = 640;
    c.layers = 18;
    c.heads = 4;
    c.kv_heads = 1;
    c.head_dim = 256;
    c.mlp_hidden = 2048;
    return c;
  }
  if (name == "1b") {
    c.hidden = 1152;
    c.layers = 26;
    c.heads = 4;
    c.kv_heads = 1;
    c.head_dim = 256;
    c.mlp_hidden = 6912;
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model preset \"", name, "\" (tiny, 270m, 1b, or a JSON file)"));
}

std::string ModelConfigToJson(const ModelConfig& c) {
  nlohmann::json j = {
      {"name", c.name},         {"vocab_size", c.vocab_size}, {"hidden", c.hidden},
      {"layers", c.layers},     {"heads", c.heads},           {"kv_heads", c.kv_heads},
      {"head_dim", c.head_dim}, {"mlp_hidden", c.mlp_hidden}, {"rope_theta", c.rope_theta},
      {"norm_eps", c.norm_eps}};
  return j.dump(2);
}

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
    } else if (key == "vocab_size") {
      s = integer(&c.vocab_size);
    } else if (key == "hidden") {
      s = integer(&c.hidden);
    } else if (key == "layers") {
      s = integer(&c.layers);
    } else if (key == "heads") {
      s = integer(&c.heads);
    } else if (key == "kv_heads") {
      s = integer(&c.kv_heads);
    } else if (key == "head_dim") {
      s = integer(&c.head_dim);
    } else if (key == "mlp_hidden") {
      s = integer(&c.mlp_hidden);
    } else if (key == "rope_theta") {
      s = real(&c.rope_theta);
    } else if (key == "norm_eps") {
      s = real(&c.norm_eps);
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
