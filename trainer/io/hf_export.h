// The files beside a checkpoint's model.safetensors that let Hugging Face
// loaders open the directory as it is
// (AutoModelForCausalLM.from_pretrained(dir), AutoTokenizer.from_pretrained(dir)):
//   config.json             the model as a Gemma3ForCausalLM (hf_config.h)
//   generation_config.json  Gemma's bos/eos/pad ids
//   tokenizer.json          a copy of the run's tokenizer, when it has one
//   tokenizer_config.json   a fast tokenizer over it, with the special tokens
//                           its ids 0-3 (pad, eos, bos, unk) hold

#ifndef MAXIMUS_TRAINER_IO_HF_EXPORT_H_
#define MAXIMUS_TRAINER_IO_HF_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "trainer/model/model_config.h"

namespace maximus::trainer {

// Writes (and fsyncs) the files above into the existing directory `dir`;
// the tokenizer files only when `tokenizer_path` is not empty.
absl::Status WriteHfModelFiles(const std::string& dir, const ModelConfig& config,
                               const std::string& tokenizer_path);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_HF_EXPORT_H_
