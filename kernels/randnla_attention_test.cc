// RandNLA attention's CPU reference: the forward against a float64 definition
// written from the construction (global top-K over the past, the sketch as a
// plain sum), the backward against central differences of the float64
// forward, exact causality, the key budget and O(T) state, decoding from a
// cache, and the same bits on any number of threads.

#include "kernels/randnla_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

RandnlaShape Shape(int64_t batch, int64_t queries, int64_t heads, int64_t kv_heads,
                   int64_t head_dim, int64_t block, int64_t detail, int64_t sketch) {
  RandnlaShape s;
  s.attention.batch = batch;
  s.attention.queries = queries;
  s.attention.heads = heads;
  s.attention.kv_heads = kv_heads;
  s.attention.head_dim = head_dim;
  s.attention.scale = 0.45f;
  s.config.block = block;
  s.config.detail = detail;
  s.config.sketch = sketch;
  return s;
}

std::string Label(const RandnlaShape& s) {
  return absl::StrCat("batch ", s.attention.batch, " queries ", s.attention.queries, " offset ",
                      s.attention.query_offset, " heads ", s.attention.heads, "/",
                      s.attention.kv_heads, " hd ", s.attention.head_dim, " L ", s.config.block,
                      " K ", s.config.detail, " S ", s.config.sketch);
}

template <typename T>
std::vector<T> Cast(const std::vector<float>& x) {
  return std::vector<T>(x.begin(), x.end());
}

// Every input of a call, as trained parameters might be: random factors (not
// the DCT start), a scale away from 1, and scores far enough apart that a
// finite-difference step never reorders them.
struct Inputs {
  std::vector<float> q, k, v, scores, time_outer, time_inner, scale;

  Inputs(const RandnlaShape& s, uint64_t seed) {
    const AttentionShape& a = s.attention;
    const SketchFactorShape f = SketchFactorsOf(s.config);
    q = RandomNormal(a.batch * a.queries * a.heads * a.head_dim, seed);
    k = RandomNormal(a.batch * a.KeyStride() * a.kv_heads * a.head_dim, seed + 1);
    v = RandomNormal(a.batch * a.KeyStride() * a.kv_heads * a.head_dim, seed + 2);
    time_outer = RandomNormal(f.sketch_outer * f.block_outer, seed + 3, 0.5f);
    time_inner = RandomNormal(f.sketch_inner * f.block_inner, seed + 4, 0.5f);
    scale = {1.3f};
    std::mt19937_64 rng(seed + 5);
    for (int64_t b = 0; b < a.batch; ++b) {
      std::vector<int> order(a.KeyStride());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int o : order) scores.push_back(-2.0f + 4.0f * o / a.KeyStride());
    }
  }
  template <typename T>
  SketchFactors<T> Factors(const std::vector<T>& outer, const std::vector<T>& inner,
                           const std::vector<T>& gamma) const {
    return {outer.data(), inner.data(), gamma.data()};
  }
};

