#include "trainer/model/model.h"

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "trainer/backend/cpu/cpu_backend.h"

namespace maximus::trainer {
namespace {

// The logits after feeding `tokens`, or the error.
absl::StatusOr<std::vector<float>> FeedForLogits(Model::Decoder& decoder,
                                                 absl::Span<const int32_t> tokens) {
  std::vector<float> logits;
  if (absl::Status s = decoder.Feed(tokens, &logits); !s.ok()) return s;
  return logits;
}

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 48;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.mlp_hidden = 24;
  // Gemma 3's features at test size: layer 0 slides over 3 positions (base
  // 10^4), layer 1 is global (base 10^6); logits scaled by 1/sqrt(6), not
  // 1/sqrt(head_dim).
  c.sliding_window = 3;
  c.sliding_window_pattern = 2;
  c.query_pre_attn_scalar = 6;
  return c;
}

TokenBatch RandomBatch(int64_t rows, int64_t seq, int64_t vocab, uint64_t seed, bool mask) {
  std::mt19937_64 rng(seed);
  TokenBatch batch;
  batch.rows = rows;
  batch.seq = seq;
  for (int64_t i = 0; i < rows * seq; ++i) {
    batch.inputs.push_back(static_cast<int32_t>(rng() % vocab));
    batch.targets.push_back(static_cast<int32_t>(rng() % vocab));
    if (mask) batch.loss_mask.push_back(i % 4 != 1);
  }
  return batch;
}

// Gives the norms and projections non-trivial values so that every
// parameter's gradient is exercised.
void Perturb(Model& model, CpuBackend& backend) {
  std::mt19937_64 rng(99);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (Parameter& p : model.parameters()) {
    std::vector<float> host(p.size());
    backend.CopyToHost(p.value->data(), p.size(), host.data());
    for (float& x : host) x += normal(rng) * (p.shape.size() == 1 ? 1.0f : 0.5f);
    backend.CopyFromHost(host.data(), p.size(), p.value->data());
  }
}

// SmallConfig with RandNLA attention on layer 0 (layer 1 stays standard):
// blocks of 4, a sketch of 2 x 2 tokens.
ModelConfig RandnlaConfig(int64_t detail) {
  ModelConfig c = SmallConfig();
  c.attention = "randnla";
  c.standard_attention_layers = {1};
  c.randnla_block = 4;
  c.randnla_detail = detail;
  c.randnla_sketch = 4;
  return c;
}

// Central differences of the model's loss for sampled coordinates of every
// parameter, against the backward.
void CheckWholeModel(const LossSettings& loss, bool mask, const ModelConfig& config = SmallConfig(),
                     int64_t seq = 5) {
  CpuBackend backend;
  auto model = Model::Create(&backend, config);
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->Initialize(7);
  Perturb(**model, backend);
  const TokenBatch batch = RandomBatch(2, seq, 48, 3, mask);
  (*model)->ZeroGrads();
  ASSERT_TRUE((*model)->Step(batch, loss, true).ok());
  std::mt19937_64 rng(5);
  const float h = 1e-2f;
  for (Parameter& p : (*model)->parameters()) {
    std::vector<float> value(p.size()), grad(p.size());
    backend.CopyToHost(p.value->data(), p.size(), value.data());
    backend.CopyToHost(p.grad->data(), p.size(), grad.data());
    double err = 0, norm = 0;
    for (int sample = 0; sample < 6; ++sample) {
      // The embedding: rows that are used as inputs or targets.
      const int64_t i = &p == &(*model)->embedding() ? batch.inputs[sample] * p.shape[1] +
                                                           static_cast<int64_t>(rng() % p.shape[1])
                                                     : static_cast<int64_t>(rng() % p.size());
      const float saved = value[i];
      auto loss_at = [&](float x) {
        value[i] = x;
        backend.CopyFromHost(value.data(), p.size(), p.value->data());
        return (*model)->Step(batch, loss, false)->loss;
      };
      const double fd = (loss_at(saved + h) - loss_at(saved - h)) / (2.0 * h);
      loss_at(saved);
      err += (fd - grad[i]) * (fd - grad[i]);
      norm += double{grad[i]} * grad[i];
    }
    EXPECT_GT(norm, 1e-12) << p.name << " has no gradient";
    EXPECT_LT(std::sqrt(err / std::max(norm, 1e-8)), 2e-2) << p.name;
  }
}

TEST(ModelTest, WholeModelGradientsWithExactCrossEntropy) {
  LossSettings loss;
  loss.kind = LossKind::kCrossEntropy;
  CheckWholeModel(loss, /*mask=*/true);
}

TEST(ModelTest, WholeModelGradientsWithMaxis) {
  // One scout keeping all but 2 rows: the candidate set cannot change under
  // the small perturbations of the check.
  LossSettings loss;
  loss.kind = LossKind::kMaxis;
  loss.maxis.low_dim = 8;
  loss.maxis.scout_stride = 10;
  loss.maxis.candidate_budget = 46;
  CheckWholeModel(loss, /*mask=*/false);
}

// Detail 8 holds every past token of a 12-token row: the top-K choice, which
// has no gradient, cannot change under the differences' steps.
TEST(ModelTest, WholeModelGradientsWithRandnlaAttention) {
  LossSettings loss;
  loss.kind = LossKind::kCrossEntropy;
  CheckWholeModel(loss, /*mask=*/true, RandnlaConfig(8), 12);
}

// Log-probabilities at positions <= t do not move, bit for bit, when every
// token after t changes, with RandNLA layers whose parameters are not the
// initial ones; the same check on a model of the seed's kind would fail.
TEST(ModelTest, RandnlaModelIsCausal) {
  CpuBackend backend;
  ModelConfig config = RandnlaConfig(2);
  config.standard_attention_layers.clear();  // every layer RandNLA
  auto model = Model::Create(&backend, config);
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->Initialize(3);
  Perturb(**model, backend);
  const TokenBatch batch = RandomBatch(2, 21, 48, 8, false);
  auto base = (*model)->TokenLogProbs(batch);
  ASSERT_TRUE(base.ok()) << base.status();
  for (int64_t t : {0, 3, 4, 7, 8, 13, 19, 20}) {
    TokenBatch changed = batch;
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t p = t + 1; p < 21; ++p) {
        changed.inputs[r * 21 + p] = (changed.inputs[r * 21 + p] + 17) % 48;
      }
    }
    auto out = (*model)->TokenLogProbs(changed);
    ASSERT_TRUE(out.ok()) << out.status();
    bool later_changed = false;
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t p = 0; p < 21; ++p) {
        if (p <= t) {
          EXPECT_EQ((*out)[r * 21 + p], (*base)[r * 21 + p]) << "t " << t << " position " << p;
        } else {
          later_changed |= (*out)[r * 21 + p] != (*base)[r * 21 + p];
        }
      }
    }
    if (t < 20) {
      EXPECT_TRUE(later_changed) << "t " << t;
    }
  }
}

