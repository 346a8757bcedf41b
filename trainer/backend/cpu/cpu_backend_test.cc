// Finite-difference checks of every differentiable op of the CPU backend:
// for L = Σ R ⊙ op(x) with random R, the backward's dL/dx must match central
// differences of L.

#include "trainer/backend/cpu/cpu_backend.h"

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace maximus::trainer {
namespace {

using kernels::testing::RandomNormal;

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double{a[i]} * b[i];
  return s;
}

// Compares `analytic` with central differences of loss(x) in every
// coordinate; the error norm must be small against the gradient's norm.
void ExpectGradient(const std::function<double(const std::vector<float>&)>& loss,
                    std::vector<float> x, const std::vector<float>& analytic,
                    const std::string& what, float h = 1e-2f, double tolerance = 2e-3) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double up = loss(x);
    x[i] = saved - h;
    const double down = loss(x);
    x[i] = saved;
    const double fd = (up - down) / (2.0 * h);
    err += (fd - analytic[i]) * (fd - analytic[i]);
    norm += double{analytic[i]} * analytic[i];
  }
  ASSERT_GT(norm, 1e-8) << what << ": the gradient is zero, the check proves nothing";
  EXPECT_LT(std::sqrt(err / norm), tolerance) << what;
}

TEST(CpuBackendTest, RmsNormGradients) {
  CpuBackend b;
  const int64_t rows = 5, d = 12;
  const std::vector<float> x0 = RandomNormal(rows * d, 1), w0 = RandomNormal(d, 2, 0.3f),
                           r = RandomNormal(rows * d, 3);
  auto forward = [&](const std::vector<float>& x, const std::vector<float>& w) {
    std::vector<float> out(rows * d), rstd(rows);
    b.RmsNorm(x.data(), w.data(), rows, d, 1e-6f, out.data(), rstd.data());
    return out;
  };
  std::vector<float> out(rows * d), rstd(rows), dx(rows * d), dw(d, 0.5f);
  b.RmsNorm(x0.data(), w0.data(), rows, d, 1e-6f, out.data(), rstd.data());
  b.RmsNormBackward(x0.data(), w0.data(), rstd.data(), r.data(), rows, d, dx.data(), dw.data());
  for (float& g : dw) g -= 0.5f;  // the weight gradient accumulates
  ExpectGradient([&](const std::vector<float>& x) { return Dot(forward(x, w0), r); }, x0, dx, "dx");
  ExpectGradient([&](const std::vector<float>& w) { return Dot(forward(x0, w), r); }, w0, dw,
                 "dweight");
  // The definition: out = x / rms(x) * (1 + w).
  double sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += double{x0[j]} * x0[j];
  const double rms = std::sqrt(sum / d + 1e-6);
  EXPECT_NEAR(out[3], x0[3] / rms * (1 + w0[3]), 1e-5);
}

TEST(CpuBackendTest, RopeIsARotationAndItsInverseIsTheBackward) {
  CpuBackend b;
  const int64_t batch = 2, seq = 7, heads = 3, hd = 8;
  const std::vector<float> x0 = RandomNormal(batch * seq * heads * hd, 4),
                           r = RandomNormal(x0.size(), 5);
  auto forward = [&](std::vector<float> x) {
    b.Rope(x.data(), batch, seq, heads, hd, 3, 10000.0f, false);
    return x;
  };
  std::vector<float> rotated = forward(x0);
  std::vector<float> back = rotated;
  b.Rope(back.data(), batch, seq, heads, hd, 3, 10000.0f, true);
  for (size_t i = 0; i < x0.size(); ++i) EXPECT_NEAR(back[i], x0[i], 1e-5);
  // Norms per pair are kept; position 0 of the offset-0 rotation is identity.
  std::vector<float> at_zero = x0;
  b.Rope(at_zero.data(), 1, 1, heads, hd, 0, 10000.0f, false);
  for (int64_t i = 0; i < heads * hd; ++i) EXPECT_FLOAT_EQ(at_zero[i], x0[i]);
  std::vector<float> grad = r;
  b.Rope(grad.data(), batch, seq, heads, hd, 3, 10000.0f, true);
  ExpectGradient([&](const std::vector<float>& x) { return Dot(forward(x), r); }, x0, grad, "rope");
}