// The construction written out plainly in float64: per query, the global top-K
// of scores among earlier blocks, and the sketch as the full double sum.
std::vector<double> Definition(const RandnlaShape& s, const Inputs& in) {
  const AttentionShape& a = s.attention;
  const RandnlaConfig& c = s.config;
  const SketchFactorShape f = SketchFactorsOf(c);
  const int64_t hd = a.head_dim, kr = a.kv_heads * hd, qr = a.heads * hd, ks = a.KeyStride();
  auto phi = [&](int64_t r, int64_t tau) {
    return double{in.time_outer[(r / f.sketch_inner) * f.block_outer + tau / f.block_inner]} *
           in.time_inner[(r % f.sketch_inner) * f.block_inner + tau % f.block_inner];
  };
  std::vector<double> out(in.q.size(), 0.0);
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t h = 0; h < a.heads; ++h) {
      const int64_t g = h / (a.heads / a.kv_heads);
      for (int64_t i = 0; i < a.queries; ++i) {
        const int64_t p = a.query_offset + i, blk = p / c.block;
        std::vector<int64_t> past(blk * c.block);
        std::iota(past.begin(), past.end(), 0);
        std::stable_sort(past.begin(), past.end(), [&](int64_t x, int64_t y) {
          return in.scores[b * ks + x] > in.scores[b * ks + y];
        });
        past.resize(std::min<int64_t>(past.size(), c.detail));
        std::vector<int64_t> exact = past;
        for (int64_t j = blk * c.block; j <= p; ++j) exact.push_back(j);
        std::vector<std::vector<double>> keys, values;
        for (int64_t j : exact) {
          const float* kj = &in.k[(b * ks + j) * kr + g * hd];
          const float* vj = &in.v[(b * ks + j) * kr + g * hd];
          keys.emplace_back(kj, kj + hd);
          values.emplace_back(vj, vj + hd);
        }
        for (int64_t r = 0; blk > 0 && r < c.sketch; ++r) {
          std::vector<double> sk(hd, 0.0), sv(hd, 0.0);
          for (int64_t t = 0; t < blk * c.block; ++t) {
            const double w =
                1 / (1 + std::exp(-(in.scores[b * ks + t] - std::log(double(c.block) / c.sketch))));
            const double coef = in.scale[0] / blk * phi(r, t % c.block) * w;
            for (int64_t d = 0; d < hd; ++d) {
              sk[d] += coef * in.k[(b * ks + t) * kr + g * hd + d];
              sv[d] += coef * in.v[(b * ks + t) * kr + g * hd + d];
            }
          }
          keys.push_back(sk);
          values.push_back(sv);
        }
        const float* qi = &in.q[(b * a.queries + i) * qr + h * hd];
        std::vector<double> z;
        for (const auto& key : keys) {
          double dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += qi[d] * key[d];
          z.push_back(a.scale * dot);
        }
        const double max = *std::max_element(z.begin(), z.end());
        double sum = 0;
        for (double zj : z) sum += std::exp(zj - max);
        for (size_t j = 0; j < z.size(); ++j) {
          for (int64_t d = 0; d < hd; ++d) {
            out[(b * a.queries + i) * qr + h * hd + d] += std::exp(z[j] - max) / sum * values[j][d];
          }
        }
      }
    }
  }
  return out;
}

std::vector<float> Forward(const RandnlaShape& s, const Inputs& in, RandnlaSaved<float>* saved,
                           RandnlaStats* stats = nullptr) {
  std::vector<float> out(in.q.size(), NAN);
  EXPECT_TRUE(RandnlaAttention<float>(s, in.q.data(), in.k.data(), in.v.data(), in.scores.data(),
                                      in.Factors(in.time_outer, in.time_inner, in.scale),
                                      out.data(), saved, stats)
                  .ok());
  return out;
}

TEST(RandnlaAttentionTest, ForwardMatchesTheConstruction) {
  std::vector<RandnlaShape> shapes = {Shape(2, 37, 4, 2, 6, 8, 5, 4),
                                      Shape(1, 64, 2, 1, 8, 16, 8, 4),
                                      Shape(2, 20, 3, 3, 5, 4, 0, 2),    // no detail
                                      Shape(1, 9, 2, 1, 4, 16, 4, 4),    // one block
                                      Shape(1, 50, 2, 2, 4, 6, 40, 6)};  // K > past early on
  uint64_t seed = 1;
  for (const RandnlaShape& s : shapes) {
    const Inputs in(s, seed += 10);
    const std::vector<float> out = Forward(s, in, nullptr);
    EXPECT_LE(RelativeError(out, Definition(s, in)), 1e-5) << Label(s);
  }
}

