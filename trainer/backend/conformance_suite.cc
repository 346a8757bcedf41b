// The backend conformance suite (in the manner of llama.cpp's test-backend-ops):
// every op of backend.h on random non-zero inputs, odd shapes included,
// against float64 definitions written out here, forward and backward;
// determinism (the same call twice gives the same bits); and a whole model
// step against the CPU reference backend. A backend's test binary
// instantiates it with its factory (see conformance_suite.h).

#include "trainer/backend/conformance_suite.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/test_util.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/model/model.h"

namespace maximus::trainer {
namespace {

using kernels::testing::RandomNormal;

}  // namespace

void BackendConformanceTest::SetUp() {
  if (GetParam().unavailable) {
    const std::string reason = GetParam().unavailable();
    if (!reason.empty()) GTEST_SKIP() << reason;
  }
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr);
}

std::unique_ptr<Buffer> BackendConformanceTest::Upload(const std::vector<float>& host) {
  std::unique_ptr<Buffer> buffer = backend_->Allocate(static_cast<int64_t>(host.size()));
  backend_->CopyFromHost(host.data(), buffer->size(), buffer->data());
  return buffer;
}

std::vector<float> BackendConformanceTest::Download(const Buffer& buffer) {
  std::vector<float> host(buffer.size());
  backend_->CopyToHost(buffer.data(), buffer.size(), host.data());
  EXPECT_TRUE(backend_->Synchronize().ok());
  return host;
}

void BackendConformanceTest::ExpectClose(const std::vector<float>& got,
                                         const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(kernels::testing::RelativeError(got, want), GetParam().tolerance)
      << what << " on " << backend_->name();
}

namespace {

TEST_P(BackendConformanceTest, Gemm) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 3},
                         {33, 17, 65},
                         {8, 8, 8},
                         {130, 300, 20},
                         {1, 600, 16},
                         // A small C and a long reduction, as a weight gradient.
                         {24, 40, 9001}}) {
    for (int transpose = 0; transpose < 4; ++transpose) {
      kernels::GemmDims dims;
      dims.m = m;
      dims.n = n;
      dims.k = k;
      dims.transpose_a = transpose & 1;
      dims.transpose_b = transpose & 2;
      const std::vector<float> a = RandomNormal(m * k, 1), b = RandomNormal(k * n, 2),
                               c0 = RandomNormal(m * n, 3);
      auto da = Upload(a), db = Upload(b), dc = Upload(c0);
      ASSERT_TRUE(backend_->Gemm(dims, 0.5f, da->data(), db->data(), 0.25f, dc->data()).ok());
      std::vector<double> want(m * n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < k; ++p) {
            const double x = dims.transpose_a ? a[p * m + i] : a[i * k + p];
            const double y = dims.transpose_b ? b[j * k + p] : b[p * n + j];
            sum += x * y;
          }
          want[i * n + j] = 0.5 * sum + 0.25 * c0[i * n + j];
        }
      }
      ExpectClose(Download(*dc), want, absl::StrCat("gemm ", m, "x", n, "x", k, " t", transpose));
    }
  }
}

TEST_P(BackendConformanceTest, EmbeddingGatherAndScatter) {
  const int64_t vocab = 11, d = 13;
  const TokenBatch batch = {2, 3, {3, 7, 3, 0, 10, 3}, {1, 1, 1, 1, 1, 1}, {}};
  auto device = backend_->UploadBatch(batch);
  ASSERT_TRUE(device.ok()) << device.status();
  const std::vector<float> table = RandomNormal(vocab * d, 4), dout = RandomNormal(6 * d, 5);
  auto dtable = Upload(table), ddout = Upload(dout), out = backend_->Allocate(6 * d);
  auto grad = Upload(std::vector<float>(vocab * d, 0.5f));
  backend_->Embed(device->inputs, 6, dtable->data(), d, 1.5f, out->data());
  backend_->EmbedBackward(device->inputs, 6, ddout->data(), d, 1.5f, grad->data());
  std::vector<double> want_out(6 * d), want_grad(vocab * d, 0.5);
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      want_out[i * d + j] = 1.5 * table[batch.inputs[i] * d + j];
      want_grad[batch.inputs[i] * d + j] += 1.5 * dout[i * d + j];
    }
  }
  ExpectClose(Download(*out), want_out, "embed");
  ExpectClose(Download(*grad), want_grad, "embed backward");
}