// Window 0 (global) and sliding windows shorter than the sequence.
class AttentionTest : public ::testing::TestWithParam<int64_t> {
 protected:
  AttentionShape Shape() const {
    AttentionShape s;
    s.batch = 2;
    s.queries = 6;
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 4;
    s.window = GetParam();
    s.scale = 0.5f;
    return s;
  }
  // With `state`, keeps what the backward needs there.
  std::vector<float> Forward(const AttentionShape& s, const std::vector<float>& q,
                             const std::vector<float>& k, const std::vector<float>& v,
                             AttentionState* state = nullptr) {
    std::vector<float> out(q.size());
    EXPECT_TRUE(b_.CausalAttention(s, q.data(), k.data(), v.data(), out.data(), state).ok());
    return out;
  }
  CpuBackend b_;
};

INSTANTIATE_TEST_SUITE_P(Windows, AttentionTest, ::testing::Values(0, 2, 3, 6));

TEST_P(AttentionTest, GradientsOfQueriesKeysAndValues) {
  const AttentionShape s = Shape();
  const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const int64_t kv_size = s.batch * s.queries * s.kv_heads * s.head_dim;
  const std::vector<float> q0 = RandomNormal(q_size, 6), k0 = RandomNormal(kv_size, 7),
                           v0 = RandomNormal(kv_size, 8), r = RandomNormal(q_size, 9);
  std::unique_ptr<AttentionState> state = b_.NewAttentionState(s);
  const std::vector<float> out = Forward(s, q0, k0, v0, state.get());
  std::vector<float> dq(q_size), dk(kv_size), dv(kv_size);
  ASSERT_TRUE(b_.CausalAttentionBackward(s, q0.data(), k0.data(), v0.data(), out.data(), *state,
                                         r.data(), dq.data(), dk.data(), dv.data())
                  .ok());
  ExpectGradient([&](const std::vector<float>& q) { return Dot(Forward(s, q, k0, v0), r); }, q0, dq,
                 "dq");
  ExpectGradient([&](const std::vector<float>& k) { return Dot(Forward(s, q0, k, v0), r); }, k0, dk,
                 "dk");
  ExpectGradient([&](const std::vector<float>& v) { return Dot(Forward(s, q0, k0, v), r); }, v0, dv,
                 "dv");
}

TEST_P(AttentionTest, SeesOnlyItsWindow) {
  const AttentionShape s = Shape();
  const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const int64_t kv_size = s.batch * s.queries * s.kv_heads * s.head_dim;
  const std::vector<float> q = RandomNormal(q_size, 20), k = RandomNormal(kv_size, 21),
                           v = RandomNormal(kv_size, 22);
  const std::vector<float> out = Forward(s, q, k, v);
  // Changing key/value position 0 moves exactly the queries whose window holds it.
  std::vector<float> k2 = k, v2 = v;
  const int64_t row = s.kv_heads * s.head_dim, q_row = s.heads * s.head_dim;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t j = 0; j < row; ++j) {
      k2[b * s.queries * row + j] += 3.0f;
      v2[b * s.queries * row + j] -= 2.0f;
    }
  }
  const std::vector<float> out2 = Forward(s, q, k2, v2);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < s.queries; ++i) {
      const bool sees_zero = s.FirstVisibleKey(i) == 0;
      double change = 0;
      for (int64_t j = 0; j < q_row; ++j) {
        const int64_t at = (b * s.queries + i) * q_row + j;
        change += std::fabs(out[at] - out2[at]);
      }
      if (sees_zero) {
        EXPECT_GT(change, 1e-3) << "query " << i;
      } else {
        EXPECT_EQ(change, 0.0) << "query " << i;
      }
    }
  }
}