// Several queries after a cache, then one at a time, as a decoder calls it:
// the rows of a full forward.
TEST(RandnlaAttentionTest, DecodingFromACacheMatchesTheFullForward) {
  const RandnlaShape full = Shape(1, 41, 2, 1, 8, 8, 6, 4);
  const Inputs in(full, 100);
  const std::vector<float> want = Forward(full, in, nullptr);
  const int64_t q_row = 2 * 8;
  for (int64_t offset : {0, 7, 8, 16, 33, 40}) {
    RandnlaShape s = full;
    s.attention.query_offset = offset;
    s.attention.queries = offset == 40 ? 1 : 3;
    s.attention.key_stride = 41;
    Inputs part = in;
    part.q.assign(in.q.begin() + offset * q_row,
                  in.q.begin() + (offset + s.attention.queries) * q_row);
    const std::vector<float> got = Forward(s, part, nullptr);
    const std::vector<float> rows(want.begin() + offset * q_row,
                                  want.begin() + (offset + s.attention.queries) * q_row);
    EXPECT_EQ(got, rows) << "offset " << offset;
  }
}

// d/dx of Σ dout · out for every input, by central differences of the float64
// forward, against the float64 backward; the float backward against the
// float64 one.
TEST(RandnlaAttentionTest, BackwardMatchesFiniteDifferences) {
  for (const RandnlaShape& s : {Shape(2, 29, 4, 2, 4, 8, 5, 4), Shape(1, 24, 2, 1, 3, 6, 3, 6),
                                Shape(1, 18, 1, 1, 4, 4, 0, 2)}) {
    const Inputs in(s, 7);
    const std::vector<float> dout_f = RandomNormal(in.q.size(), 8);
    std::vector<std::vector<double>> x = {Cast<double>(in.q),          Cast<double>(in.k),
                                          Cast<double>(in.v),          Cast<double>(in.scores),
                                          Cast<double>(in.time_outer), Cast<double>(in.time_inner),
                                          Cast<double>(in.scale)};
    const std::vector<double> dout = Cast<double>(dout_f);
    const char* names[] = {"dq", "dk", "dv", "dscores", "dtime_outer", "dtime_inner", "dscale"};
    auto forward = [&](std::vector<double>* out, RandnlaSaved<double>* saved) {
      out->assign(x[0].size(), 0.0);
      return RandnlaAttention<double>(s, x[0].data(), x[1].data(), x[2].data(), x[3].data(),
                                      {x[4].data(), x[5].data(), x[6].data()}, out->data(), saved,
                                      nullptr);
    };
    auto loss = [&]() {
      std::vector<double> out;
      EXPECT_TRUE(forward(&out, nullptr).ok());
      double sum = 0;
      for (size_t i = 0; i < out.size(); ++i) sum += dout[i] * out[i];
      return sum;
    };
    std::vector<double> out;
    RandnlaSaved<double> saved;
    ASSERT_TRUE(forward(&out, &saved).ok());
    std::vector<std::vector<double>> got(7);
    for (int t = 0; t < 3; ++t) got[t].assign(x[t].size(), NAN);  // overwritten
    got[3].assign(x[3].size(), NAN);
    for (int t = 4; t < 7; ++t) got[t].assign(x[t].size(), 0.0);  // accumulated
    ASSERT_TRUE(RandnlaAttentionBackward<double>(
                    s, x[0].data(), x[1].data(), x[2].data(), x[3].data(),
                    {x[4].data(), x[5].data(), x[6].data()}, out.data(), saved, dout.data(),
                    got[0].data(), got[1].data(), got[2].data(), got[3].data(),
                    {got[4].data(), got[5].data(), got[6].data()})
                    .ok());
    for (int t = 0; t < 7; ++t) {
      std::vector<double> want(x[t].size());
      for (size_t i = 0; i < x[t].size(); ++i) {
        const double kept = x[t][i], eps = 1e-6;
        x[t][i] = kept + eps;
        const double up = loss();
        x[t][i] = kept - eps;
        const double down = loss();
        x[t][i] = kept;
        want[i] = (up - down) / (2 * eps);
      }
      EXPECT_LE(RelativeError(got[t], want), 1e-6) << names[t] << " " << Label(s);
      // Every input takes part: a gradient of zeros would pass a loose bound.
      double norm = 0;
      for (double w : want) norm += w * w;
      EXPECT_GT(norm, 1e-6) << names[t] << " " << Label(s);
    }

    // float against float64.
    RandnlaSaved<float> saved_f;
    const std::vector<float> out_f = Forward(s, in, &saved_f);
    std::vector<std::vector<float>> got_f(7);
    for (int t = 0; t < 7; ++t) got_f[t].assign(x[t].size(), t < 4 ? NAN : 0.0f);
    ASSERT_TRUE(RandnlaAttentionBackward<float>(
                    s, in.q.data(), in.k.data(), in.v.data(), in.scores.data(),
                    in.Factors(in.time_outer, in.time_inner, in.scale), out_f.data(), saved_f,
                    dout_f.data(), got_f[0].data(), got_f[1].data(), got_f[2].data(),
                    got_f[3].data(), {got_f[4].data(), got_f[5].data(), got_f[6].data()})
                    .ok());
    for (int t = 0; t < 7; ++t) {
      EXPECT_LE(RelativeError(got_f[t], got[t]), 1e-4) << "float " << names[t] << " " << Label(s);
    }
  }
}

