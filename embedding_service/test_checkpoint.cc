#include "embedding_service/test_checkpoint.h"

#include <memory>

#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/checkpoint.h"
#include "trainer/model/model.h"

namespace maximus::embedding {

absl::Status WriteTestCheckpoint(const std::string& dir, const std::string& tokenizer_path) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tokenizer,
                           tokenizer::Tokenizer::FromFile(tokenizer_path));
  trainer::ModelConfig config;
  config.name = "embedding-test";
  config.vocab_size = tokenizer->vocab_size();
  config.hidden = kTestModelDims;
  config.layers = 2;
  config.heads = 2;
  config.kv_heads = 1;
  config.head_dim = 32;
  config.mlp_hidden = 128;
  config.query_pre_attn_scalar = 32;
  trainer::CpuBackend backend;
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<trainer::Model> model,
                           trainer::Model::Create(&backend, config));
  model->Initialize(17);
  trainer::CheckpointState state;
  state.tokenizer_fingerprint = tokenizer->fingerprint();
  state.tokenizer_vocab_size = tokenizer->vocab_size();
  state.tokenizer_path = tokenizer_path;
  state.training = nlohmann::json::object();
  return trainer::SaveCheckpoint(dir, *model, {}, {}, state);
}

}  // namespace maximus::embedding
