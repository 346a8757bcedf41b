// The CUDA MAXIS loss against the CPU reference, on random non-zero bf16
// inputs: the same candidate set, loss, dH and sparse dW; and the same bits
// from run to run.

#include "kernels/maxis_cuda.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/bf16.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/maxis.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

struct Case {
  LinearHeadShape shape;
  MaxisConfig config;
  bool partial_mask;
  int64_t target_ids = 0;  // Targets drawn from this many ids; 0: from all of V.
};

MaxisConfig Config(int64_t stride, int64_t budget, bool ghost = true) {
  MaxisConfig config;
  config.scout_stride = stride;
  config.candidate_budget = budget;
  config.use_ghost = ghost;
  return config;
}

// Targets uniform over V, or over `ids` random ids when ids > 0 (long runs of
// tokens sharing a dW row). With a partial mask a fifth of the tokens is
// masked, half of those with the out-of-range target -100.
void RandomTargets(int64_t tokens, int64_t vocab, int64_t ids, bool partial_mask, uint64_t seed,
                   std::vector<int32_t>& targets, std::vector<uint8_t>& mask) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> pool;
  for (int64_t k = 0; k < ids; ++k) pool.push_back(static_cast<int32_t>(rng() % vocab));
  targets.clear();
  mask.clear();
  for (int64_t i = 0; i < tokens; ++i) {
    targets.push_back(ids > 0 ? pool[rng() % ids] : static_cast<int32_t>(rng() % vocab));
    mask.push_back(partial_mask ? static_cast<uint8_t>(rng() % 5 != 0) : 1);
    if (mask.back() == 0 && rng() % 2 == 0) targets.back() = -100;
  }
}

// The first index where a and b differ in bits; -1 if none.
template <typename T>
int64_t FirstBitDifference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

TEST(MaxisCudaTest, MatchesCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {{256, 128, 5000}, Config(4, 64), true},          // 64 scouts, k = 1.
      {{64, 64, 3000}, Config(4, 256), false},          // 16 scouts, k = 16.
      {{1000, 256, 50000}, Config(4, 512), true},       // 250 scouts, k = 2; V % 128 != 0.
      {{300, 96, 7000}, Config(3, 300, false), true},   // No ghost slot.
      {{40, 64, 1000}, Config(1, 1600, false), false},  // k = 40 > 32 per tile, many duplicates.
      // 20 targets: runs of ~80 tokens, across chunks of the sorted dW sum.
      {{2048, 128, 20000}, Config(4, 512), true, 20},
      {{1500, 96, 9000}, Config(3, 500, false), false, 20},  // d < 128 columns; N % 32 != 0.
  };
  uint64_t seed = 7;
  for (const Case& c : cases) {
    const LinearHeadShape& s = c.shape;
    const std::string label = absl::StrFormat(
        "N=%d d=%d V=%d stride=%d K=%d ghost=%d target_ids=%d", s.tokens, s.hidden, s.vocab,
        c.config.scout_stride, c.config.candidate_budget, c.config.use_ghost, c.target_ids);
    const std::vector<float> hidden = RoundToBf16(RandomNormal(s.tokens * s.hidden, seed += 10));
    const std::vector<float> weight =
        RoundToBf16(RandomNormal(s.vocab * s.hidden, seed + 1, 0.15f));
    std::vector<int32_t> targets;
    std::vector<uint8_t> mask;
    RandomTargets(s.tokens, s.vocab, c.target_ids, c.partial_mask, seed + 2, targets, mask);
    const auto want =
        MaxisLoss(s, {hidden.data(), weight.data(), targets.data(), mask.data()}, c.config, true);
    ASSERT_TRUE(want.ok()) << label << ": " << want.status();

    auto d_hidden = *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(hidden));
    auto d_weight = *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(weight));
    auto d_targets = *DeviceBuffer<int32_t>::FromHost(targets);
    auto d_mask = *DeviceBuffer<uint8_t>::FromHost(mask);
    auto maxis = MaxisCuda::Create(s, c.config);
    ASSERT_TRUE(maxis.ok()) << label << ": " << maxis.status();
    auto loss = *DeviceBuffer<float>::Allocate(3);
    auto grad_hidden = *DeviceBuffer<float>::Allocate(s.tokens * s.hidden);
    auto grad_ids = *DeviceBuffer<int32_t>::Allocate(maxis->max_grad_rows());
    auto grad_rows = *DeviceBuffer<float>::Allocate(maxis->max_grad_rows() * s.hidden);
    ASSERT_TRUE(loss.FillBytes(0xff).ok());
    ASSERT_TRUE(grad_hidden.FillBytes(0xff).ok());
    ASSERT_TRUE(grad_rows.FillBytes(0xff).ok());
    const auto counts =
        maxis->Run({d_hidden.data(), d_weight.data(), d_targets.data(), d_mask.data()},
                   {loss.data(), grad_hidden.data(), grad_ids.data(), grad_rows.data()});
    ASSERT_TRUE(counts.ok()) << label << ": " << counts.status();

    std::vector<int32_t> candidates(counts->candidates);
    ASSERT_EQ(cudaMemcpy(candidates.data(), maxis->candidates(), candidates.size() * 4,
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(candidates, want->candidates) << label;
    const std::vector<float> got_loss = *loss.ToHost();
    EXPECT_LT(RelativeError(std::vector<float>{got_loss[0], got_loss[1], got_loss[2]},
                            std::vector<double>{want->loss, want->main_loss, want->aux_loss}),
              1e-4)
        << label << ": loss " << got_loss[0] << " vs " << want->loss;
    EXPECT_LT(RelativeError(*grad_hidden.ToHost(), want->grad_hidden), 1e-2) << label;
    std::vector<int32_t> ids = *grad_ids.ToHost();
    ids.resize(counts->grad_rows);
    EXPECT_EQ(ids, want->grad_weight.ids) << label;
    std::vector<float> rows = *grad_rows.ToHost();
    rows.resize(counts->grad_rows * s.hidden);
    EXPECT_LT(RelativeError(rows, want->grad_weight.rows), 1e-2) << label;
  }
}