// Output t is a function of inputs <= t alone, exactly: changing every input
// after t (queries, keys, values, scores) leaves outputs 0..t bit for bit.
TEST(RandnlaAttentionTest, OutputsDoNotDependOnTheFuture) {
  const RandnlaShape s = Shape(2, 70, 4, 2, 8, 8, 6, 4);
  const Inputs in(s, 31);
  const std::vector<float> base = Forward(s, in, nullptr);
  const int64_t q_row = 4 * 8, kv_row = 2 * 8, seq = 70;
  for (int64_t t : {0, 1, 7, 8, 9, 15, 16, 33, 63, 64, 68, 69}) {
    Inputs changed = in;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t p = t + 1; p < seq; ++p) {
        for (int64_t c = 0; c < q_row; ++c) changed.q[(b * seq + p) * q_row + c] += 1.5f;
        for (int64_t c = 0; c < kv_row; ++c) {
          changed.k[(b * seq + p) * kv_row + c] *= -2.0f;
          changed.v[(b * seq + p) * kv_row + c] += 3.0f;
        }
        changed.scores[b * seq + p] += 10.0f;  // the future now outranks every past token
      }
    }
    const std::vector<float> out = Forward(s, changed, nullptr);
    bool later_changed = false;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t p = 0; p < seq; ++p) {
        const bool same =
            std::equal(out.begin() + (b * seq + p) * q_row, out.begin() + (b * seq + p + 1) * q_row,
                       base.begin() + (b * seq + p) * q_row);
        if (p <= t) {
          EXPECT_TRUE(same) << "t " << t << ": position " << p << " of sequence " << b;
        } else {
          later_changed = later_changed || !same;
        }
      }
    }
    if (t < seq - 1) {
      EXPECT_TRUE(later_changed) << "t " << t;  // the change was real
    }
  }
}

// The keys any query weighs stay at block + detail + sketch as T grows, and
// the state the backward keeps grows linearly in T.
TEST(RandnlaAttentionTest, KeyBudgetIsIndependentOfLengthAndStateIsLinear) {
  const RandnlaConfig config{16, 8, 4};
  EXPECT_EQ(RandnlaKeyBudget(config), 28);
  int64_t state_at_256 = 0;
  for (int64_t seq : {16, 64, 256, 1024, 4096}) {
    RandnlaShape s = Shape(1, seq, 2, 1, 4, config.block, config.detail, config.sketch);
    const Inputs in(s, 50);
    RandnlaSaved<float> saved;
    RandnlaStats stats;
    Forward(s, in, &saved, &stats);
    // Past the first block every query has its K detail tokens and S sketch
    // tokens; the last of a block sees all L of its own.
    EXPECT_EQ(stats.max_keys_per_query, seq <= 16 ? 16 : RandnlaKeyBudget(config)) << seq;
    const int64_t state = saved.lse.size() + saved.detail.size() + saved.sketch_keys.size() +
                          saved.sketch_values.size();
    // lse per query and head, K positions and 2 S head_dim sketch values per block.
    EXPECT_EQ(state, seq * 2 + (seq / 16) * (8 + 2 * 4 * 4)) << seq;
    if (seq == 256) state_at_256 = state;
    if (seq == 4096) {
      EXPECT_EQ(state, 16 * state_at_256);
    }
  }
}