TEST(ModelTest, RandnlaLayersHaveNamedParameters) {
  CpuBackend backend;
  auto model = Model::Create(&backend, RandnlaConfig(3));
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->Initialize(1);
  EXPECT_EQ(static_cast<int64_t>((*model)->arena().size()), RandnlaConfig(3).NumParameters());
  for (const char* name : {"importance_scorer.in_proj.weight", "importance_scorer.in_proj.bias",
                           "importance_scorer.out_proj.weight", "importance_scorer.out_proj.bias",
                           "sketch.time_outer", "sketch.time_inner", "sketch.scale"}) {
    EXPECT_NE((*model)->Find(absl::StrCat("model.layers.0.self_attn.", name)), nullptr) << name;
    EXPECT_EQ((*model)->Find(absl::StrCat("model.layers.1.self_attn.", name)), nullptr) << name;
  }
  float scale = 0;
  backend.CopyToHost((*model)->Find("model.layers.0.self_attn.sketch.scale")->value->data(), 1,
                     &scale);
  EXPECT_EQ(scale, 1.0f);
  std::vector<float> outer(4);
  backend.CopyToHost((*model)->Find("model.layers.0.self_attn.sketch.time_outer")->value->data(), 4,
                     outer.data());
  EXPECT_NEAR(outer[0] * outer[0] + outer[1] * outer[1], 1.0, 1e-6);  // a DCT row
}

