// Inference on a small random model with the real Gemma 3 vocabulary:
// checkpoint loading (and refusal of another tokenizer's), exact scoring
// against independent forwards, windowed scoring, greedy and seeded
// generation, stop tokens and UTF-8-safe streaming.
//
// Usage: inference_test PATH/tokenizer.json
//        inference_test --write_checkpoint PATH/tokenizer.json DIR
//        inference_test --write_randnla_checkpoint PATH/tokenizer.json DIR
// (the other forms write the test model's checkpoint for score_cli_test and,
// with RandNLA layers, score_prefix_test).

#include "trainer/model/inference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/end_of_text.h"
#include "trainer/backend/cpu/cpu_backend.h"

namespace maximus::trainer {

std::string g_tokenizer_path;

namespace {

// The logits after feeding `tokens`, or the error.
absl::StatusOr<std::vector<float>> FeedForLogits(Model::Decoder& decoder,
                                                 absl::Span<const int32_t> tokens) {
  std::vector<float> logits;
  if (absl::Status s = decoder.Feed(tokens, &logits); !s.ok()) return s;
  return logits;
}

constexpr char kPrompt[] = "It is a truth universally acknowledged";
constexpr char kText[] =
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families.";

ModelConfig TestConfig() {
  ModelConfig c;
  c.name = "inference-test";
  c.vocab_size = 262144;
  c.hidden = 16;
  c.layers = 1;
  c.heads = 2;
  c.kv_heads = 1;
  c.head_dim = 8;
  c.mlp_hidden = 32;
  return c;
}

std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

// TestConfig with two RandNLA layers: blocks of 4, 2 detail tokens, a sketch
// of 2 x 2.
ModelConfig RandnlaTestConfig() {
  ModelConfig c = TestConfig();
  c.name = "inference-test-randnla";
  c.layers = 2;
  c.attention = "randnla";
  c.randnla_block = 4;
  c.randnla_detail = 2;
  c.randnla_sketch = 4;
  return c;
}

// A randomly initialised test model saved as a checkpoint of `fingerprint`
// at `dir`; with `randnla`, RandNLA layers whose scorer and sketch are moved
// away from their initial values, as training would.
absl::Status WriteCheckpoint(Backend* backend, const std::string& dir,
                             const std::string& fingerprint, int64_t vocab_size,
                             bool randnla = false) {
  absl::StatusOr<std::unique_ptr<Model>> model =
      Model::Create(backend, randnla ? RandnlaTestConfig() : TestConfig());
  if (!model.ok()) return model.status();
  (*model)->Initialize(11);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (Parameter& p : (*model)->parameters()) {
    if (!absl::StrContains(p.name, "importance_scorer") && !absl::StrContains(p.name, "sketch")) {
      continue;
    }
    std::vector<float> host(p.size());
    backend->CopyToHost(p.value->data(), p.size(), host.data());
    for (float& x : host) x += normal(rng);
    backend->CopyFromHost(host.data(), p.size(), p.value->data());
  }
  CheckpointState state;
  state.step = 3;
  state.tokenizer_fingerprint = fingerprint;
  state.tokenizer_vocab_size = vocab_size;
  state.training = nlohmann::json::object();
  return SaveCheckpoint(dir, **model, {}, {}, state);
}

double LogSoftmaxAt(const std::vector<float>& logits, int32_t id) {
  double max = -INFINITY, sum = 0;
  for (float z : logits) max = std::max<double>(max, z);
  for (float z : logits) sum += std::exp(z - max);
  return logits[id] - max - std::log(sum);
}

class InferenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer = tokenizer::Tokenizer::FromFile(g_tokenizer_path);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
    backend_ = new CpuBackend();
    run_dir_ = new std::string(TestDir("run"));
    ASSERT_TRUE(WriteCheckpoint(backend_, *run_dir_ + "/checkpoints/step_3",
                                tokenizer_->fingerprint(), tokenizer_->vocab_size())
                    .ok());
    auto loaded = LoadModelForInference(backend_, *run_dir_, *tokenizer_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = loaded->release();
  }
  static void TearDownTestSuite() {
    delete loaded_;
    delete run_dir_;
    delete backend_;
    delete tokenizer_;
  }

  Model& model() { return *loaded_->model; }
  const tokenizer::Tokenizer& tokenizer() { return *tokenizer_; }

  // The text's tokens after the document start (<eos> = 1 for Gemma 3).
  std::vector<int32_t> WithStart(absl::string_view text) {
    std::vector<int32_t> ids = {1};
    auto encoded = tokenizer_->Encode(text);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    ids.insert(ids.end(), encoded->begin(), encoded->end());
    return ids;
  }

