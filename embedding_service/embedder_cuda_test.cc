// The embedder on the CUDA backend against the CPU backend, on a random
// model with the real Gemma 3 tokenizer.
//
// Usage: embedder_cuda_test PATH/tokenizer.json

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/embedder.h"
#include "embedding_service/test_checkpoint.h"
#include "embedding_service/test_util.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"

namespace maximus::embedding {

std::string g_tokenizer_path;

namespace {

TEST(EmbedderCudaTest, GpuEmbeddingsMatchTheCpu) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const std::string dir = testing::TestDir("checkpoint");
  ASSERT_TRUE(WriteTestCheckpoint(dir, g_tokenizer_path).ok());
  Embedder::Options options;
  options.backend = "cpu";
  auto cpu = Embedder::Load(dir, g_tokenizer_path, options);
  options.backend = "cuda";
  auto gpu = Embedder::Load(dir, g_tokenizer_path, options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<std::string>& texts = testing::AustenOpenings();
  for (Pooling pooling : {Pooling::kMean, Pooling::kLastToken}) {
    auto a = (*cpu)->Embed(texts, pooling);
    auto b = (*gpu)->Embed(texts, pooling);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t i = 0; i < texts.size(); ++i) {
      double diff = 0, norm = 0;
      for (size_t j = 0; j < (*a)[i].size(); ++j) {
        diff += std::pow((*a)[i][j] - (*b)[i][j], 2);
        norm += std::pow((*a)[i][j], 2);
      }
      // The GPU backend computes in bf16 where the CPU uses fp32.
      EXPECT_LT(std::sqrt(diff / norm), 2e-2) << "text " << i;
    }
  }
}

}  // namespace
}  // namespace maximus::embedding

int main(int argc, char** argv) {
  return maximus::embedding::testing::RunTestsWithPath(argc, argv, "PATH/tokenizer.json",
                                                       &maximus::embedding::g_tokenizer_path);
}
