// One whole training step of a Gemma 3 model of the `tiny` preset's layer
// shapes (a smaller vocabulary) from the same weights on the CPU reference
// and on the GPU: the losses and every parameter's gradient agree within the
// bounds of the GPU's arithmetic (tf32 GEMMs, bf16 loss inputs), stated
// below; and the GPU's optimizer step moves the weights as the CPU's does.
// Also with RandNLA attention on every layer.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/test_util.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/backend/cuda/cuda_backend.h"
#include "trainer/model/model.h"

namespace maximus::trainer {
namespace {

// Relative L2 error bounds of the GPU against the CPU.
constexpr double kLossBound = 5e-3;
constexpr double kGradientBound = 3e-2;  // per parameter tensor
// AdamW's first step moves each weight by about lr · sign(gradient), so
// gradients near zero that differ in the last bits move their weights by
// different amounts: the bound is on the whole arena, relative to its norm.
constexpr double kWeightsAfterStepBound = 5e-3;

ModelConfig TinyShapes(bool randnla = false) {
  absl::StatusOr<ModelConfig> config = PresetModelConfig("tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  ModelConfig c = *config;
  c.vocab_size = 8192;
  if (randnla) c.attention = "randnla";
  return c;
}

TokenBatch TextLikeBatch(int64_t rows, int64_t seq, int64_t vocab) {
  TokenBatch batch;
  batch.rows = rows;
  batch.seq = seq;
  uint64_t state = 12345;
  for (int64_t i = 0; i < rows * seq; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    // Small ids are common, as in text.
    const double u = static_cast<double>(state >> 11) / 9007199254740992.0;
    batch.inputs.push_back(static_cast<int32_t>(std::pow(u, 3.0) * (vocab - 1)));
    batch.loss_mask.push_back(i % 7 != 3);
  }
  batch.targets.assign(batch.inputs.begin() + 1, batch.inputs.end());
  batch.targets.push_back(0);
  return batch;
}

struct StepResult {
  double loss = 0;
  std::vector<std::vector<float>> grads;  // per parameter
  std::vector<float> values_after;        // the arena after one optimizer step
};

StepResult RunStep(Backend* backend, const LossSettings& loss, const TokenBatch& batch,
                   bool randnla) {
  StepResult result;
  auto model = Model::Create(backend, TinyShapes(randnla));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return result;
  (*model)->Initialize(11);
  (*model)->ZeroGrads();
  auto out = (*model)->Step(batch, loss, true);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return result;
  result.loss = out->loss;
  for (Parameter& p : (*model)->parameters()) {
    result.grads.emplace_back(p.size());
    backend->CopyToHost(p.grad->data(), p.size(), result.grads.back().data());
  }
  OptimizerStep step;
  step.lr = 1e-3f;
  step.clip_norm = 1.0;
  auto norm = backend->OptimizerUpdate(step, (*model)->arena());
  EXPECT_TRUE(norm.ok()) << norm.status();
  ParameterArena& arena = (*model)->arena();
  result.values_after.resize(arena.size());
  backend->CopyToHost(arena.values().data(), arena.size(), result.values_after.data());
  EXPECT_TRUE(backend->Synchronize().ok());
  return result;
}

// With `randnla`, every layer's attention is RandNLA's and the GPU's GEMMs
// and attention run in fp32: the detail tokens are a top-K of scores read from
// the hidden states, which bf16 GEMMs would perturb enough to swap a near tie
// (a discrete change the gradient bound is not meant to absorb).
void Compare(LossKind kind, bool randnla = false) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CudaBackend::Options options;
  if (randnla) {
    options.gemm_precision = CudaBackend::GemmPrecision::kFp32;
    options.bf16_attention = false;
  }
  auto gpu = CudaBackend::Create(options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  CpuBackend cpu;
  LossSettings loss;
  loss.kind = kind;
  loss.maxis.candidate_budget = 512;
  const TokenBatch batch = TextLikeBatch(2, 256, TinyShapes().vocab_size);
  const StepResult want = RunStep(&cpu, loss, batch, randnla);
  const StepResult got = RunStep(gpu->get(), loss, batch, randnla);
  ASSERT_EQ(got.grads.size(), want.grads.size());
  EXPECT_NEAR(got.loss, want.loss, kLossBound * want.loss);
  auto model = Model::Create(&cpu, TinyShapes(randnla));
  ASSERT_TRUE(model.ok());
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < want.grads.size(); ++i) {
    const std::vector<double> reference(want.grads[i].begin(), want.grads[i].end());
    const double error = kernels::testing::RelativeError(got.grads[i], reference);
    const std::string& name = (*model)->parameters()[i].name;
    EXPECT_LE(error, kGradientBound) << name;
    if (randnla) std::printf("  %-60s gradient error %.3g\n", name.c_str(), error);
    if (error > worst) {
      worst = error;
      worst_name = name;
    }
  }
  std::printf("loss cpu %.6f gpu %.6f; largest gradient error %.3g (%s)\n", want.loss, got.loss,
              worst, worst_name.c_str());
  const std::vector<double> after(want.values_after.begin(), want.values_after.end());
  EXPECT_LE(kernels::testing::RelativeError(got.values_after, after), kWeightsAfterStepBound);
}

TEST(CudaStepTest, ExactCrossEntropyStepMatchesTheCpu) { Compare(LossKind::kCrossEntropy); }

TEST(CudaStepTest, MaxisStepMatchesTheCpu) { Compare(LossKind::kMaxis); }

// RandNLA attention on every layer (blocks of 64 over 256 positions): its
// scorer, sketch factors and scale get gradients on both backends.
TEST(CudaStepTest, RandnlaStepMatchesTheCpu) {
  Compare(LossKind::kCrossEntropy, /*randnla=*/true);
}

}  // namespace
}  // namespace maximus::trainer
