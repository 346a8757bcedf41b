// The CPU references of the losses split their work by the problem's shape
// alone, so one thread and many give the same bits.

#include <cstring>
#include <vector>

#include "base/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/cross_entropy.h"
#include "kernels/loss_test_util.h"
#include "kernels/maxis.h"

namespace maximus::kernels {
namespace {

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Several vocabulary tiles (4096 rows each in MAXIS), a row count that is no
// multiple of the row blocks, and masked rows.
testing::LinearHeadProblem Problem() {
  return testing::RandomLinearHeadProblem({101, 48, 9000}, 7, /*masked=*/true);
}

TEST(LossThreadsTest, PoolHasSeveralThreads) {
  EXPECT_GE(base::ThreadPool::Shared().size(), 4);  // MAXIMUS_THREADS from the BUILD file.
}

TEST(LossThreadsTest, MaxisIsTheSameOnOneThreadAndMany) {
  const testing::LinearHeadProblem p = Problem();
  MaxisConfig config;
  config.low_dim = 16;
  config.scout_stride = 3;
  config.candidate_budget = 300;
  absl::StatusOr<MaxisResult> one;
  {
    base::ThreadPool::ParallelismLimit limit(1);
    one = MaxisLoss(p.shape, p.Inputs(), config, /*compute_gradients=*/true);
  }
  const absl::StatusOr<MaxisResult> many = MaxisLoss(p.shape, p.Inputs(), config, true);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_GT(one->candidates.size(), 100u);
  EXPECT_EQ(one->candidates, many->candidates);
  EXPECT_EQ(one->loss, many->loss);
  EXPECT_EQ(one->main_loss, many->main_loss);
  EXPECT_EQ(one->aux_loss, many->aux_loss);
  EXPECT_TRUE(SameBits(one->grad_hidden, many->grad_hidden));
  EXPECT_EQ(one->grad_weight.ids, many->grad_weight.ids);
  EXPECT_TRUE(SameBits(one->grad_weight.rows, many->grad_weight.rows));
}

TEST(LossThreadsTest, CrossEntropyIsTheSameOnOneThreadAndMany) {
  const testing::LinearHeadProblem p = Problem();
  for (const int64_t tile : {int64_t{1000}, int64_t{4096}}) {
    absl::StatusOr<CrossEntropyResult> one;
    {
      base::ThreadPool::ParallelismLimit limit(1);
      one = LinearCrossEntropy(p.shape, p.Inputs(), /*compute_gradients=*/true, tile);
    }
    const absl::StatusOr<CrossEntropyResult> many =
        LinearCrossEntropy(p.shape, p.Inputs(), true, tile);
    ASSERT_TRUE(one.ok()) << one.status();
    ASSERT_TRUE(many.ok()) << many.status();
    EXPECT_EQ(one->loss, many->loss) << "tile " << tile;
    EXPECT_TRUE(SameBits(one->token_loss, many->token_loss)) << "tile " << tile;
    EXPECT_TRUE(SameBits(one->grad_hidden, many->grad_hidden)) << "tile " << tile;
    EXPECT_TRUE(SameBits(one->grad_weight, many->grad_weight)) << "tile " << tile;
  }
}

}  // namespace
}  // namespace maximus::kernels
