// The shape of a Gemma 3 text decoder (see model.h), with presets and a JSON
// form for checkpoints and config files. Field for field what `transformers`'
// Gemma3TextConfig describes; hf_config.h converts to and from its config.json.

#ifndef MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_
#define MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/gated_activation.h"
#include "kernels/randnla_attention.h"

namespace maximus::trainer {

// The gated MLP's activation, act(gate(x)) * up(x): Gemma 3's
// "gelu_pytorch_tanh" or SiLU (SwiGLU).
using Activation = kernels::Activation;

struct ModelConfig {
  std::string name = "custom";
  int64_t vocab_size = 262144;
  int64_t hidden = 256;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t kv_heads = 1;
  int64_t head_dim = 64;
  int64_t mlp_hidden = 1024;
  Activation activation = Activation::kGeluTanh;
  // Attention logits are q·k / sqrt(query_pre_attn_scalar).
  float query_pre_attn_scalar = 64.0f;
  // Sliding-window layers see the last `sliding_window` positions (the query's
  // own included); 0 makes every layer global.
  int64_t sliding_window = 64;
  // Layer l is global when (l + 1) % sliding_window_pattern == 0 (Gemma 3:
  // 6, five local layers then one global); 1 makes every layer global. Used
  // when layer_types is empty.
  int64_t sliding_window_pattern = 2;
  // Explicit per-layer kinds, "sliding_attention" or "full_attention" (as
  // config.json's layer_types); overrides the pattern when not empty.
  std::vector<std::string> layer_types;
  float rope_theta = 1000000.0f;      // RoPE base of global layers.
  float rope_local_theta = 10000.0f;  // RoPE base of sliding-window layers.
  int64_t max_position_embeddings = 32768;
  float norm_eps = 1e-6f;
  // The layers' attention: "standard" (causal softmax, windowed on sliding
  // layers) or "randnla" (kernels/randnla_attention.h: own block, top-K
  // detail tokens, a sketch of the past; no window), except the layers listed
  // in standard_attention_layers, which keep standard attention.
  std::string attention = "standard";
  std::vector<int64_t> standard_attention_layers;
  // RandNLA's sizes: block L, detail tokens K, sketch tokens S.
  int64_t randnla_block = 64;
  int64_t randnla_detail = 32;
  int64_t randnla_sketch = 16;

  int64_t NumParameters() const;
  float AttentionScale() const;
  bool IsSlidingLayer(int64_t layer) const;
  // The keys a query of `layer` sees: sliding_window for local layers, 0 (no
  // limit) for global ones.
  int64_t WindowOf(int64_t layer) const;
  float RopeThetaOf(int64_t layer) const;
  bool IsRandnlaLayer(int64_t layer) const;
  int64_t RandnlaLayers() const;
  kernels::RandnlaConfig Randnla() const;
};

// "standard attention", "RandNLA attention on every layer" or "RandNLA
// attention (standard on layers 0, 3)".
std::string AttentionDescription(const ModelConfig& config);

// The parameters a RandNLA layer adds to a standard one: the importance
// scorer (hidden → 64 → 1) and the sketch's two factors and scale.
int64_t RandnlaLayerParameters(const ModelConfig& config);

// Upper bounds of the config's fields, far above any Gemma 3 (hidden 5376,
// 62 layers, vocabulary 262,144, 128K positions) yet low enough that every
// size derived from them fits in 64 bits and a hostile file cannot ask for
// an absurd allocation.
inline constexpr int64_t kMaxVocabSize = int64_t{1} << 24;  // 16,777,216
inline constexpr int64_t kMaxHidden = int64_t{1} << 16;     // 65,536
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxHeads = 1024;  // heads and kv_heads
inline constexpr int64_t kMaxHeadDim = 4096;
inline constexpr int64_t kMaxMlpHidden = int64_t{1} << 18;  // 262,144
inline constexpr int64_t kMaxPositions = int64_t{1}
                                         << 24;  // sliding_window, max_position_embeddings
inline constexpr int64_t kMaxSlidingWindowPattern = kMaxLayers;
inline constexpr size_t kMaxModelNameLength = 256;
inline constexpr float kMaxRopeTheta = 1e12f;
inline constexpr float kMaxQueryPreAttnScalar = 1e9f;
inline constexpr float kMaxNormEps = 1.0f;

// INVALID_ARGUMENT naming the field: sizes positive and within the bounds
// above, heads a multiple of kv_heads, head_dim even, theta and eps positive
// and bounded, layer_types well formed, attention known,
// standard_attention_layers distinct layers (and only with RandNLA), the
// RandNLA sizes valid (kernels::ValidateRandnlaConfig).
absl::Status ValidateModelConfig(const ModelConfig& config);

// What Model::Create allocates for `config`'s parameters: every parameter's
// value, gradient and two AdamW moments in fp32, plus a bf16 shadow (16 + 2
// bytes each), the moments for 1/optimizer_shards of the parameters when the
// optimizer state is sharded over ranks. Saturates at UINT64_MAX; exact for
// configs within the bounds.
uint64_t ModelMemoryBytes(const ModelConfig& config, int optimizer_shards = 1);

// RESOURCE_EXHAUSTED, with both sizes, when ModelMemoryBytes(config) exceeds
// `memory_bytes`. Model::Create checks it against its backend's memory
// (Backend::MemoryBytes) before allocating (a config alone may describe a
// model bigger than this machine: reading it is fine).
absl::Status ValidateModelFitsMemory(const ModelConfig& config, uint64_t memory_bytes,
                                     int optimizer_shards = 1);

// Gemma 3's own shapes, all with the 262,144-token vocabulary:
//   "270m": hidden 640, 18 layers, 4 heads, 1 KV head, head dim 256, MLP 2048,
//           sliding window 512, a global layer every 6th;
//   "1b":   hidden 1152, 26 layers, 4 heads, 1 KV head, head dim 256, MLP 6912,
//           sliding window 512, a global layer every 6th;
//   "tiny": the same architecture at CPU size: hidden 256, 4 layers, 4 heads,
//           1 KV head, head dim 64, MLP 1024, sliding window 64, a global
//           layer every 2nd.
absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view name);

absl::string_view ActivationName(Activation activation);  // "gelu_pytorch_tanh", "silu"
absl::StatusOr<Activation> ParseActivation(absl::string_view name);

std::string ModelConfigToJson(const ModelConfig& config);
// Unknown keys are an error (a typo must not silently fall back to a
// default); missing keys keep the defaults above.
absl::StatusOr<ModelConfig> ModelConfigFromJson(absl::string_view json);
// A preset name, or the path of a JSON file (which may name a "preset" to
// start from).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& preset_or_path);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_MODEL_CONFIG_H_
