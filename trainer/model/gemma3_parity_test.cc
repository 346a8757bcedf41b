// The model against `transformers`' Gemma3ForCausalLM, in the manner of
// llm.c's test_gpt2: testdata/gemma3_tiny holds a small random Gemma 3 saved
// by transformers (make_gemma3_fixture.py) and its float32 logits on two rows
// of 16 ids. It mixes sliding (window 4) and full attention, has
// query_pre_attn_scalar != head_dim, separate local and global RoPE bases and
// non-zero norm weights, so each of those must match for the logits to.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/hf_import.h"
#include "trainer/io/safetensors.h"
#include "trainer/model/model.h"

namespace maximus::trainer {
namespace {

constexpr char kFixture[] = "trainer/model/testdata/gemma3_tiny";
constexpr float kTolerance = 1e-4f;

struct Expected {
  int64_t rows = 0;
  int64_t seq = 0;
  int64_t vocab = 0;
  std::vector<int32_t> ids;   // [rows, seq]
  std::vector<float> logits;  // [rows, seq, vocab]
};

Expected ReadExpected() {
  Expected e;
  absl::StatusOr<SafetensorsFile> file =
      ReadSafetensors(std::string(kFixture) + "/expected.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return e;
  const LoadedTensor& ids = file->tensors.at("input_ids");
  const LoadedTensor& logits = file->tensors.at("logits");
  e.rows = ids.shape[0];
  e.seq = ids.shape[1];
  e.vocab = logits.shape[2];
  for (float id : ids.data) e.ids.push_back(static_cast<int32_t>(id));
  e.logits = logits.data;
  return e;
}

TEST(Gemma3ParityTest, LogitsMatchTransformers) {
  CpuBackend backend;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadHfModel(kFixture, &backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const Expected e = ReadExpected();
  ASSERT_EQ(e.vocab, (*model)->config().vocab_size);

  // Logits at every position, one token at a time through the KV cache.
  float max_diff = 0;
  for (int64_t row = 0; row < e.rows; ++row) {
    std::unique_ptr<Model::Decoder> decoder = (*model)->NewDecoder(e.seq);
    for (int64_t t = 0; t < e.seq; ++t) {
      std::vector<float> logits;
      const absl::Status fed =
          decoder->Feed(absl::MakeConstSpan(&e.ids[row * e.seq + t], 1), &logits);
      ASSERT_TRUE(fed.ok()) << fed;
      ASSERT_EQ(static_cast<int64_t>(logits.size()), e.vocab);
      const float* want = &e.logits[(row * e.seq + t) * e.vocab];
      for (int64_t v = 0; v < e.vocab; ++v) {
        max_diff = std::max(max_diff, std::abs(logits[v] - want[v]));
      }
    }
  }
  std::printf("gemma3 parity: max |logit - transformers| = %.3g (tolerance %.0e)\n", max_diff,
              kTolerance);
  EXPECT_LE(max_diff, kTolerance);
}

// The batched forward of training and scoring: log p(next id) against
// transformers' log-softmax.
TEST(Gemma3ParityTest, TokenLogProbsMatchTransformers) {
  CpuBackend backend;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadHfModel(kFixture, &backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const Expected e = ReadExpected();
  TokenBatch batch;
  batch.rows = e.rows;
  batch.seq = e.seq;
  batch.inputs = e.ids;
  for (int64_t row = 0; row < e.rows; ++row) {
    for (int64_t t = 0; t < e.seq; ++t) {
      batch.targets.push_back(e.ids[row * e.seq + (t + 1) % e.seq]);
    }
  }
  absl::StatusOr<std::vector<float>> log_probs = (*model)->TokenLogProbs(batch);
  ASSERT_TRUE(log_probs.ok()) << log_probs.status();
  ASSERT_EQ(static_cast<int64_t>(log_probs->size()), e.rows * e.seq);
  float max_diff = 0;
  for (int64_t i = 0; i < e.rows * e.seq; ++i) {
    const float* logits = &e.logits[i * e.vocab];
    const double top = *std::max_element(logits, logits + e.vocab);
    double sum = 0;
    for (int64_t v = 0; v < e.vocab; ++v) sum += std::exp(logits[v] - top);
    const double want = logits[batch.targets[i]] - top - std::log(sum);
    max_diff = std::max(max_diff, static_cast<float>(std::abs((*log_probs)[i] - want)));
  }
  std::printf("gemma3 parity: max |log p - transformers| = %.3g (tolerance %.0e)\n", max_diff,
              kTolerance);
  EXPECT_LE(max_diff, kTolerance);
}

}  // namespace
}  // namespace maximus::trainer