  // log p(sequence[j] | sequence[begin, j)) from a fresh full forward of the
  // prefix (one Feed of all of it), independent of TokenLogProbs.
  double PrefixLogProb(absl::Span<const int32_t> sequence, int64_t begin, int64_t j) {
    auto decoder = model().NewDecoder(j - begin);
    auto logits = FeedForLogits(*decoder, sequence.subspan(begin, j - begin));
    EXPECT_TRUE(logits.ok()) << logits.status();
    return LogSoftmaxAt(*logits, sequence[j]);
  }

  // The greedy continuation of `prompt` by repeated full forwards, with the
  // repetition penalty applied to the whole context.
  std::vector<int32_t> GreedyByFullForwards(std::vector<int32_t> context, int steps,
                                            float penalty) {
    std::vector<int32_t> out;
    for (int s = 0; s < steps; ++s) {
      auto decoder = model().NewDecoder(static_cast<int64_t>(context.size()));
      auto logits = FeedForLogits(*decoder, context);
      EXPECT_TRUE(logits.ok()) << logits.status();
      ApplyRepetitionPenalty(context, penalty, absl::MakeSpan(*logits));
      out.push_back(ArgMax(*logits));
      context.push_back(out.back());
    }
    return out;
  }

  static tokenizer::Tokenizer* tokenizer_;
  static CpuBackend* backend_;
  static std::string* run_dir_;
  static LoadedModel* loaded_;
};

tokenizer::Tokenizer* InferenceTest::tokenizer_ = nullptr;
CpuBackend* InferenceTest::backend_ = nullptr;
std::string* InferenceTest::run_dir_ = nullptr;
LoadedModel* InferenceTest::loaded_ = nullptr;

TEST_F(InferenceTest, LoadsCheckpointAndRunDirectories) {
  EXPECT_EQ(loaded_->checkpoint_dir, *run_dir_ + "/checkpoints/step_3");
  EXPECT_EQ(loaded_->state.step, 3);
  EXPECT_EQ(loaded_->config.hidden, 16);
  // The same model from the checkpoint directory itself, equal to a fresh
  // initialisation with the same seed.
  auto direct = LoadModelForInference(backend_, loaded_->checkpoint_dir, tokenizer());
  ASSERT_TRUE(direct.ok()) << direct.status();
  auto fresh = Model::Create(backend_, TestConfig());
  ASSERT_TRUE(fresh.ok());
  (*fresh)->Initialize(11);
  for (size_t i = 0; i < model().parameters().size(); ++i) {
    Parameter& a = (*direct)->model->parameters()[i];
    Parameter& b = (*fresh)->parameters()[i];
    std::vector<float> ha(a.size()), hb(b.size());
    backend_->CopyToHost(a.value->data(), a.size(), ha.data());
    backend_->CopyToHost(b.value->data(), b.size(), hb.data());
    EXPECT_EQ(ha, hb) << a.name;
  }
  auto missing = LoadModelForInference(backend_, TestDir("nothing-here"), tokenizer());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(InferenceTest, RefusesAnotherTokenizersCheckpoint) {
  const std::string other(64, 'a');
  const std::string dir = TestDir("foreign") + "/step_1";
  ASSERT_TRUE(WriteCheckpoint(backend_, dir, other, tokenizer().vocab_size()).ok());
  auto loaded = LoadModelForInference(backend_, dir, tokenizer());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), other)) << loaded.status();
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), tokenizer().fingerprint()))
      << loaded.status();
}

TEST_F(InferenceTest, SpecialTokens) {
  EXPECT_EQ(BosId(tokenizer()), 2);
  EXPECT_EQ(DocumentStartId(tokenizer()), 1);
  EXPECT_EQ(StopTokenIds(tokenizer()), (std::vector<int32_t>{1, 106}));
}

TEST_F(InferenceTest, ScoreIsExact) {
  const std::string text = "It is a truth universally acknowledged, that a single man";
  const std::vector<int32_t> sequence = WithStart(text);
  auto result = Score(model(), tokenizer(), text, ScoreOptions{});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->tokens, std::vector<int32_t>(sequence.begin() + 1, sequence.end()));
  ASSERT_EQ(result->logprobs.size(), result->tokens.size());

  // Against a full forward of each prefix, and against incremental decoding
  // (the whole sequence fed one token at a time through one KV cache).
  auto incremental = model().NewDecoder(static_cast<int64_t>(sequence.size()));
  double sum = 0;
  for (size_t j = 1; j < sequence.size(); ++j) {
    const float lp = result->logprobs[j - 1];
    EXPECT_LT(lp, 0.0f);
    EXPECT_NEAR(lp, PrefixLogProb(sequence, 0, j), 1e-4) << "token " << j;
    auto logits = FeedForLogits(*incremental, absl::MakeConstSpan(sequence).subspan(j - 1, 1));
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_NEAR(lp, LogSoftmaxAt(*logits, sequence[j]), 1e-4) << "token " << j;
    sum += lp;
  }
  EXPECT_NEAR(result->perplexity, std::exp(-sum / result->logprobs.size()),
              1e-6 * result->perplexity);
}