TEST_P(BackendConformanceTest, RmsNormForwardAndBackward) {
  const int64_t rows = 7, d = 13;
  const float eps = 1e-6f;
  const std::vector<float> x = RandomNormal(rows * d, 6), w = RandomNormal(d, 7, 0.3f),
                           dy = RandomNormal(rows * d, 8);
  auto dx_in = Upload(x), dw = Upload(w), ddy = Upload(dy);
  auto out = backend_->Allocate(rows * d), rstd = backend_->Allocate(rows),
       dx = backend_->Allocate(rows * d);
  auto dweight = Upload(std::vector<float>(d, 0.25f));
  backend_->RmsNorm(dx_in->data(), dw->data(), rows, d, eps, out->data(), rstd->data());
  backend_->RmsNormBackward(dx_in->data(), dw->data(), rstd->data(), ddy->data(), rows, d,
                            dx->data(), dweight->data());
  std::vector<double> want_out(rows * d), want_dx(rows * d), want_dw(d, 0.25);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0, dot = 0;
    for (int64_t j = 0; j < d; ++j) sum += double{x[r * d + j]} * x[r * d + j];
    const double s = 1.0 / std::sqrt(sum / d + eps);
    for (int64_t j = 0; j < d; ++j) dot += dy[r * d + j] * (1.0 + w[j]) * x[r * d + j];
    for (int64_t j = 0; j < d; ++j) {
      want_out[r * d + j] = x[r * d + j] * s * (1.0 + w[j]);
      want_dx[r * d + j] = s * (1.0 + w[j]) * dy[r * d + j] - dot * s * s * s / d * x[r * d + j];
      want_dw[j] += dy[r * d + j] * x[r * d + j] * s;
    }
  }
  ExpectClose(Download(*out), want_out, "rmsnorm");
  ExpectClose(Download(*dx), want_dx, "rmsnorm dx");
  ExpectClose(Download(*dweight), want_dw, "rmsnorm dweight");
}

TEST_P(BackendConformanceTest, RopeAndItsInverse) {
  const int64_t batch = 2, seq = 5, heads = 3, hd = 10, offset = 4;
  const float theta = 10000.0f;
  const std::vector<float> x = RandomNormal(batch * seq * heads * hd, 9);
  auto dx = Upload(x);
  backend_->Rope(dx->data(), batch, seq, heads, hd, offset, theta, false);
  std::vector<double> want(x.size());
  for (int64_t bt = 0; bt < batch * seq; ++bt) {
    const int64_t pos = offset + bt % seq;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double angle = pos * std::pow(double{theta}, -2.0 * i / hd);
        const int64_t at = (bt * heads + h) * hd;
        want[at + i] = x[at + i] * std::cos(angle) - x[at + i + hd / 2] * std::sin(angle);
        want[at + i + hd / 2] = x[at + i + hd / 2] * std::cos(angle) + x[at + i] * std::sin(angle);
      }
    }
  }
  ExpectClose(Download(*dx), want, "rope");
  backend_->Rope(dx->data(), batch, seq, heads, hd, offset, theta, true);
  ExpectClose(Download(*dx), std::vector<double>(x.begin(), x.end()), "rope inverse");
}

