// The CUDA linear cross-entropy against the CPU reference, on random
// non-zero bf16 inputs.

#include "kernels/cross_entropy_cuda.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/bf16.h"
#include "kernels/cross_entropy.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/loss_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

using Problem = testing::LinearHeadProblem;

// bf16-representable inputs; with `partial_mask`, about a quarter masked.
Problem MakeProblem(const LinearHeadShape& shape, uint64_t seed, bool partial_mask) {
  Problem p = testing::RandomLinearHeadProblem(shape, seed, false, 1.0f, 0.2f);
  p.hidden = RoundToBf16(p.hidden);
  p.weight = RoundToBf16(p.weight);
  std::mt19937_64 rng(seed + 3);
  p.mask.resize(shape.tokens);
  for (uint8_t& m : p.mask) m = partial_mask ? static_cast<uint8_t>(rng() % 4 != 0) : 1;
  return p;
}

struct DeviceProblem {
  DeviceBuffer<Bf16Bits> hidden, weight;
  DeviceBuffer<int32_t> targets;
  DeviceBuffer<uint8_t> mask;

  LinearHeadDeviceInputs Inputs() const {
    return {hidden.data(), weight.data(), targets.data(), mask.data()};
  }
};

DeviceProblem Upload(const Problem& p) {
  return {*DeviceBuffer<Bf16Bits>::FromHost(ToBf16(p.hidden)),
          *DeviceBuffer<Bf16Bits>::FromHost(ToBf16(p.weight)),
          *DeviceBuffer<int32_t>::FromHost(p.targets), *DeviceBuffer<uint8_t>::FromHost(p.mask)};
}

struct Case {
  LinearHeadShape shape;
  int64_t chunk_tokens;
  bool partial_mask;
};

TEST(CrossEntropyCudaTest, MatchesCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {{37, 64, 1000}, 16, true},      // Several chunks, the last partial; V % 4 == 0.
      {{70, 96, 1023}, 2048, false},   // One chunk; V % 4 != 0 (scalar path).
      {{513, 256, 32768}, 128, true},  // Larger vocabulary.
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const Problem p = MakeProblem(c.shape, seed += 10, c.partial_mask);
    const absl::StatusOr<CrossEntropyResult> want = LinearCrossEntropy(c.shape, p.Inputs(), true);
    ASSERT_TRUE(want.ok()) << want.status();

    DeviceProblem dp = Upload(p);
    auto loss = *DeviceBuffer<float>::Allocate(1);
    auto token_loss = *DeviceBuffer<float>::Allocate(c.shape.tokens);
    auto grad_hidden = *DeviceBuffer<float>::Allocate(c.shape.tokens * c.shape.hidden);
    auto grad_weight = *DeviceBuffer<float>::Allocate(c.shape.vocab * c.shape.hidden);
    for (auto* b : {&loss, &token_loss, &grad_hidden, &grad_weight}) {
      ASSERT_TRUE(b->FillBytes(0xff).ok());  // NaN poison: every output must be written.
    }
    auto ce = LinearCrossEntropyCuda::Create(c.shape, {c.chunk_tokens});
    ASSERT_TRUE(ce.ok()) << ce.status();
    const absl::Status status = ce->Run(
        dp.Inputs(), {loss.data(), token_loss.data(), grad_hidden.data(), grad_weight.data()});
    ASSERT_TRUE(status.ok()) << status;

    const std::string label = absl::StrFormat("N=%d d=%d V=%d chunk=%d", c.shape.tokens,
                                              c.shape.hidden, c.shape.vocab, c.chunk_tokens);
    const std::vector<float> got_loss = *loss.ToHost();
    EXPECT_LT(RelativeError(got_loss, std::vector<double>{want->loss}), 1e-5) << label;
    // Logits accumulate in fp32 on both sides; the logit gradient is rounded
    // to bf16 before the backward GEMMs (2^-9 relative per element).
    EXPECT_LT(RelativeError(*token_loss.ToHost(), want->token_loss), 1e-5) << label;
    EXPECT_LT(RelativeError(*grad_hidden.ToHost(), want->grad_hidden), 5e-3) << label;
    EXPECT_LT(RelativeError(*grad_weight.ToHost(), want->grad_weight), 5e-3) << label;
  }
}

TEST(CrossEntropyCudaTest, LossOnlyMatchesAndSkipsGradients) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const LinearHeadShape shape{64, 128, 4096};
  const Problem p = MakeProblem(shape, 99, false);
  const auto want = LinearCrossEntropy(
      shape, {p.hidden.data(), p.weight.data(), p.targets.data(), nullptr}, false);
  ASSERT_TRUE(want.ok());
  DeviceProblem dp = Upload(p);
  LinearHeadDeviceInputs inputs = dp.Inputs();
  inputs.loss_mask = nullptr;
  auto loss = *DeviceBuffer<float>::Allocate(1);
  auto ce = LinearCrossEntropyCuda::Create(shape, {32});
  ASSERT_TRUE(ce.ok());
  ASSERT_TRUE(ce->Run(inputs, {loss.data()}).ok());
  EXPECT_LT(RelativeError(*loss.ToHost(), std::vector<double>{want->loss}), 1e-5);
}

TEST(CrossEntropyCudaTest, RejectsOutOfRangeTargetNamingIt) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const LinearHeadShape shape{8, 32, 100};
  Problem p = MakeProblem(shape, 5, false);
  p.targets[5] = 100;
  DeviceProblem dp = Upload(p);
  auto loss = *DeviceBuffer<float>::Allocate(1);
  auto ce = LinearCrossEntropyCuda::Create(shape, {});
  ASSERT_TRUE(ce.ok());
  const absl::Status status = ce->Run(dp.Inputs(), {loss.data()});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("targets[5]"), std::string::npos) << status;
  // A masked position may hold anything.
  p.mask[5] = 0;
  dp = Upload(p);
  EXPECT_TRUE(ce->Run(dp.Inputs(), {loss.data()}).ok());
}

TEST(CrossEntropyCudaTest, RejectsBadOptions) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  EXPECT_EQ(LinearCrossEntropyCuda::Create({8, 32, 100}, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearCrossEntropyCuda::Create({0, 32, 100}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::kernels