TEST_F(InferenceTest, WindowedScoring) {
  const std::vector<int32_t> sequence = WithStart(kText);
  const int64_t n = static_cast<int64_t>(sequence.size()) - 1;
  ASSERT_GT(n, 40);
  // One window, however much room is left.
  auto whole = ScoreSequence(model(), sequence, ScoreOptions{n});
  auto roomy = ScoreSequence(model(), sequence, ScoreOptions{4 * n});
  ASSERT_TRUE(whole.ok() && roomy.ok());
  EXPECT_EQ(whole->logprobs, roomy->logprobs);
  EXPECT_EQ(whole->perplexity, roomy->perplexity);

  // Windows of 16 (and an odd 11) overlapping by half: token j is predicted
  // from the window starting at the first multiple of the stride >= j - C,
  // which gives it at least C / 2 tokens before it.
  for (int64_t c : {16, 11}) {
    auto windowed = ScoreSequence(model(), sequence, ScoreOptions{c});
    ASSERT_TRUE(windowed.ok()) << windowed.status();
    ASSERT_EQ(windowed->logprobs.size(), static_cast<size_t>(n));
    EXPECT_EQ(windowed->tokens, whole->tokens);
    const int64_t stride = c - c / 2;
    double sum = 0;
    for (int64_t j = 1; j <= n; ++j) {
      const int64_t begin = std::max<int64_t>(0, (j - c + stride - 1) / stride * stride);
      ASSERT_LE(j - begin, c);
      if (begin > 0) {
        ASSERT_GE(j - begin, c / 2 + 1);
      }
      EXPECT_NEAR(windowed->logprobs[j - 1], PrefixLogProb(sequence, begin, j), 1e-4)
          << "C " << c << " token " << j;
      if (j <= c) {
        EXPECT_NEAR(windowed->logprobs[j - 1], whole->logprobs[j - 1], 1e-4) << j;
      }
      sum += windowed->logprobs[j - 1];
    }
    EXPECT_NEAR(windowed->perplexity, std::exp(-sum / n), 1e-6 * windowed->perplexity);
  }
}

TEST_F(InferenceTest, ScoreJsonAndErrors) {
  auto result = Score(model(), tokenizer(), "A wife.", ScoreOptions{});
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string json = ScoreResultToJson(*result);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(json);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 3u);
  EXPECT_EQ(j.at("tokens").get<std::vector<int32_t>>(), result->tokens);
  ASSERT_EQ(j.at("logprobs").size(), result->tokens.size());
  for (size_t i = 0; i < result->logprobs.size(); ++i) {
    EXPECT_FLOAT_EQ(j.at("logprobs")[i].get<float>(), result->logprobs[i]);
  }
  EXPECT_DOUBLE_EQ(j.at("perplexity").get<double>(), result->perplexity);

  EXPECT_EQ(Score(model(), tokenizer(), "", ScoreOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto bad = Score(model(), tokenizer(), "text", ScoreOptions{0});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--context"));
}

GenerateOptions Greedy(int64_t max_new_tokens, float penalty) {
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.sampling.top_k = 0;
  o.sampling.repetition_penalty = penalty;
  o.max_new_tokens = max_new_tokens;
  return o;
}

TEST_F(InferenceTest, GreedyGenerationEqualsFullForwards) {
  for (float penalty : {1.0f, 1.3f}) {
    std::string streamed;
    auto a = Generate(model(), tokenizer(), kPrompt, Greedy(6, penalty),
                      [&](absl::string_view piece) { absl::StrAppend(&streamed, piece); });
    auto b = Generate(model(), tokenizer(), kPrompt, Greedy(6, penalty));
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    EXPECT_EQ(a->prompt_ids, WithStart(kPrompt));
    EXPECT_EQ(a->ids, b->ids);
    EXPECT_EQ(a->stop_id, -1);
    EXPECT_EQ(a->ids, GreedyByFullForwards(a->prompt_ids, 6, penalty)) << "penalty " << penalty;
    EXPECT_EQ(a->text, *tokenizer().Decode(a->ids));
    EXPECT_EQ(streamed, a->text);
    EXPECT_GT(a->tokens_per_second, 0);
  }
}

TEST_F(InferenceTest, GenerationStopsAtAStopToken) {
  // A strong penalty keeps the random model from repeating one token.
  auto free_run = Generate(model(), tokenizer(), kPrompt, Greedy(8, 3.0f));
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  ASSERT_EQ(free_run->ids.size(), 8u);
  // Make the first token after the first that does not occur before it a
  // stop token.
  size_t k = 1;
  while (k < 8 && std::find(free_run->ids.begin(), free_run->ids.begin() + k, free_run->ids[k]) !=
                      free_run->ids.begin() + k) {
    ++k;
  }
  ASSERT_LT(k, 8u) << absl::StrJoin(free_run->ids, " ");
  GenerateOptions options = Greedy(8, 3.0f);
  options.stop_ids = {1, free_run->ids[k]};
  auto stopped = Generate(model(), tokenizer(), kPrompt, options);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->stop_id, free_run->ids[k]);
  EXPECT_EQ(stopped->ids, std::vector<int32_t>(free_run->ids.begin(), free_run->ids.begin() + k));
}

