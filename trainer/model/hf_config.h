// ModelConfig <-> the config.json of a Hugging Face Gemma 3 text model
// (`transformers`' Gemma3TextConfig, model_type "gemma3_text").
//
// Written in the form transformers 5.x saves (RoPE bases under
// rope_parameters.{full_attention,sliding_attention}, explicit layer_types),
// so that AutoModelForCausalLM.from_pretrained loads a checkpoint directory
// as it is. Read: that form, the 4.5x form (rope_theta, rope_local_base_freq,
// sliding_window_pattern), and the text_config of a multimodal "gemma3"
// config; keys a file leaves out take Gemma3TextConfig's defaults. What this
// model cannot compute (logit soft-capping, RoPE scaling, untied embeddings,
// attention biases, bidirectional attention, another activation) is refused
// naming the key.

#ifndef MAXIMUS_TRAINER_MODEL_HF_CONFIG_H_
#define MAXIMUS_TRAINER_MODEL_HF_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/model/model_config.h"

namespace maximus::trainer {

// Gemma's special token ids, as its tokenizer and config.json have them.
inline constexpr int kGemmaPadId = 0;
inline constexpr int kGemmaEosId = 1;
inline constexpr int kGemmaBosId = 2;

// The config.json text (pretty-printed, float32 weights).
std::string ModelConfigToHfConfigJson(const ModelConfig& config);

// INVALID_ARGUMENT naming the key for malformed or unsupported values. The
// result's name is "gemma3_text" and its layer_types are explicit.
absl::StatusOr<ModelConfig> ModelConfigFromHfConfigJson(absl::string_view json);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_HF_CONFIG_H_
