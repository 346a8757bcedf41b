// The shape of a Gemma-3-like decoder (see model.h), with presets and a JSON
// form for checkpoints and config files.

#ifndef MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_
#define MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::trainer {

struct ModelConfig {
  std::string name = "custom";
  int64_t vocab_size = 262144;
  int64_t hidden = 256;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t kv_heads = 1;
  int64_t head_dim = 64;
  int64_t mlp_hidden = 1024;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-6f;

  int64_t NumParameters() const;
  // Attention logits are scaled by 1/sqrt(head_dim).
  float AttentionScale() const;
};

// INVALID_ARGUMENT naming the field: sizes positive, heads a multiple of
// kv_heads, head_dim even, theta and eps positive.
absl::Status ValidateModelConfig(const ModelConfig& config);

// "tiny" (hidden 256, 4 layers, 4 heads, 1 KV head, head dim 64, MLP 1024),
// "270m" (Gemma 3 270M: 640, 18, 4, 1, 256, 2048), "1b" (Gemma 3 1B: 1152,
// 26, 4, 1, 256, 6912); all with the 262,144-token vocabulary.
absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view name);

std::string ModelConfigToJson(const ModelConfig& config);
// Unknown keys are an error (a typo must not silently fall back to a
// default); missing keys keep the defaults above.
absl::StatusOr<ModelConfig> ModelConfigFromJson(absl::string_view json);
// A preset name, or the path of a JSON file (which may name a "preset" to
// start from).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& preset_or_path);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_