TEST_F(InferenceTest, LimitsOfTheContext) {
  // A KV cache of prompt + 3 positions: generation stops after 4 tokens
  // (the last one is sampled, never fed).
  GenerateOptions options = Greedy(10, 1.0f);
  options.max_context = static_cast<int64_t>(WithStart(kPrompt).size()) + 3;
  auto capped = Generate(model(), tokenizer(), kPrompt, options);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->ids.size(), 4u);
  options.max_context = 3;
  auto refused = Generate(model(), tokenizer(), kPrompt, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--max_context"));
  GenerateOptions bad = Greedy(4, 1.0f);
  bad.sampling.top_k = -2;
  EXPECT_TRUE(absl::StrContains(Generate(model(), tokenizer(), kPrompt, bad).status().message(),
                                "--top_k"));
  auto none = Generate(model(), tokenizer(), kPrompt, Greedy(0, 1.0f));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->ids.empty());
}

TEST_F(InferenceTest, SampledGenerationReproducesWithItsSeed) {
  GenerateOptions options;
  options.max_new_tokens = 12;
  options.sampling.seed = 5;
  auto a = Generate(model(), tokenizer(), kPrompt, options);
  auto b = Generate(model(), tokenizer(), kPrompt, options);
  options.sampling.seed = 6;
  auto c = Generate(model(), tokenizer(), kPrompt, options);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->ids, b->ids);
  EXPECT_NE(a->ids, c->ids);
}

TEST_F(InferenceTest, StreamingNeverCutsACharacter) {
  // "a€b" with the euro sign as three byte-fallback tokens.
  std::vector<int32_t> ids = *tokenizer().Encode("a");
  for (const char* byte : {"<0xE2>", "<0x82>", "<0xAC>"}) {
    ids.push_back(tokenizer().TokenToId(byte));
    ASSERT_GE(ids.back(), 0) << byte;
  }
  const std::vector<int32_t> b = *tokenizer().Encode("b");
  ids.insert(ids.end(), b.begin(), b.end());
  IncrementalDetokenizer detokenizer(tokenizer());
  std::vector<std::string> pieces;
  for (size_t n = 1; n <= ids.size(); ++n) {
    auto piece = detokenizer.Next(absl::MakeConstSpan(ids).first(n));
    ASSERT_TRUE(piece.ok()) << piece.status();
    EXPECT_FALSE(absl::StrContains(*piece, "\xEF\xBF\xBD")) << n;
    pieces.push_back(*piece);
  }
  EXPECT_EQ(pieces.front(), "a");
  EXPECT_EQ(absl::StrJoin(pieces, ""),
            "a\xE2\x82\xAC"
            "b");
  EXPECT_EQ(*detokenizer.Finish(ids), "");
  // An unfinished character comes out, replaced, only at the end.
  IncrementalDetokenizer cut(tokenizer());
  const std::vector<int32_t> partial(ids.begin(), ids.begin() + 3);
  EXPECT_EQ(*cut.Next(partial), "a");
  EXPECT_EQ(*cut.Finish(partial), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  if (argc == 4 && (std::string(argv[1]) == "--write_checkpoint" ||
                    std::string(argv[1]) == "--write_randnla_checkpoint")) {
    auto tokenizer = maximus::tokenizer::Tokenizer::FromFile(argv[2]);
    maximus::trainer::CpuBackend backend;
    absl::Status status =
        tokenizer.ok()
            ? maximus::trainer::WriteCheckpoint(
                  &backend, argv[3], (*tokenizer)->fingerprint(), (*tokenizer)->vocab_size(),
                  /*randnla=*/std::string(argv[1]) == "--write_randnla_checkpoint")
            : tokenizer.status();
    if (!status.ok()) {
      absl::FPrintF(stderr, "inference_test: %s\n", status.ToString());
      return 1;
    }
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    absl::FPrintF(stderr, "usage: %s PATH/tokenizer.json\n", argv[0]);
    return 2;
  }
  maximus::trainer::g_tokenizer_path = argv[1];
  return RUN_ALL_TESTS();
}