// Attention with GQA, an odd head size and sliding windows, forward and
// backward, against the float64 definition.
TEST_P(BackendConformanceTest, CausalAttentionForwardAndBackward) {
  for (int64_t window : {0, 3}) {
    AttentionShape s;
    s.batch = 2;
    s.queries = 7;
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 6;
    s.window = window;
    s.scale = 0.4f;
    const int64_t hd = s.head_dim, qr = s.heads * hd, kr = s.kv_heads * hd, T = s.queries;
    const std::vector<float> q = RandomNormal(s.batch * T * qr, 10),
                             k = RandomNormal(s.batch * T * kr, 11),
                             v = RandomNormal(s.batch * T * kr, 12),
                             dout = RandomNormal(q.size(), 13);
    auto dq_in = Upload(q), dk_in = Upload(k), dv_in = Upload(v), ddout = Upload(dout);
    auto out = backend_->Allocate(q.size()), dq = backend_->Allocate(q.size()),
         dk = backend_->Allocate(k.size()), dv = backend_->Allocate(v.size());
    std::unique_ptr<AttentionState> state = backend_->NewAttentionState(s);
    ASSERT_TRUE(backend_
                    ->CausalAttention(s, dq_in->data(), dk_in->data(), dv_in->data(), out->data(),
                                      state.get())
                    .ok());
    ASSERT_TRUE(backend_
                    ->CausalAttentionBackward(s, dq_in->data(), dk_in->data(), dv_in->data(),
                                              out->data(), *state, ddout->data(), dq->data(),
                                              dk->data(), dv->data())
                    .ok());
    std::vector<double> want_out(q.size(), 0), want_dq(q.size(), 0), want_dk(k.size(), 0),
        want_dv(v.size(), 0);
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t h = 0; h < s.heads; ++h) {
        const int64_t g = h / (s.heads / s.kv_heads);
        for (int64_t i = 0; i < T; ++i) {
          const int64_t qa = (b * T + i) * qr + h * hd;
          const int64_t first = s.FirstVisibleKey(i);
          std::vector<double> p(T, 0), dp(T, 0);
          double max = -1e300, sum = 0, dot = 0;
          for (int64_t j = first; j <= i; ++j) {
            double z = 0;
            for (int64_t c = 0; c < hd; ++c)
              z += double{q[qa + c]} * k[(b * T + j) * kr + g * hd + c];
            p[j] = s.scale * z;
            max = std::max(max, p[j]);
          }
          for (int64_t j = first; j <= i; ++j) sum += (p[j] = std::exp(p[j] - max));
          for (int64_t j = first; j <= i; ++j) {
            p[j] /= sum;
            const int64_t ka = (b * T + j) * kr + g * hd;
            for (int64_t c = 0; c < hd; ++c) {
              want_out[qa + c] += p[j] * v[ka + c];
              dp[j] += double{dout[qa + c]} * v[ka + c];
            }
            dot += p[j] * dp[j];
          }
          for (int64_t j = first; j <= i; ++j) {
            const double ds = s.scale * p[j] * (dp[j] - dot);
            const int64_t ka = (b * T + j) * kr + g * hd;
            for (int64_t c = 0; c < hd; ++c) {
              want_dq[qa + c] += ds * k[ka + c];
              want_dk[ka + c] += ds * q[qa + c];
              want_dv[ka + c] += p[j] * dout[qa + c];
            }
          }
        }
      }
    }
    const std::string w = absl::StrCat(" (window ", window, ")");
    ExpectClose(Download(*out), want_out, "attention" + w);
    ExpectClose(Download(*dq), want_dq, "attention dq" + w);
    ExpectClose(Download(*dk), want_dk, "attention dk" + w);
    ExpectClose(Download(*dv), want_dv, "attention dv" + w);
  }
}