TEST_P(AttentionTest, CausalAndEqualToIncrementalDecoding) {
  const AttentionShape s = Shape();
  const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const int64_t kv_size = s.batch * s.queries * s.kv_heads * s.head_dim;
  const std::vector<float> q = RandomNormal(q_size, 10), k = RandomNormal(kv_size, 11),
                           v = RandomNormal(kv_size, 12);
  const std::vector<float> out = Forward(s, q, k, v);
  // Changing the last position's key and value changes nothing before it.
  std::vector<float> k2 = k, v2 = v;
  const int64_t row = s.kv_heads * s.head_dim;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t j = 0; j < row; ++j) {
      k2[(b * s.queries + s.queries - 1) * row + j] += 3.0f;
      v2[(b * s.queries + s.queries - 1) * row + j] -= 2.0f;
    }
  }
  const std::vector<float> out2 = Forward(s, q, k2, v2);
  const int64_t q_row = s.heads * s.head_dim;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < s.queries; ++i) {
      for (int64_t j = 0; j < q_row; ++j) {
        const int64_t at = (b * s.queries + i) * q_row + j;
        if (i < s.queries - 1) {
          EXPECT_EQ(out[at], out2[at]);
        }
      }
    }
  }
  // The last query alone, against a cache holding all keys, gives the same row.
  AttentionShape last = s;
  last.batch = 1;
  last.queries = 1;
  last.query_offset = s.queries - 1;
  last.key_stride = s.queries;
  std::vector<float> one(q_row);
  ASSERT_TRUE(b_.CausalAttention(last, q.data() + (s.queries - 1) * q_row, k.data(), v.data(),
                                 one.data(), nullptr)
                  .ok());
  for (int64_t j = 0; j < q_row; ++j) EXPECT_NEAR(one[j], out[(s.queries - 1) * q_row + j], 1e-6);
}

TEST(CpuBackendTest, GatedActivationGradients) {
  CpuBackend b;
  const int64_t n = 40;
  const std::vector<float> g0 = RandomNormal(n, 13, 2.0f), u0 = RandomNormal(n, 14),
                           r = RandomNormal(n, 15);
  for (kernels::Activation a : {kernels::Activation::kGeluTanh, kernels::Activation::kSilu}) {
    auto forward = [&](const std::vector<float>& g, const std::vector<float>& u) {
      std::vector<float> out(n);
      b.GatedActivation(a, g.data(), u.data(), n, out.data());
      return out;
    };
    std::vector<float> dg(n), du(n);
    b.GatedActivationBackward(a, g0.data(), u0.data(), r.data(), n, dg.data(), du.data());
    ExpectGradient([&](const std::vector<float>& g) { return Dot(forward(g, u0), r); }, g0, dg,
                   "dgate");
    ExpectGradient([&](const std::vector<float>& u) { return Dot(forward(g0, u), r); }, u0, du,
                   "dup");
    const double x = g0[0];
    const double act =
        a == kernels::Activation::kSilu
            ? x / (1 + std::exp(-x))
            : 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(forward(g0, u0)[0], act * u0[0], 1e-6);
  }
}