TEST(ModelTest, RandnlaConfigIsValidatedAndRoundTrips) {
  ModelConfig c = RandnlaConfig(3);
  auto back = ModelConfigFromJson(ModelConfigToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ModelConfigToJson(*back), ModelConfigToJson(c));
  EXPECT_TRUE(back->IsRandnlaLayer(0));
  EXPECT_FALSE(back->IsRandnlaLayer(1));
  // Standard models print without the RandNLA keys, as before.
  EXPECT_EQ(ModelConfigToJson(SmallConfig()).find("randnla"), std::string::npos);
  for (auto [edit, message] :
       std::vector<std::pair<std::function<void(ModelConfig&)>, std::string>>{
           {[](ModelConfig& m) { m.attention = "linear"; }, "attention"},
           {[](ModelConfig& m) { m.standard_attention_layers = {2}; }, "layer 2"},
           {[](ModelConfig& m) {
              m.standard_attention_layers = {0, 0};
            },
            "twice"},
           {[](ModelConfig& m) { m.randnla_sketch = 8; }, "randnla_sketch"},
           {[](ModelConfig& m) {
              m.attention = "standard";
              m.standard_attention_layers = {1};
            },
            "needs attention"}}) {
    ModelConfig bad = RandnlaConfig(3);
    edit(bad);
    const absl::Status s = ValidateModelConfig(bad);
    EXPECT_FALSE(s.ok()) << message;
    EXPECT_NE(std::string(s.message()).find(message), std::string::npos) << s.message();
  }
}

// Checkpointing recomputes the same activations in the same order: the loss
// and every gradient have the same bits as with every activation kept.
TEST(ModelTest, ActivationCheckpointingGivesTheSameGradients) {
  CpuBackend backend;
  LossSettings loss;
  loss.kind = LossKind::kCrossEntropy;
  const TokenBatch batch = RandomBatch(2, 7, 48, 5, /*mask=*/true);
  std::vector<std::vector<float>> grads;
  std::vector<double> losses;
  for (bool checkpointing : {false, true}) {
    auto model = Model::Create(&backend, SmallConfig());
    ASSERT_TRUE(model.ok()) << model.status();
    (*model)->Initialize(7);
    Perturb(**model, backend);
    (*model)->SetActivationCheckpointing(checkpointing);
    (*model)->ZeroGrads();
    auto out = (*model)->Step(batch, loss, true);
    ASSERT_TRUE(out.ok()) << out.status();
    losses.push_back(out->loss);
    ParameterArena& arena = (*model)->arena();
    grads.emplace_back(arena.size());
    backend.CopyToHost(arena.grads().data(), arena.size(), grads.back().data());
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  int64_t nonzero = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_EQ(grads[0][i], grads[1][i]) << "gradient element " << i;
    nonzero += grads[0][i] != 0.0f;
  }
  EXPECT_GT(nonzero, static_cast<int64_t>(grads[0].size() / 2));
}

class DecodingTest : public ::testing::TestWithParam<bool> {};

// With RandNLA on layer 0 too: its scores are cached like its keys.
TEST_P(DecodingTest, IncrementalDecodingEqualsTheFullForward) {
  CpuBackend backend;
  auto model = Model::Create(&backend, GetParam() ? RandnlaConfig(2) : SmallConfig());
  ASSERT_TRUE(model.ok());
  (*model)->Initialize(11);
  Perturb(**model, backend);
  const TokenBatch batch = RandomBatch(1, 9, 48, 4, false);
  // Full forward: log p(target_i | inputs ≤ i), from the logits.
  auto logprobs = (*model)->TokenLogProbs(batch);
  ASSERT_TRUE(logprobs.ok()) << logprobs.status();
  auto decoder = (*model)->NewDecoder(16);
  // Prompt of 4 tokens at once, then one at a time.
  for (int64_t pos = 0; pos < 9;) {
    const int64_t take = pos == 0 ? 4 : 1;
    auto logits = FeedForLogits(*decoder, absl::MakeConstSpan(batch.inputs).subspan(pos, take));
    ASSERT_TRUE(logits.ok()) << logits.status();
    pos += take;
    double max = -1e30, sum = 0;
    for (float z : *logits) max = std::max<double>(max, z);
    for (float z : *logits) sum += std::exp(z - max);
    const double lp = (*logits)[batch.targets[pos - 1]] - max - std::log(sum);
    EXPECT_NEAR(lp, (*logprobs)[pos - 1], 1e-4) << "position " << pos - 1;
  }
  EXPECT_EQ(decoder->position(), 9);
  auto overflow = FeedForLogits(*decoder, std::vector<int32_t>(8, 1));
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kResourceExhausted);
}