TEST_P(BackendConformanceTest, GatedActivationsAndAdd) {
  const int64_t n = 1001;
  const std::vector<float> gate = RandomNormal(n, 14, 2.0f), up = RandomNormal(n, 15),
                           dout = RandomNormal(n, 16);
  auto dg_in = Upload(gate), du_in = Upload(up), ddout = Upload(dout);
  auto out = backend_->Allocate(n), dgate = backend_->Allocate(n), dup = backend_->Allocate(n);
  for (kernels::Activation a : {kernels::Activation::kGeluTanh, kernels::Activation::kSilu}) {
    backend_->GatedActivation(a, dg_in->data(), du_in->data(), n, out->data());
    backend_->GatedActivationBackward(a, dg_in->data(), du_in->data(), ddout->data(), n,
                                      dgate->data(), dup->data());
    std::vector<double> want(n), want_dgate(n), want_dup(n);
    for (int64_t i = 0; i < n; ++i) {
      const double x = gate[i];
      double act, dact;
      if (a == kernels::Activation::kSilu) {
        const double sig = 1 / (1 + std::exp(-x));
        act = x * sig;
        dact = sig * (1 + x * (1 - sig));
      } else {
        const double c = std::sqrt(2 / M_PI), t = std::tanh(c * (x + 0.044715 * x * x * x));
        act = 0.5 * x * (1 + t);
        dact = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
      }
      want[i] = act * up[i];
      want_dup[i] = dout[i] * act;
      want_dgate[i] = dout[i] * up[i] * dact;
    }
    const std::string name = a == kernels::Activation::kSilu ? "silu" : "gelu_tanh";
    ExpectClose(Download(*out), want, name);
    ExpectClose(Download(*dgate), want_dgate, name + " dgate");
    ExpectClose(Download(*dup), want_dup, name + " dup");
  }
  backend_->Add(dg_in->data(), du_in->data(), n, out->data());
  std::vector<double> sum(n);
  for (int64_t i = 0; i < n; ++i) sum[i] = double{gate[i]} + up[i];
  ExpectClose(Download(*out), sum, "add");
}

// Exact cross-entropy, its gradients, log-probs and logits against float64.
TEST_P(BackendConformanceTest, ExactLossLogProbsAndLogits) {
  const int64_t n = 6, d = 9, vocab = 37;
  const std::vector<float> hidden = RandomNormal(n * d, 17),
                           weight = RandomNormal(vocab * d, 18, 0.5f);
  TokenBatch batch{1, n, {0, 0, 0, 0, 0, 0}, {3, 36, 0, 17, 3, 20}, {1, 0, 1, 1, 1, 1}};
  auto device = backend_->UploadBatch(batch);
  ASSERT_TRUE(device.ok());
  auto dh = Upload(hidden), dw = Upload(weight), grad_hidden = backend_->Allocate(n * d);
  auto grad_weight = Upload(std::vector<float>(vocab * d, 0.125f));
  kernels::LinearHeadShape shape{n, d, vocab};
  auto loss = backend_->Loss(LossKind::kCrossEntropy, shape, dh->data(), dw->data(), *device, {},
                             true, grad_hidden->data(), grad_weight->data());
  ASSERT_TRUE(loss.ok()) << loss.status();
  auto logprobs = backend_->TokenLogProbs(shape, dh->data(), dw->data(), *device);
  ASSERT_TRUE(logprobs.ok()) << logprobs.status();
  std::vector<float> logits(n * vocab);
  ASSERT_TRUE(backend_->Logits(n, d, vocab, dh->data(), dw->data(), logits.data()).ok());
  std::vector<double> want_logits(n * vocab), want_lp(n), want_dh(n * d, 0),
      want_dw(vocab * d, 0.125);
  double want_loss = 0;
  const int64_t counted = 5;
  for (int64_t i = 0; i < n; ++i) {
    double max = -1e300, sum = 0;
    for (int64_t c = 0; c < vocab; ++c) {
      double z = 0;
      for (int64_t j = 0; j < d; ++j) z += double{hidden[i * d + j]} * weight[c * d + j];
      want_logits[i * vocab + c] = z;
      max = std::max(max, z);
    }
    for (int64_t c = 0; c < vocab; ++c) sum += std::exp(want_logits[i * vocab + c] - max);
    const double lse = max + std::log(sum);
    want_lp[i] = want_logits[i * vocab + batch.targets[i]] - lse;
    if (!batch.loss_mask[i]) continue;
    want_loss -= want_lp[i] / counted;
    for (int64_t c = 0; c < vocab; ++c) {
      const double g =
          (std::exp(want_logits[i * vocab + c] - lse) - (c == batch.targets[i])) / counted;
      for (int64_t j = 0; j < d; ++j) {
        want_dh[i * d + j] += g * weight[c * d + j];
        want_dw[c * d + j] += g * hidden[i * d + j];
      }
    }
  }
  EXPECT_NEAR(loss->loss, want_loss, GetParam().tolerance * want_loss);
  EXPECT_EQ(loss->counted_tokens, counted);
  ExpectClose(*logprobs, want_lp, "token log-probs");
  ExpectClose(logits, want_logits, "logits");
  ExpectClose(Download(*grad_hidden), want_dh, "CE dhidden");
  ExpectClose(Download(*grad_weight), want_dw, "CE dweight (added)");
}

