// The CPU attention reference against a float64 definition: the forward's
// output and log-sum-exp, and the backward's gradients against central
// differences of the float64 forward.

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/attention_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

std::string Label(const AttentionShape& s) {
  return absl::StrCat("batch ", s.batch, " queries ", s.queries, " offset ", s.query_offset,
                      " stride ", s.key_stride, " heads ", s.heads, "/", s.kv_heads, " hd ",
                      s.head_dim, " window ", s.window);
}

// The definition, in float64: out and lse ([batch, heads, queries]).
void Forward64(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k,
               const std::vector<double>& v, std::vector<double>* out, std::vector<double>* lse) {
  const int64_t hd = s.head_dim, qr = s.heads * hd, kr = s.kv_heads * hd;
  out->assign(q.size(), 0.0);
  lse->assign(s.batch * s.heads * s.queries, 0.0);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / (s.heads / s.kv_heads);
      for (int64_t i = 0; i < s.queries; ++i) {
        const int64_t qa = (b * s.queries + i) * qr + h * hd;
        const int64_t position = s.query_offset + i;
        std::vector<double> z(s.keys(), -INFINITY);
        double max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < s.keys(); ++j) {
          if (j > position || (s.window > 0 && position - j >= s.window)) continue;
          double dot = 0;
          for (int64_t c = 0; c < hd; ++c) {
            dot += q[qa + c] * k[(b * s.KeyStride() + j) * kr + g * hd + c];
          }
          z[j] = s.scale * dot;
          max = std::max(max, z[j]);
        }
        for (int64_t j = 0; j < s.keys(); ++j) sum += std::exp(z[j] - max);
        for (int64_t j = 0; j < s.keys(); ++j) {
          const double p = std::exp(z[j] - max) / sum;
          for (int64_t c = 0; c < hd; ++c) {
            (*out)[qa + c] += p * v[(b * s.KeyStride() + j) * kr + g * hd + c];
          }
        }
        (*lse)[(b * s.heads + h) * s.queries + i] = max + std::log(sum);
      }
    }
  }
}