INSTANTIATE_TEST_SUITE_P(Attention, DecodingTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Randnla" : "Standard";
                         });

TEST(ModelTest, InitialisationIsDeterministicAndScaled) {
  CpuBackend backend;
  ModelConfig config = SmallConfig();
  auto a = Model::Create(&backend, config);
  auto b = Model::Create(&backend, config);
  ASSERT_TRUE(a.ok() && b.ok());
  (*a)->Initialize(5);
  (*b)->Initialize(5);
  for (size_t i = 0; i < (*a)->parameters().size(); ++i) {
    Parameter& pa = (*a)->parameters()[i];
    Parameter& pb = (*b)->parameters()[i];
    std::vector<float> va(pa.size()), vb(pb.size());
    backend.CopyToHost(pa.value->data(), pa.size(), va.data());
    backend.CopyToHost(pb.value->data(), pb.size(), vb.data());
    EXPECT_EQ(va, vb) << pa.name;
    if (pa.shape.size() == 1) {
      for (float x : va) EXPECT_EQ(x, 0.0f) << pa.name;
    }
  }
  std::vector<float> emb((*a)->embedding().size());
  backend.CopyToHost((*a)->embedding().value->data(), emb.size(), emb.data());
  double sq = 0;
  for (float x : emb) sq += double{x} * x;
  EXPECT_NEAR(std::sqrt(sq / emb.size()), 1.0 / std::sqrt(16.0), 0.02);
  EXPECT_EQ((*a)->parameters().size(), 1 + 13 * 2 + 1u);
  EXPECT_EQ((*a)->parameters()[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ((*a)->parameters()[2].shape, (std::vector<int64_t>{32, 16}));
}

TEST(ModelTest, PresetsAndConfigFiles) {
  auto tiny = PresetModelConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden, 256);
  EXPECT_EQ(tiny->layers, 4);
  EXPECT_EQ(tiny->vocab_size, 262144);
  // 262,144 x 256 embedding + 4 layers of (attention 256·(256+64+64+256) +
  // MLP 3·256·1024 + norms 4·256 + 2·64) + final norm.
  EXPECT_EQ(tiny->NumParameters(),
            262144LL * 256 + 4 * (256 * 640 + 3 * 256 * 1024 + 4 * 256 + 128) + 256);
  auto m270 = PresetModelConfig("270m");
  ASSERT_TRUE(m270.ok());
  EXPECT_EQ(m270->hidden, 640);
  EXPECT_EQ(m270->layers, 18);
  EXPECT_EQ(m270->head_dim, 256);
  EXPECT_EQ(m270->sliding_window, 512);
  EXPECT_EQ(m270->activation, Activation::kGeluTanh);
  EXPECT_FLOAT_EQ(m270->AttentionScale(), 1.0f / 16);
  for (int64_t layer = 0; layer < 18; ++layer) {
    const bool global = layer % 6 == 5;  // Gemma 3: five local layers, then a global one.
    EXPECT_EQ(m270->IsSlidingLayer(layer), !global) << layer;
    EXPECT_EQ(m270->WindowOf(layer), global ? 0 : 512) << layer;
    EXPECT_FLOAT_EQ(m270->RopeThetaOf(layer), global ? 1e6f : 1e4f) << layer;
  }
  auto explicit_types =
      ModelConfigFromJson(R"({"layers": 2, "layer_types": ["full_attention", "sliding_attention"],
                              "activation": "silu"})");
  ASSERT_TRUE(explicit_types.ok()) << explicit_types.status();
  EXPECT_FALSE(explicit_types->IsSlidingLayer(0));
  EXPECT_TRUE(explicit_types->IsSlidingLayer(1));
  EXPECT_EQ(explicit_types->activation, Activation::kSilu);
  auto again = ModelConfigFromJson(ModelConfigToJson(*explicit_types));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->layer_types, explicit_types->layer_types);
  EXPECT_FALSE(ModelConfigFromJson(R"({"layers": 2, "layer_types": ["full_attention"]})").ok());
  EXPECT_FALSE(ModelConfigFromJson(R"({"activation": "relu"})").ok());
  EXPECT_FALSE(PresetModelConfig("huge").ok());
  auto round = ModelConfigFromJson(ModelConfigToJson(*m270));
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->mlp_hidden, 2048);
  auto derived = ModelConfigFromJson(R"({"preset": "tiny", "layers": 2})");
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(derived->layers, 2);
  EXPECT_EQ(derived->hidden, 256);
  auto typo = ModelConfigFromJson(R"({"hiden": 8})");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("hiden"), absl::string_view::npos);
  auto bad = ModelConfigFromJson(R"({"heads": 3, "kv_heads": 2})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("kv_heads"), absl::string_view::npos);
}

