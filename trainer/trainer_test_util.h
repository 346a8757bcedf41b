// A real embedded store and tiny-model options for tests of the training
// loop and of the services around it.

#ifndef MAXIMUS_TRAINER_TRAINER_TEST_UTIL_H_
#define MAXIMUS_TRAINER_TRAINER_TEST_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "data_service/embedded_data_source.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"
#include "trainer/trainer.h"

namespace maximus::trainer {

inline constexpr int32_t kTestVocab = 300;
inline constexpr int32_t kTestEos = 299;
inline constexpr char kTestFingerprint[] = "trainer-test-tokenizer";

// `documents` small "documents" with learnable structure (arithmetic
// progressions of token ids) in a fresh 2-shard store.
inline std::unique_ptr<data::EmbeddedDataSource> MakeTestData(const std::string& name,
                                                              int documents) {
  const std::string dir = data::FreshTestDir(name);
  data::StoreMetadata meta;
  meta.num_shards = 2;
  meta.tokenizer_fingerprint = kTestFingerprint;
  meta.vocab_size = kTestVocab;
  auto store = data::TokenStore::Create(dir, meta);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  std::vector<data::Document> docs;
  for (int i = 0; i < documents; ++i) {
    data::Document doc;
    const int start = i % 97, stride = 1 + i % 5, length = 20 + i % 30;
    for (int j = 0; j < length; ++j) doc.tokens.push_back((start + j * stride) % (kTestVocab - 1));
    docs.push_back(doc);
  }
  EXPECT_TRUE((*store)->AddDocuments(docs).ok());
  auto source = data::EmbeddedDataSource::Open(*std::move(store), kTestEos);
  EXPECT_TRUE(source.ok()) << source.status();
  return source.ok() ? *std::move(source) : nullptr;
}

// A 2-layer model of hidden 32 over that vocabulary, MAXIS, 8 steps of 2 x 2
// micro-batches of 32 tokens, writing to a fresh `out` directory.
inline TrainerOptions TestTrainerOptions(const std::string& out) {
  TrainerOptions o;
  o.model.name = "test";
  o.model.vocab_size = kTestVocab;
  o.model.hidden = 32;
  o.model.layers = 2;
  o.model.heads = 2;
  o.model.kv_heads = 1;
  o.model.head_dim = 16;
  o.model.mlp_hidden = 64;
  RunConfig& run = o.run;
  run.set_maxis_low_dim(16);
  run.set_maxis_candidates(64);
  run.set_steps(8);
  run.set_batch(2);
  run.set_seq_len(32);
  run.set_accumulation(2);
  run.set_lr(3e-3);
  run.set_warmup(2);
  run.set_eval_interval(4);
  run.set_eval_batches(2);
  run.set_checkpoint_interval(0);
  run.set_validation_fraction(0.1);
  run.set_out_dir(data::FreshTestDir(out));
  o.tokenizer_fingerprint = kTestFingerprint;
  o.tokenizer_vocab_size = kTestVocab;
  o.required_vocab_size = kTestVocab;
  o.quiet = true;
  return o;
}

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_TRAINER_TEST_UTIL_H_
