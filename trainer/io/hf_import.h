// Reads a Hugging Face Gemma 3 text model directory (what
// Gemma3ForCausalLM.save_pretrained writes) into a Model:
//   <dir>/config.json                       hf_config.h
//   <dir>/model.safetensors                 F32, BF16 or F16 tensors, or
//   <dir>/model.safetensors.index.json      its weight_map's shards
// Tensor names are the Model's own; those of a multimodal Gemma 3
// ("language_model.model.*", "model.language_model.*") are accepted too, and
// its vision tower is skipped. An lm_head.weight must equal the embedding
// (the LM head is tied).

#ifndef MAXIMUS_TRAINER_IO_HF_IMPORT_H_
#define MAXIMUS_TRAINER_IO_HF_IMPORT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/backend/backend.h"
#include "trainer/model/model.h"

namespace maximus::trainer {

// <dir>/config.json as a ModelConfig; errors name the file and key.
absl::StatusOr<ModelConfig> ReadHfModelConfig(const std::string& dir);

// Overwrites every parameter of `model` with the tensor of the same name.
// FAILED_PRECONDITION naming the tensor when one is missing, has another
// shape, is unexpected, or (lm_head.weight) differs from the embedding.
absl::Status LoadHfWeights(const std::string& dir, Model& model);

// Model::Create from the directory's config, then LoadHfWeights.
absl::StatusOr<std::unique_ptr<Model>> LoadHfModel(const std::string& dir, Backend* backend);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_HF_IMPORT_H_