// Sizes are range-checked before anything is allocated, naming the field.
TEST(ModelTest, ConfigSizesAreBoundedBeforeAllocation) {
  auto refused = [](const std::string& json, absl::StatusCode code, const std::string& field) {
    auto c = ModelConfigFromJson(json);
    ASSERT_FALSE(c.ok()) << json;
    EXPECT_EQ(c.status().code(), code) << c.status();
    EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  refused(R"({"preset": "tiny", "layers": 1000000000})", kInvalid, "layers");
  refused(R"({"hidden": 1048576, "vocab_size": 2147483647})", kInvalid, "vocab_size");
  refused(R"({"hidden": 1048576})", kInvalid, "hidden");
  refused(R"({"head_dim": 1000000})", kInvalid, "head_dim");
  refused(R"({"mlp_hidden": 9223372036854775807})", kInvalid, "mlp_hidden");
  refused(R"({"max_position_embeddings": 18446744073709551615})", kInvalid,
          "max_position_embeddings");
  refused(R"({"sliding_window": -1})", kInvalid, "sliding_window");
  refused(R"({"rope_theta": 1e300})", kInvalid, "rope_theta");
  refused(R"({"norm_eps": 2})", kInvalid, "norm_eps");

  // Each field in range, but 2^24 x 2^16 embedding values alone are 2^40
  // parameters: 18 TiB with gradients and moments. The config reads; the
  // model is refused before anything is allocated.
  ModelConfig huge;
  huge.vocab_size = kMaxVocabSize;
  huge.hidden = kMaxHidden;
  EXPECT_EQ(ModelMemoryBytes(huge), static_cast<uint64_t>(huge.NumParameters()) * 18);
  EXPECT_EQ(ValidateModelFitsMemory(huge, uint64_t{1} << 40).code(),
            absl::StatusCode::kResourceExhausted);
  ModelConfig wraps;
  wraps.vocab_size = wraps.hidden = wraps.mlp_hidden = int64_t{1} << 40;  // Outside the bounds.
  EXPECT_EQ(ModelMemoryBytes(wraps), UINT64_MAX);  // Saturates instead of wrapping.
  CpuBackend backend;
  EXPECT_TRUE(ValidateModelConfig(huge).ok());
  const absl::Status too_big = Model::Create(&backend, huge).status();
  EXPECT_EQ(too_big.code(), absl::StatusCode::kResourceExhausted) << too_big;
  EXPECT_NE(too_big.message().find("the backend's memory"), std::string::npos) << too_big;
  const ModelConfig tiny = *PresetModelConfig("tiny");
  EXPECT_EQ(ModelMemoryBytes(tiny), static_cast<uint64_t>(tiny.NumParameters()) * 18);
  EXPECT_TRUE(ValidateModelFitsMemory(tiny, backend.MemoryBytes()).ok());
  // Optimizer state sharded over 4 ranks: 10 bytes a parameter plus a
  // quarter of the moments' 8.
  EXPECT_EQ(ModelMemoryBytes(tiny, 4), static_cast<uint64_t>(tiny.NumParameters()) * 12);
  const uint64_t fits_sharded = ModelMemoryBytes(tiny, 4);
  EXPECT_TRUE(ValidateModelFitsMemory(tiny, fits_sharded, 4).ok());
  EXPECT_EQ(ValidateModelFitsMemory(tiny, fits_sharded, 1).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(ModelTest, PackedRowsBecomeInputsAndTargets) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 0, 1, 1};
  const TokenBatch batch = MakeTokenBatch(tokens, mask, 2, 4);
  EXPECT_EQ(batch.seq, 3);
  EXPECT_EQ(batch.inputs, (std::vector<int32_t>{1, 2, 3, 5, 6, 7}));
  EXPECT_EQ(batch.targets, (std::vector<int32_t>{2, 3, 4, 6, 7, 8}));
  EXPECT_EQ(batch.loss_mask, (std::vector<uint8_t>{1, 0, 1, 0, 1, 1}));
}

}  // namespace
}  // namespace maximus::trainer