// MAXIS against the CPU reference of kernels/maxis.h on the same inputs.
TEST_P(BackendConformanceTest, MaxisMatchesTheReference) {
  const int64_t n = 16, d = 64, vocab = 300;
  const std::vector<float> hidden = RandomNormal(n * d, 19),
                           weight = RandomNormal(vocab * d, 20, 0.3f);
  TokenBatch batch{2, 8, std::vector<int32_t>(n, 0), {}, {}};
  for (int64_t i = 0; i < n; ++i) batch.targets.push_back(static_cast<int32_t>((i * 37) % vocab));
  kernels::MaxisConfig config;
  config.candidate_budget = 64;
  kernels::LinearHeadShape shape{n, d, vocab};
  kernels::LinearHeadInputs inputs;
  inputs.hidden = hidden.data();
  inputs.weight = weight.data();
  inputs.targets = batch.targets.data();
  auto reference = kernels::MaxisLoss(shape, inputs, config, true);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto device = backend_->UploadBatch(batch);
  ASSERT_TRUE(device.ok());
  auto dh = Upload(hidden), dw = Upload(weight), grad_hidden = backend_->Allocate(n * d);
  auto grad_weight = backend_->Allocate(vocab * d);
  auto loss = backend_->Loss(LossKind::kMaxis, shape, dh->data(), dw->data(), *device, config, true,
                             grad_hidden->data(), grad_weight->data());
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_NEAR(loss->loss, reference->loss, GetParam().tolerance * std::fabs(reference->loss));
  EXPECT_NEAR(loss->main_loss, reference->main_loss,
              GetParam().tolerance * std::fabs(reference->main_loss));
  ExpectClose(Download(*grad_hidden),
              std::vector<double>(reference->grad_hidden.begin(), reference->grad_hidden.end()),
              "MAXIS dhidden");
  std::vector<double> want_dw(vocab * d, 0.0);
  const kernels::SparseRows& rows = reference->grad_weight;
  for (size_t r = 0; r < rows.ids.size(); ++r) {
    for (int64_t j = 0; j < d; ++j) want_dw[rows.ids[r] * d + j] = rows.rows[r * d + j];
  }
  ExpectClose(Download(*grad_weight), want_dw, "MAXIS dweight (sparse rows added)");
}