TEST(RandnlaAttentionTest, SameBitsOnOneWorkerAndMany) {
  EXPECT_GE(base::ThreadPool::Shared().size(), 4);  // MAXIMUS_THREADS from the BUILD file.
  const RandnlaShape s = Shape(3, 45, 4, 2, 8, 8, 5, 4);
  const Inputs in(s, 70);
  const std::vector<float> dout = RandomNormal(in.q.size(), 71);
  std::vector<float> results[2][8];
  for (int workers : {1, 0}) {
    std::vector<float>* r = results[workers == 1 ? 0 : 1];
    std::optional<base::ThreadPool::ParallelismLimit> limit;
    if (workers == 1) limit.emplace(1);
    RandnlaSaved<float> saved;
    r[0] = Forward(s, in, &saved);
    r[1] = saved.sketch_keys;
    r[2].assign(in.q.size(), 0);
    r[3].assign(in.k.size(), 0);
    r[4].assign(in.v.size(), 0);
    r[5].assign(in.scores.size(), 0);
    r[6].assign(in.time_outer.size() + in.time_inner.size(), 0);
    r[7].assign(1, 0);
    ASSERT_TRUE(RandnlaAttentionBackward<float>(
                    s, in.q.data(), in.k.data(), in.v.data(), in.scores.data(),
                    in.Factors(in.time_outer, in.time_inner, in.scale), r[0].data(), saved,
                    dout.data(), r[2].data(), r[3].data(), r[4].data(), r[5].data(),
                    {r[6].data(), r[6].data() + in.time_outer.size(), r[7].data()})
                    .ok());
  }
  for (int i = 0; i < 8; ++i) EXPECT_EQ(results[0][i], results[1][i]) << "output " << i;
}

TEST(RandnlaAttentionTest, DctFactorsHaveOrthonormalRows) {
  std::vector<float> f(4 * 8);
  DctSketchFactor(4, 8, 3, f.data());
  for (int r = 0; r < 4; ++r) {
    for (int r2 = 0; r2 < 4; ++r2) {
      double dot = 0;
      for (int c = 0; c < 8; ++c) dot += double{f[r * 8 + c]} * f[r2 * 8 + c];
      EXPECT_NEAR(dot, r == r2 ? 1.0 : 0.0, 1e-6) << r << " " << r2;
    }
  }
  std::vector<float> other(4 * 8);
  DctSketchFactor(4, 8, 4, other.data());
  EXPECT_NE(f, other);  // the signs depend on the seed
}

TEST(RandnlaAttentionTest, RejectsBadShapes) {
  EXPECT_FALSE(ValidateRandnlaConfig({0, 4, 4}).ok());
  EXPECT_FALSE(ValidateRandnlaConfig({16, -1, 4}).ok());
  EXPECT_FALSE(ValidateRandnlaConfig({16, 4, 32}).ok());  // sketch > block
  EXPECT_FALSE(ValidateRandnlaConfig({7, 4, 4}).ok());    // 1 x 7 cannot hold 2 x 2
  EXPECT_TRUE(ValidateRandnlaConfig({64, 32, 16}).ok());
  RandnlaShape s = Shape(1, 8, 2, 1, 4, 4, 2, 2);
  s.attention.window = 4;
  EXPECT_FALSE(ValidateRandnlaShape(s).ok());
  s.attention.window = 0;
  s.attention.query_offset = 2;
  s.attention.queries = 6;
  RandnlaSaved<float> saved;
  std::vector<float> x(64, 1.0f), g(64);
  const SketchFactors<float> f{x.data(), x.data(), x.data()};
  EXPECT_FALSE(RandnlaAttentionBackward<float>(s, x.data(), x.data(), x.data(), x.data(), f,
                                               x.data(), saved, x.data(), g.data(), g.data(),
                                               g.data(), g.data(), {g.data(), g.data(), g.data()})
                   .ok());
}

}  // namespace
}  // namespace maximus::kernels