// Run-to-run determinism where it is hardest: thousands of tokens on 20
// targets (dW rows summed from many tokens), a partial mask, and W large
// enough for thousands of blocks in the norm pass. Two runs of one MaxisCuda
// and one of a fresh one give the same bits.
TEST(MaxisCudaTest, RepeatedTargetsAreBitIdenticalAcrossRuns) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const LinearHeadShape s{4096, 256, 65536};
  const MaxisConfig config = Config(4, 2048);
  std::vector<int32_t> targets;
  std::vector<uint8_t> mask;
  RandomTargets(s.tokens, s.vocab, 20, true, 31, targets, mask);
  auto d_hidden = *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(RandomNormal(s.tokens * s.hidden, 32)));
  auto d_weight =
      *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(RandomNormal(s.vocab * s.hidden, 33, 0.15f)));
  auto d_targets = *DeviceBuffer<int32_t>::FromHost(targets);
  auto d_mask = *DeviceBuffer<uint8_t>::FromHost(mask);

  struct Result {
    MaxisCuda::Counts counts;
    std::vector<float> loss, grad_hidden, rows;
    std::vector<int32_t> ids;
  };
  auto run = [&](MaxisCuda& maxis) {
    Result r;
    auto loss = *DeviceBuffer<float>::Allocate(3);
    auto grad_hidden = *DeviceBuffer<float>::Allocate(s.tokens * s.hidden);
    auto grad_ids = *DeviceBuffer<int32_t>::Allocate(maxis.max_grad_rows());
    auto grad_rows = *DeviceBuffer<float>::Allocate(maxis.max_grad_rows() * s.hidden);
    EXPECT_TRUE(loss.FillBytes(0xff).ok());
    EXPECT_TRUE(grad_hidden.FillBytes(0xff).ok());
    EXPECT_TRUE(grad_ids.FillBytes(0xff).ok());
    EXPECT_TRUE(grad_rows.FillBytes(0xff).ok());
    const auto counts =
        maxis.Run({d_hidden.data(), d_weight.data(), d_targets.data(), d_mask.data()},
                  {loss.data(), grad_hidden.data(), grad_ids.data(), grad_rows.data()});
    EXPECT_TRUE(counts.ok()) << counts.status();
    if (!counts.ok()) return r;
    r.counts = *counts;
    r.loss = *loss.ToHost();
    r.grad_hidden = *grad_hidden.ToHost();
    r.ids = *grad_ids.ToHost();
    r.ids.resize(counts->grad_rows);
    r.rows = *grad_rows.ToHost();
    r.rows.resize(counts->grad_rows * s.hidden);
    return r;
  };
  auto maxis = MaxisCuda::Create(s, config);
  ASSERT_TRUE(maxis.ok()) << maxis.status();
  auto fresh = MaxisCuda::Create(s, config);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  const Result first = run(*maxis);
  ASSERT_FALSE(first.loss.empty());
  ASSERT_TRUE(std::isfinite(first.loss[0])) << first.loss[0];
  ASSERT_GT(first.counts.grad_rows, first.counts.candidates);  // Targets outside C too.
  const Result again[] = {run(*maxis), run(*fresh)};
  for (const Result& r : again) {
    ASSERT_FALSE(r.loss.empty());
    EXPECT_EQ(r.counts.candidates, first.counts.candidates);
    EXPECT_EQ(r.counts.grad_rows, first.counts.grad_rows);
    EXPECT_EQ(FirstBitDifference(r.loss, first.loss), -1)
        << "loss " << r.loss[0] << " vs " << first.loss[0];
    EXPECT_EQ(FirstBitDifference(r.grad_hidden, first.grad_hidden), -1);
    EXPECT_EQ(r.ids, first.ids);
    EXPECT_EQ(FirstBitDifference(r.rows, first.rows), -1);
  }
}

TEST(MaxisCudaTest, RejectsWhatItCannotDo) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  MaxisConfig config;
  config.candidate_budget = 64;
  config.low_dim = 32;
  EXPECT_EQ(MaxisCuda::Create({64, 64, 1000}, config).status().code(),
            absl::StatusCode::kUnimplemented);
  config.low_dim = 64;
  config.scout_stride = 0;
  EXPECT_EQ(MaxisCuda::Create({64, 64, 1000}, config).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MaxisCudaTest, RejectsOutOfRangeTargetNamingIt) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const LinearHeadShape s{16, 64, 500};
  auto hidden = *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(RandomNormal(16 * 64, 3)));
  auto weight = *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(RandomNormal(500 * 64, 4)));
  std::vector<int32_t> targets(16, 7);
  targets[9] = -1;
  auto d_targets = *DeviceBuffer<int32_t>::FromHost(targets);
  auto loss = *DeviceBuffer<float>::Allocate(3);
  MaxisConfig config;
  config.candidate_budget = 32;
  auto maxis = MaxisCuda::Create(s, config);
  ASSERT_TRUE(maxis.ok()) << maxis.status();
  const auto counts =
      maxis->Run({hidden.data(), weight.data(), d_targets.data(), nullptr}, {loss.data()});
  ASSERT_FALSE(counts.ok());
  EXPECT_EQ(counts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(counts.status().message().find("targets[9]"), std::string::npos) << counts.status();
}

}  // namespace
}  // namespace maximus::kernels