TEST_P(BackendConformanceTest, FusedOptimizerUpdate) {
  std::vector<ParameterArena::Segment> segments(3);
  segments[0].shape = {4, 5};
  segments[1].shape = {7};
  segments[1].decay = false;
  segments[2].shape = {3};
  auto arena = backend_->AllocateArena(segments);
  ASSERT_TRUE(arena.ok()) << arena.status();
  const int64_t n = (*arena)->size();
  const std::vector<float> values = RandomNormal(n, 21), grads = RandomNormal(n, 22, 3.0f);
  backend_->CopyFromHost(values.data(), n, (*arena)->values().data());
  backend_->CopyFromHost(grads.data(), n, (*arena)->grads().data());
  OptimizerStep step;
  step.step = 2;
  step.lr = 0.05f;
  step.grad_scale = 0.5f;
  step.clip_norm = 2.0;
  auto norm = backend_->OptimizerUpdate(step, **arena);
  ASSERT_TRUE(norm.ok()) << norm.status();
  // Written out in float64: first moments are zero before this step, so
  // after it m = (1-b1) g and v = (1-b2) g².
  double squared = 0;
  for (float g : grads) squared += 0.25 * g * g;
  EXPECT_NEAR(*norm, std::sqrt(squared), 1e-6 * std::sqrt(squared));
  const double clip = std::sqrt(squared) > 2.0 ? 2.0 / (std::sqrt(squared) + 1e-6) : 1.0;
  const AdamWConfig& c = step.adamw;
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i) {
    const bool decay = i < 20 || i >= 27;
    const double g = 0.5 * grads[i] * clip;
    const double m = (1 - c.beta1) * g, v = (1 - c.beta2) * g * g;
    const double b1 = 1 - std::pow(c.beta1, 2), b2 = 1 - std::pow(c.beta2, 2);
    double p = values[i] * (1 - step.lr * (decay ? c.weight_decay : 0.0));
    p -= step.lr * (m / b1) / (std::sqrt(v / b2) + c.eps);
    want[i] = p;
  }
  ExpectClose(Download((*arena)->values()), want, "fused clip + AdamW");
}

// The same whole-model training step (forward, loss, backward) as the CPU
// reference, and bit-for-bit repeatable on this backend.
TEST_P(BackendConformanceTest, WholeModelStepMatchesTheCpuReferenceAndRepeats) {
  ModelConfig config;
  config.vocab_size = 96;
  config.hidden = 64;
  config.layers = 2;
  config.heads = 4;
  config.kv_heads = 2;
  config.head_dim = 16;
  config.mlp_hidden = 48;
  config.sliding_window = 3;
  config.query_pre_attn_scalar = 16;
  TokenBatch batch;
  batch.rows = 2;
  batch.seq = 9;
  for (int64_t i = 0; i < 18; ++i) {
    batch.inputs.push_back(static_cast<int32_t>((i * 13 + 5) % 96));
    batch.targets.push_back(static_cast<int32_t>((i * 29 + 1) % 96));
  }
  LossSettings loss;
  loss.kind = LossKind::kCrossEntropy;
  auto run = [&](Backend* backend, std::vector<float>* grads) -> double {
    auto model = Model::Create(backend, config);
    EXPECT_TRUE(model.ok()) << model.status();
    (*model)->Initialize(3);
    (*model)->ZeroGrads();
    auto out = (*model)->Step(batch, loss, true);
    EXPECT_TRUE(out.ok()) << out.status();
    ParameterArena& arena = (*model)->arena();
    grads->resize(arena.size());
    backend->CopyToHost(arena.grads().data(), arena.size(), grads->data());
    EXPECT_TRUE(backend->Synchronize().ok());
    return out->loss;
  };
  CpuBackend cpu;
  std::vector<float> want_grads, grads, again;
  const double want = run(&cpu, &want_grads);
  const double got = run(backend_.get(), &grads);
  EXPECT_NEAR(got, want, GetParam().tolerance * want);
  ExpectClose(grads, std::vector<double>(want_grads.begin(), want_grads.end()), "model gradients");
  EXPECT_EQ(run(backend_.get(), &again), got);
  EXPECT_TRUE(std::memcmp(again.data(), grads.data(), grads.size() * sizeof(float)) == 0)
      << "a second identical step gave other gradient bits";
}

}  // namespace
}  // namespace maximus::trainer