TEST(CpuBackendTest, EmbeddingGatherAndScatter) {
  CpuBackend b;
  const int64_t vocab = 10, d = 4;
  const std::vector<int32_t> ids = {3, 7, 3, 0};
  const std::vector<float> table = RandomNormal(vocab * d, 16),
                           dout = RandomNormal(ids.size() * d, 17);
  std::vector<float> out(ids.size() * d);
  b.Embed(ids.data(), ids.size(), table.data(), d, 2.0f, out.data());
  EXPECT_FLOAT_EQ(out[1 * d + 2], 2.0f * table[7 * d + 2]);
  std::vector<float> dtable(vocab * d, 0.0f);
  b.EmbedBackward(ids.data(), ids.size(), dout.data(), d, 2.0f, dtable.data());
  // Row 3 appears twice: both contributions add.
  EXPECT_FLOAT_EQ(dtable[3 * d + 1], 2.0f * (dout[0 * d + 1] + dout[2 * d + 1]));
  EXPECT_FLOAT_EQ(dtable[5 * d + 1], 0.0f);
  ExpectGradient(
      [&](const std::vector<float>& t) {
        std::vector<float> o(ids.size() * d);
        b.Embed(ids.data(), ids.size(), t.data(), d, 2.0f, o.data());
        return Dot(o, dout);
      },
      table, dtable, "dtable");
}

// The fused pass equals its parts: scale, clip_grad_norm_, then AdamW with
// decay only on the segments that take it.
TEST(CpuBackendTest, OptimizerUpdateIsScaleClipAndAdamW) {
  CpuBackend b;
  std::vector<ParameterArena::Segment> segments(3);
  segments[0].shape = {3, 5};
  segments[1].shape = {5};
  segments[1].decay = false;
  segments[2].shape = {2, 5};
  auto arena = b.AllocateArena(segments);
  ASSERT_TRUE(arena.ok()) << arena.status();
  const int64_t n = (*arena)->size();
  ASSERT_EQ(n, 30);
  EXPECT_EQ((*arena)->segments()[2].offset, 20);
  const std::vector<float> values = RandomNormal(n, 30), grads = RandomNormal(n, 31, 4.0f);
  std::copy(values.begin(), values.end(), (*arena)->values().data());
  std::copy(grads.begin(), grads.end(), (*arena)->grads().data());
  OptimizerStep step;
  step.step = 3;
  step.lr = 0.01f;
  step.grad_scale = 0.5f;
  step.clip_norm = 1.0;
  auto norm = b.OptimizerUpdate(step, **arena);
  ASSERT_TRUE(norm.ok()) << norm.status();
  // The reference, written out.
  std::vector<float> p = values, g = grads, m(n, 0.0f), v(n, 0.0f);
  double squared = 0;
  for (float& x : g) {
    x *= 0.5f;
    squared += double{x} * x;
  }
  EXPECT_NEAR(*norm, std::sqrt(squared), 1e-9 * std::sqrt(squared));
  ASSERT_GT(*norm, 1.0);  // The clip applies.
  const float factor = static_cast<float>(1.0 / (std::sqrt(squared) + 1e-6));
  for (float& x : g) x *= factor;
  AdamWUpdate(step.adamw, 3, 0.01f, 1.0f, 15, p.data(), g.data(), m.data(), v.data());
  AdamWUpdate(step.adamw, 3, 0.01f, 0.0f, 5, p.data() + 15, g.data() + 15, m.data() + 15,
              v.data() + 15);
  AdamWUpdate(step.adamw, 3, 0.01f, 1.0f, 10, p.data() + 20, g.data() + 20, m.data() + 20,
              v.data() + 20);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_FLOAT_EQ((*arena)->values().data()[i], p[i]) << i;
    EXPECT_FLOAT_EQ((*arena)->m().data()[i], m[i]) << i;
    EXPECT_FLOAT_EQ((*arena)->v().data()[i], v[i]) << i;
  }
  // A non-finite gradient updates nothing.
  (*arena)->grads().data()[7] = std::numeric_limits<float>::infinity();
  const std::vector<float> before((*arena)->values().data(), (*arena)->values().data() + n);
  norm = b.OptimizerUpdate(step, **arena);
  ASSERT_TRUE(norm.ok());
  EXPECT_FALSE(std::isfinite(*norm));
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ((*arena)->values().data()[i], before[i]);
}

}  // namespace
}  // namespace maximus::trainer
