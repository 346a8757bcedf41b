// Searches with stage 1 on the GPU against the same searches on the CPU:
// identical candidates up to fp32 rounding of near-ties, and a refreshed
// copy after the index changes.

#include "embedding_service/cuda_prefix_scanner.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/test_util.h"
#include "embedding_service/vector_index.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/inner_product_scan.h"

namespace maximus::embedding {
namespace {

constexpr int64_t kDims = 640;

std::vector<float> RandomUnitVector(std::mt19937_64& rng) {
  return NormalizedPrefix(testing::RandomVector(kDims, rng), kDims);
}

void Fill(VectorIndex& index, int64_t begin, int64_t end, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int64_t i = begin; i < end; ++i) {
    VectorRecord record;
    record.id = absl::StrCat("v", i);
    record.values = RandomUnitVector(rng);
    index.Upsert(std::move(record));
  }
}

TEST(CudaPrefixScannerTest, ScoresMatchTheCpuScan) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  auto scanner = CudaPrefixScanner::Create();
  ASSERT_TRUE(scanner.ok()) << scanner.status();
  std::mt19937_64 rng(1);
  const int64_t n = 5000, dims = 64;
  std::vector<float> matrix(n * dims), query(dims), gpu(n), cpu(n);
  std::normal_distribution<float> normal;
  for (float& x : matrix) x = normal(rng);
  for (float& x : query) x = normal(rng);
  ASSERT_TRUE((*scanner)->Scan(matrix.data(), n, dims, 1, query.data(), gpu.data()).ok());
  kernels::InnerProductScanReference(query.data(), dims, matrix.data(), n, dims, cpu.data());
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-4 * (1 + std::abs(cpu[i])));
  // A new version is uploaded again; the same version is not.
  for (float& x : matrix) x = -x;
  ASSERT_TRUE((*scanner)->Scan(matrix.data(), n, dims, 2, query.data(), gpu.data()).ok());
  EXPECT_NEAR(gpu[7], -cpu[7], 1e-4 * (1 + std::abs(cpu[7])));
}

TEST(CudaPrefixScannerTest, SearchesAgreeWithTheCpuIndex) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  VectorIndex cpu(IndexConfig{kDims, ElementType::kFloat32});
  VectorIndex gpu(IndexConfig{kDims, ElementType::kFloat32});
  auto scanner = CudaPrefixScanner::Create();
  ASSERT_TRUE(scanner.ok()) << scanner.status();
  gpu.SetPrefixScanner(*std::move(scanner));
  for (int round = 0; round < 2; ++round) {
    // The second round searches after more upserts and a delete.
    Fill(cpu, round * 20000, (round + 1) * 20000, 10 + round);
    Fill(gpu, round * 20000, (round + 1) * 20000, 10 + round);
    if (round == 1) {
      ASSERT_TRUE(cpu.Delete("v5"));
      ASSERT_TRUE(gpu.Delete("v5"));
    }
    std::mt19937_64 rng(100 + round);
    int same = 0;
    const int kQueries = 50;
    for (int q = 0; q < kQueries; ++q) {
      const std::vector<float> query = RandomUnitVector(rng);
      SearchOptions options;
      options.oversample = 8;
      const std::vector<SearchHit> a = cpu.Search(query, options);
      const std::vector<SearchHit> b = gpu.Search(query, options);
      ASSERT_EQ(a.size(), b.size());
      bool equal = true;
      for (size_t i = 0; i < a.size(); ++i) equal = equal && a[i].id == b[i].id;
      same += equal;
    }
    // cuBLAS sums in another order: a candidate at the cut may differ.
    EXPECT_GE(same, kQueries - 2) << "round " << round;
  }
}

}  // namespace
}  // namespace maximus::embedding
