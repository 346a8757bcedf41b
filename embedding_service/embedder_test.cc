// The embedder on a checkpoint of a small random model with the real Gemma 3
// tokenizer, loaded as our checkpoint and as a Hugging Face folder; pooling
// against the model's own hidden states; batching that changes nothing.
//
// Usage: embedder_test PATH/tokenizer.json

#include "embedding_service/embedder.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/test_checkpoint.h"
#include "embedding_service/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/hf_import.h"
#include "trainer/model/inference.h"

namespace maximus::embedding {

std::string g_tokenizer_path;

namespace {

using ::testing::HasSubstr;

using testing::TestDir;

const std::vector<std::string>& kTexts = testing::AustenOpenings();

double MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
  }
  return worst;
}

class EmbedderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(TestDir("checkpoint"));
    ASSERT_TRUE(WriteTestCheckpoint(*checkpoint_, g_tokenizer_path).ok());
    Embedder::Options options;
    options.backend = "cpu";
    auto embedder = Embedder::Load(*checkpoint_, g_tokenizer_path, options);
    ASSERT_TRUE(embedder.ok()) << embedder.status();
    embedder_ = embedder->release();
  }
  static void TearDownTestSuite() {
    delete embedder_;
    delete checkpoint_;
  }
  static std::string* checkpoint_;
  static Embedder* embedder_;
};

std::string* EmbedderTest::checkpoint_ = nullptr;
Embedder* EmbedderTest::embedder_ = nullptr;

TEST_F(EmbedderTest, MeanAndLastTokenPoolTheModelsHiddenStates) {
  ASSERT_EQ(embedder_->dims(), kTestModelDims);
  auto mean = embedder_->Embed(kTexts, Pooling::kMean);
  auto last = embedder_->Embed(kTexts, Pooling::kLastToken);
  ASSERT_TRUE(mean.ok()) << mean.status();
  ASSERT_TRUE(last.ok()) << last.status();
  // The same model, fed one text at a time straight through the library.
  trainer::CpuBackend backend;
  auto loaded = trainer::LoadModelForInference(&backend, *checkpoint_, embedder_->tokenizer());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const int64_t d = kTestModelDims;
  for (size_t i = 0; i < kTexts.size(); ++i) {
    std::vector<int32_t> ids = {trainer::DocumentStartId(embedder_->tokenizer())};
    auto text_ids = embedder_->tokenizer().Encode(kTexts[i]);
    ASSERT_TRUE(text_ids.ok());
    ids.insert(ids.end(), text_ids->begin(), text_ids->end());
    trainer::TokenBatch batch;
    batch.rows = 1;
    batch.seq = static_cast<int64_t>(ids.size());
    batch.inputs = ids;
    batch.targets = ids;
    auto hidden = (*loaded)->model->FinalHiddenStates(batch);
    ASSERT_TRUE(hidden.ok()) << hidden.status();
    std::vector<float> expected_mean(d, 0.0f), expected_last(d);
    for (int64_t t = 1; t < batch.seq; ++t) {
      for (int64_t j = 0; j < d; ++j) expected_mean[j] += (*hidden)[t * d + j] / (batch.seq - 1);
    }
    for (int64_t j = 0; j < d; ++j) expected_last[j] = (*hidden)[(batch.seq - 1) * d + j];
    // Batched with longer texts (right padding) against alone: padding
    // reaches no text's states.
    EXPECT_LT(MaxDifference((*mean)[i], expected_mean), 1e-4) << i;
    EXPECT_LT(MaxDifference((*last)[i], expected_last), 1e-4) << i;
  }
  // Different texts, different embeddings; every prefix normalises to 1.
  EXPECT_GT(MaxDifference((*mean)[0], (*mean)[1]), 1e-3);
  for (int64_t size : PrefixSizes(d)) {
    EXPECT_NEAR(PrefixNorm(NormalizedPrefix((*mean)[0], size), size), 1.0, 1e-6);
  }
}

TEST_F(EmbedderTest, SmallBatchesGiveTheSameEmbeddings) {
  Embedder::Options options;
  options.backend = "cpu";
  options.batch_tokens = 513;  // One text per forward pass.
  auto one_at_a_time = Embedder::Load(*checkpoint_, g_tokenizer_path, options);
  ASSERT_TRUE(one_at_a_time.ok()) << one_at_a_time.status();
  auto a = embedder_->Embed(kTexts, Pooling::kMean);
  auto b = (*one_at_a_time)->Embed(kTexts, Pooling::kMean);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < kTexts.size(); ++i) EXPECT_LT(MaxDifference((*a)[i], (*b)[i]), 1e-4);
}

TEST_F(EmbedderTest, LoadsAHuggingFaceFolder) {
  // config.json and model.safetensors only: what save_pretrained writes.
  const std::string hf = TestDir("hf");
  std::filesystem::create_directories(hf);
  for (const char* file : {"config.json", "model.safetensors"}) {
    std::filesystem::copy_file(*checkpoint_ + "/" + file, hf + "/" + file);
  }
  Embedder::Options options;
  options.backend = "cpu";
  auto from_hf = Embedder::Load(hf, g_tokenizer_path, options);
  ASSERT_TRUE(from_hf.ok()) << from_hf.status();
  auto a = embedder_->Embed(kTexts, Pooling::kMean);
  auto b = (*from_hf)->Embed(kTexts, Pooling::kMean);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < kTexts.size(); ++i) EXPECT_LT(MaxDifference((*a)[i], (*b)[i]), 1e-6);
}

TEST_F(EmbedderTest, RefusesEmptyTextsAndTruncatesLongOnes) {
  absl::Status empty = embedder_->Embed({"fine", ""}, Pooling::kMean).status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.message()), HasSubstr("texts[1] is empty"));
  // Past max_tokens (512) a text is not read: two texts that differ only
  // there embed alike.
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += kTexts[i % kTexts.size()] + " ";
  auto both = embedder_->Embed({long_text + "alpha", long_text + "omega"}, Pooling::kMean);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_LT(MaxDifference((*both)[0], (*both)[1]), 1e-5);
}

TEST(EmbedderLoadTest, NamesWhatIsMissing) {
  Embedder::Options options;
  options.backend = "cpu";
  EXPECT_FALSE(Embedder::Load(TestDir("absent"), g_tokenizer_path, options).ok());
  options.backend = "tpu";
  absl::Status bad_backend = Embedder::Load(TestDir("absent"), g_tokenizer_path, options).status();
  EXPECT_EQ(bad_backend.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_backend.message()), HasSubstr("backend"));
}

}  // namespace
}  // namespace maximus::embedding

int main(int argc, char** argv) {
  return maximus::embedding::testing::RunTestsWithPath(argc, argv, "PATH/tokenizer.json",
                                                       &maximus::embedding::g_tokenizer_path);
}