std::vector<double> ToDouble(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// The tests' shapes scale scores by 0.4 whatever the head size.
AttentionShape Shape(int64_t batch, int64_t queries, int64_t heads, int64_t kv_heads,
                     int64_t head_dim, int64_t window) {
  AttentionShape s = testing::TestAttentionShape(batch, queries, heads, kv_heads, head_dim, window);
  s.scale = 0.4f;
  return s;
}

TEST(AttentionTest, ForwardMatchesFloat64) {
  std::vector<AttentionShape> shapes = {Shape(2, 7, 4, 2, 6, 0), Shape(2, 7, 4, 2, 6, 3),
                                        Shape(1, 33, 2, 1, 16, 0), Shape(3, 20, 3, 3, 5, 1)};
  AttentionShape decode = Shape(2, 1, 4, 1, 8, 0);
  decode.query_offset = 37;
  decode.key_stride = 64;
  shapes.push_back(decode);
  decode.window = 10;
  shapes.push_back(decode);
  AttentionShape chunk = Shape(1, 5, 2, 2, 4, 6);  // Several queries after a cache.
  chunk.query_offset = 9;
  chunk.key_stride = 20;
  shapes.push_back(chunk);
  uint64_t seed = 1;
  for (const AttentionShape& s : shapes) {
    const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
    const int64_t kv_size = s.batch * s.KeyStride() * s.kv_heads * s.head_dim;
    const std::vector<float> q = RandomNormal(q_size, seed++), k = RandomNormal(kv_size, seed++),
                             v = RandomNormal(kv_size, seed++);
    std::vector<float> out(q_size), lse(s.batch * s.heads * s.queries);
    ASSERT_TRUE(CausalAttention(s, q.data(), k.data(), v.data(), out.data(), lse.data()).ok());
    std::vector<double> want_out, want_lse;
    Forward64(s, ToDouble(q), ToDouble(k), ToDouble(v), &want_out, &want_lse);
    EXPECT_LE(RelativeError(out, want_out), 1e-5) << Label(s);
    EXPECT_LE(RelativeError(lse, want_lse), 1e-5) << Label(s);
    // Decoding passes no lse.
    std::vector<float> out2(q_size);
    ASSERT_TRUE(CausalAttention(s, q.data(), k.data(), v.data(), out2.data(), nullptr).ok());
    EXPECT_EQ(out, out2) << Label(s);
  }
}

TEST(AttentionTest, BackwardMatchesFiniteDifferences) {
  for (const AttentionShape& s : {Shape(2, 7, 4, 2, 6, 0), Shape(2, 7, 4, 2, 6, 3),
                                  Shape(1, 9, 2, 1, 3, 0), Shape(1, 6, 1, 1, 4, 1)}) {
    const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
    const int64_t kv_size = s.batch * s.KeyStride() * s.kv_heads * s.head_dim;
    const std::vector<float> q = RandomNormal(q_size, 10), k = RandomNormal(kv_size, 11),
                             v = RandomNormal(kv_size, 12), dout = RandomNormal(q_size, 13);
    std::vector<float> out(q_size), lse(s.batch * s.heads * s.queries);
    ASSERT_TRUE(CausalAttention(s, q.data(), k.data(), v.data(), out.data(), lse.data()).ok());
    // Poisoned, to show anything left unwritten.
    std::vector<float> dq(q_size, NAN), dk(kv_size, NAN), dv(kv_size, NAN);
    ASSERT_TRUE(CausalAttentionBackward(s, q.data(), k.data(), v.data(), out.data(), lse.data(),
                                        dout.data(), dq.data(), dk.data(), dv.data())
                    .ok());
    // d/dx of L = Σ dout · out(q, k, v), by central differences in float64.
    std::vector<double> x[3] = {ToDouble(q), ToDouble(k), ToDouble(v)};
    const std::vector<float>* got[3] = {&dq, &dk, &dv};
    const char* names[3] = {"dq", "dk", "dv"};
    auto loss = [&]() {
      std::vector<double> o, l;
      Forward64(s, x[0], x[1], x[2], &o, &l);
      double sum = 0;
      for (size_t i = 0; i < o.size(); ++i) sum += dout[i] * o[i];
      return sum;
    };
    for (int t = 0; t < 3; ++t) {
      std::vector<double> want(x[t].size());
      for (size_t i = 0; i < x[t].size(); ++i) {
        const double saved = x[t][i], eps = 1e-5;
        x[t][i] = saved + eps;
        const double up = loss();
        x[t][i] = saved - eps;
        const double down = loss();
        x[t][i] = saved;
        want[i] = (up - down) / (2 * eps);
      }
      EXPECT_LE(RelativeError(*got[t], want), 1e-4) << names[t] << " " << Label(s);
    }
  }
}

// Every row has one owner, so the bits do not depend on the workers.
TEST(AttentionTest, SameBitsOnOneWorkerAndMany) {
  EXPECT_GE(base::ThreadPool::Shared().size(), 4);  // MAXIMUS_THREADS from the BUILD file.
  const AttentionShape s = Shape(2, 61, 4, 2, 24, 17);
  const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const int64_t kv_size = s.batch * s.KeyStride() * s.kv_heads * s.head_dim;
  const std::vector<float> q = RandomNormal(q_size, 20), k = RandomNormal(kv_size, 21),
                           v = RandomNormal(kv_size, 22), dout = RandomNormal(q_size, 23);
  std::vector<float> results[2][5];
  for (int workers : {1, 0}) {
    std::vector<float>* r = results[workers == 1 ? 0 : 1];
    std::optional<base::ThreadPool::ParallelismLimit> limit;
    if (workers == 1) limit.emplace(1);
    r[0].resize(q_size);
    r[1].resize(s.batch * s.heads * s.queries);
    r[2].resize(q_size);
    r[3].resize(kv_size);
    r[4].resize(kv_size);
    ASSERT_TRUE(CausalAttention(s, q.data(), k.data(), v.data(), r[0].data(), r[1].data()).ok());
    ASSERT_TRUE(CausalAttentionBackward(s, q.data(), k.data(), v.data(), r[0].data(), r[1].data(),
                                        dout.data(), r[2].data(), r[3].data(), r[4].data())
                    .ok());
  }
  for (int i = 0; i < 5; ++i) EXPECT_EQ(results[0][i], results[1][i]) << "output " << i;
}

TEST(AttentionTest, RejectsBadShapes) {
  AttentionShape s = Shape(1, 4, 3, 2, 4, 0);  // 3 heads over 2 KV heads.
  std::vector<float> x(64), out(64);
  EXPECT_FALSE(CausalAttention(s, x.data(), x.data(), x.data(), out.data(), nullptr).ok());
  s = Shape(1, 1, 1, 1, 4, 0);
  s.query_offset = 2;
  std::vector<float> lse(1);
  EXPECT_FALSE(CausalAttentionBackward(s, x.data(), x.data(), x.data(), x.data(), lse.data(),
                                       x.data(), out.data(), out.data(), out.data())
                   .ok());
}

}  // namespace
}  // namespace maximus::kernels
