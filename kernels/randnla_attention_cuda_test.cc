// RandNLA attention and its importance scorer on the GPU against the CPU
// references (randnla_attention.h, importance_scorer.h): the forward's output,
// log-sum-exp, detail positions and sketches, the backward's dq, dk, dv,
// dscores and sketch-parameter gradients, on random non-zero inputs with
// trained-like (non-initial) factors and scale; the same bits on a second
// run; outputs ≤ t unchanged when every input after t changes; outputs left
// poisoned with NaN where a kernel would not write. Each check prints its
// relative error.

#include "kernels/randnla_attention_cuda.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device_buffer.h"
#include "kernels/device_test_util.h"
#include "kernels/gpu_test_util.h"
#include "kernels/importance_scorer.h"
#include "kernels/importance_scorer_cuda.h"
#include "kernels/randnla_attention.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::Download;
using testing::Poisoned;
using testing::RandomNormal;
using testing::RelativeError;
using testing::Upload;

// fp32 against fp32: only the order of summation (and expf) differs. The
// score and parameter gradients sum over every token of a sequence (and over
// blocks), so they get more room.
constexpr double kTolerance = 1e-4;
constexpr double kSumTolerance = 3e-4;

RandnlaShape Shape(int64_t batch, int64_t queries, int64_t heads, int64_t kv_heads,
                   int64_t head_dim, RandnlaConfig config = RandnlaConfig()) {
  RandnlaShape s;
  s.attention.batch = batch;
  s.attention.queries = queries;
  s.attention.heads = heads;
  s.attention.kv_heads = kv_heads;
  s.attention.head_dim = head_dim;
  s.attention.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  s.config = config;
  return s;
}

RandnlaConfig Config(int64_t block, int64_t detail, int64_t sketch) {
  RandnlaConfig c;
  c.block = block;
  c.detail = detail;
  c.sketch = sketch;
  return c;
}

std::string Label(const RandnlaShape& s) {
  return absl::StrCat("batch ", s.attention.batch, " queries ", s.attention.queries, " offset ",
                      s.attention.query_offset, " stride ", s.attention.key_stride, " heads ",
                      s.attention.heads, "/", s.attention.kv_heads, " hd ", s.attention.head_dim,
                      " L ", s.config.block, " K ", s.config.detail, " S ", s.config.sketch);
}

// Prints and checks one tensor's relative error.
void ExpectClose(const std::string& what, const std::vector<float>& got,
                 const std::vector<float>& want, double tolerance) {
  const double error = RelativeError(got, want);
  std::printf("  %-14s relative error %.3g (bound %.0e, %zu elements)\n", what.c_str(), error,
              tolerance, want.size());
  EXPECT_LE(error, tolerance) << what << ": relative error " << error << " over " << want.size()
                              << " elements";
}

// Every input of a call: trained-like factors (the DCT start plus noise), a
// scale away from 1, scores that are distinct or, with `tied_scores`,
// rounded to a few values so that the earlier position must win ties.
struct Inputs {
  std::vector<float> q, k, v, scores, time_outer, time_inner, scale, dout;
  // The gradients' starting values (the backward adds to them).
  std::vector<float> grad_outer, grad_inner, grad_scale;

  Inputs(const RandnlaShape& s, uint64_t seed, bool tied_scores) {
    const AttentionShape& a = s.attention;
    const SketchFactorShape f = SketchFactorsOf(s.config);
    const size_t q_size = a.batch * a.queries * a.heads * a.head_dim;
    const size_t kv_size = a.batch * a.KeyStride() * a.kv_heads * a.head_dim;
    q = RandomNormal(q_size, seed);
    k = RandomNormal(kv_size, seed + 1);
    v = RandomNormal(kv_size, seed + 2);
    scores = RandomNormal(a.batch * a.KeyStride(), seed + 3);
    if (tied_scores) {
      for (float& x : scores) x = std::round(x * 2.0f) / 2.0f;
    }
    time_outer.resize(f.sketch_outer * f.block_outer);
    time_inner.resize(f.sketch_inner * f.block_inner);
    DctSketchFactor(f.sketch_outer, f.block_outer, seed + 4, time_outer.data());
    DctSketchFactor(f.sketch_inner, f.block_inner, seed + 5, time_inner.data());
    const std::vector<float> noise_outer = RandomNormal(time_outer.size(), seed + 6, 0.2f);
    const std::vector<float> noise_inner = RandomNormal(time_inner.size(), seed + 7, 0.2f);
    for (size_t i = 0; i < time_outer.size(); ++i) time_outer[i] += noise_outer[i];
    for (size_t i = 0; i < time_inner.size(); ++i) time_inner[i] += noise_inner[i];
    scale = {0.7f};
    dout = RandomNormal(q_size, seed + 8);
    grad_outer = RandomNormal(time_outer.size(), seed + 9, 0.1f);
    grad_inner = RandomNormal(time_inner.size(), seed + 10, 0.1f);
    grad_scale = {0.25f};
  }

  SketchFactors<float> Factors() const {
    return {time_outer.data(), time_inner.data(), scale.data()};
  }
};

// The inputs in device memory.
struct DeviceInputs {
  DeviceBuffer<float> q, k, v, scores, time_outer, time_inner, scale, dout;

  explicit DeviceInputs(const Inputs& in)
      : q(Upload(in.q)),
        k(Upload(in.k)),
        v(Upload(in.v)),
        scores(Upload(in.scores)),
        time_outer(Upload(in.time_outer)),
        time_inner(Upload(in.time_inner)),
        scale(Upload(in.scale)),
        dout(Upload(in.dout)) {}

  SketchFactors<float> Factors() const {
    return {time_outer.data(), time_inner.data(), scale.data()};
  }
};

// A forward's results and saved state on the device.
struct DeviceForward {
  DeviceBuffer<float> out, lse, sketch_keys, sketch_values;
  DeviceBuffer<int32_t> detail;

  DeviceForward(const RandnlaShape& s, const DeviceInputs& in) {
    const RandnlaCudaSizes sizes = RandnlaCudaSizesOf(s);
    const AttentionShape& a = s.attention;
    out = Poisoned(a.batch * a.queries * a.heads * a.head_dim);
    lse = Poisoned(sizes.lse);
    detail = Poisoned<int32_t>(sizes.detail);
    sketch_keys = Poisoned(sizes.sketch);
    sketch_values = Poisoned(sizes.sketch);
    const absl::Status status =
        RandnlaAttentionCuda(s, in.q.data(), in.k.data(), in.v.data(), in.scores.data(),
                             in.Factors(), out.data(), Saved(), nullptr);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

  RandnlaDeviceSaved Saved() {
    return {lse.data(), detail.data(), sketch_keys.data(), sketch_values.data()};
  }
};

// A backward's results (gradients of the parameters started from the inputs'
// values).
struct HostGradients {
  std::vector<float> dq, dk, dv, dscores, grad_outer, grad_inner, grad_scale;
};

HostGradients RunBackward(const RandnlaShape& s, const Inputs& host, const DeviceInputs& in,
                          DeviceForward& forward) {
  const AttentionShape& a = s.attention;
  const size_t q_size = a.batch * a.queries * a.heads * a.head_dim;
  const size_t kv_size = a.batch * a.KeyStride() * a.kv_heads * a.head_dim;
  DeviceBuffer<float> dq = Poisoned(q_size), dk = Poisoned(kv_size), dv = Poisoned(kv_size),
                      dscores = Poisoned(a.batch * a.queries),
                      workspace = Poisoned(RandnlaCudaSizesOf(s).backward_workspace);
  DeviceBuffer<float> grad_outer = Upload(host.grad_outer), grad_inner = Upload(host.grad_inner),
                      grad_scale = Upload(host.grad_scale);
  const absl::Status status = RandnlaAttentionBackwardCuda(
      s, in.q.data(), in.k.data(), in.v.data(), in.scores.data(), in.Factors(),
      forward.out.data(), forward.Saved(), in.dout.data(), dq.data(), dk.data(), dv.data(),
      dscores.data(), {grad_outer.data(), grad_inner.data(), grad_scale.data()}, workspace.data(),
      nullptr);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {Download(dq),      Download(dk),         Download(dv),        Download(dscores),
          Download(grad_outer), Download(grad_inner), Download(grad_scale)};
}

void CheckShape(const RandnlaShape& s, uint64_t seed, bool tied_scores = false) {
  SCOPED_TRACE(Label(s));
  std::printf("%s%s\n", Label(s).c_str(), tied_scores ? " (tied scores)" : "");
  const AttentionShape& a = s.attention;
  const Inputs host(s, seed, tied_scores);
  const size_t q_size = a.batch * a.queries * a.heads * a.head_dim;
  std::vector<float> want_out(q_size);
  RandnlaSaved<float> want;
  ASSERT_TRUE(RandnlaAttention<float>(s, host.q.data(), host.k.data(), host.v.data(),
                                      host.scores.data(), host.Factors(), want_out.data(), &want,
                                      nullptr)
                  .ok());
  const DeviceInputs in(host);
  DeviceForward forward(s, in);
  const std::vector<float> got_out = Download(forward.out);
  ExpectClose("out", got_out, want_out, kTolerance);
  ExpectClose("lse", Download(forward.lse), want.lse, kTolerance);
  ExpectClose("sketch keys", Download(forward.sketch_keys), want.sketch_keys, kTolerance);
  ExpectClose("sketch values", Download(forward.sketch_values), want.sketch_values, kTolerance);
  const std::vector<int32_t> got_detail = Download(forward.detail);
  ASSERT_EQ(got_detail.size(), want.detail.size());
  for (size_t i = 0; i < want.detail.size(); ++i) {
    ASSERT_EQ(got_detail[i], want.detail[i])
        << "detail position " << i % s.config.detail << " of block "
        << (i / s.config.detail) % s.Blocks() << ", sequence "
        << i / (s.config.detail * s.Blocks());
  }

  // A second forward gives the same bits.
  DeviceForward again(s, in);
  EXPECT_EQ(Download(again.out), got_out) << "out differs between runs";
  EXPECT_EQ(Download(again.lse), Download(forward.lse)) << "lse differs between runs";

  if (a.query_offset != 0) return;  // decoding: forward only
  const size_t kv_size = a.batch * a.KeyStride() * a.kv_heads * a.head_dim;
  HostGradients expected;
  expected.dq.resize(q_size);
  expected.dk.resize(kv_size);
  expected.dv.resize(kv_size);
  expected.dscores.resize(a.batch * a.queries);
  expected.grad_outer = host.grad_outer;
  expected.grad_inner = host.grad_inner;
  expected.grad_scale = host.grad_scale;
  ASSERT_TRUE(RandnlaAttentionBackward<float>(
                  s, host.q.data(), host.k.data(), host.v.data(), host.scores.data(),
                  host.Factors(), want_out.data(), want, host.dout.data(), expected.dq.data(),
                  expected.dk.data(), expected.dv.data(), expected.dscores.data(),
                  {expected.grad_outer.data(), expected.grad_inner.data(),
                   expected.grad_scale.data()})
                  .ok());
  const HostGradients got = RunBackward(s, host, in, forward);
  ExpectClose("dq", got.dq, expected.dq, kTolerance);
  ExpectClose("dk", got.dk, expected.dk, kTolerance);
  ExpectClose("dv", got.dv, expected.dv, kTolerance);
  ExpectClose("dscores", got.dscores, expected.dscores, kSumTolerance);
  ExpectClose("d time_outer", got.grad_outer, expected.grad_outer, kSumTolerance);
  ExpectClose("d time_inner", got.grad_inner, expected.grad_inner, kSumTolerance);
  ExpectClose("d scale", got.grad_scale, expected.grad_scale, kSumTolerance);

  // A second backward gives the same bits.
  const HostGradients twice = RunBackward(s, host, in, forward);
  EXPECT_EQ(twice.dq, got.dq) << "dq differs between runs";
  EXPECT_EQ(twice.dk, got.dk) << "dk differs between runs";
  EXPECT_EQ(twice.dv, got.dv) << "dv differs between runs";
  EXPECT_EQ(twice.dscores, got.dscores) << "dscores differs between runs";
  EXPECT_EQ(twice.grad_outer, got.grad_outer) << "d time_outer differs between runs";
  EXPECT_EQ(twice.grad_inner, got.grad_inner) << "d time_inner differs between runs";
  EXPECT_EQ(twice.grad_scale, got.grad_scale) << "d scale differs between runs";
}

TEST(RandnlaAttentionCudaTest, WholeBlocks) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Shape(2, 128, 4, 2, 64), 10);
  CheckShape(Shape(1, 256, 2, 1, 64), 20);
}

TEST(RandnlaAttentionCudaTest, PartialLastBlockHeadDim256) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Shape(2, 200, 2, 1, 256), 30);
}

TEST(RandnlaAttentionCudaTest, ShorterThanOneBlock) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Shape(2, 40, 2, 2, 64), 40);
  CheckShape(Shape(3, 1, 2, 1, 32), 50);
}

TEST(RandnlaAttentionCudaTest, ManyBlocks) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Shape(1, 1000, 2, 1, 64), 60);
}

TEST(RandnlaAttentionCudaTest, SmallConfigsGqaOddHeadDims) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  // block 16 = 4 · 4, sketch 4 = 2 · 2.
  CheckShape(Shape(2, 77, 6, 3, 48, Config(16, 4, 4)), 70);
  CheckShape(Shape(1, 100, 4, 1, 33, Config(16, 4, 4)), 80);
  // No detail; block 8 = 2 · 4, sketch 2 = 1 · 2.
  CheckShape(Shape(2, 50, 2, 1, 5, Config(8, 0, 2)), 90);
  // More detail than a block: the running top-K keeps several blocks' worth.
  CheckShape(Shape(1, 130, 2, 2, 16, Config(8, 40, 4)), 100);
}

TEST(RandnlaAttentionCudaTest, TiedScoresPickTheEarlierPosition) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Shape(2, 300, 2, 1, 32, Config(16, 8, 4)), 110, /*tied_scores=*/true);
  CheckShape(Shape(1, 500, 2, 1, 64), 120, /*tied_scores=*/true);
}

TEST(RandnlaAttentionCudaTest, DecodingFromACache) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  RandnlaShape s = Shape(2, 5, 4, 2, 64);
  s.attention.query_offset = 130;
  s.attention.key_stride = 160;
  CheckShape(s, 130);
}

// Outputs (and what is saved for them) up to position t are the same bits
// when every input after t changes, the scores so that future tokens would
// outrank every past one.
TEST(RandnlaAttentionCudaTest, OutputsDoNotDependOnTheFuture) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const RandnlaShape s = Shape(2, 150, 4, 2, 32, Config(16, 4, 4));
  const AttentionShape& a = s.attention;
  const Inputs base(s, 140, false);
  const DeviceInputs base_in(base);
  DeviceForward base_forward(s, base_in);
  const std::vector<float> base_out = Download(base_forward.out),
                           base_lse = Download(base_forward.lse);
  for (int64_t t : {int64_t{0}, int64_t{15}, int64_t{16}, int64_t{35}, int64_t{63}, int64_t{64},
                    int64_t{148}}) {
    SCOPED_TRACE(absl::StrCat("t = ", t));
    Inputs changed = base;
    const Inputs noise(s, 1000 + t, false);
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t i = t + 1; i < a.queries; ++i) {
        const int64_t q_row = a.heads * a.head_dim, kv_row = a.kv_heads * a.head_dim;
        for (int64_t e = 0; e < q_row; ++e) {
          changed.q[(b * a.queries + i) * q_row + e] = noise.q[(b * a.queries + i) * q_row + e];
        }
        for (int64_t e = 0; e < kv_row; ++e) {
          changed.k[(b * a.queries + i) * kv_row + e] = noise.k[(b * a.queries + i) * kv_row + e];
          changed.v[(b * a.queries + i) * kv_row + e] = noise.v[(b * a.queries + i) * kv_row + e];
        }
        changed.scores[b * a.queries + i] = 100.0f + noise.scores[b * a.queries + i];
      }
    }
    const DeviceInputs in(changed);
    DeviceForward forward(s, in);
    const std::vector<float> out = Download(forward.out), lse = Download(forward.lse);
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t i = 0; i <= t; ++i) {
        for (int64_t e = 0; e < a.heads * a.head_dim; ++e) {
          const int64_t at = (b * a.queries + i) * a.heads * a.head_dim + e;
          ASSERT_EQ(out[at], base_out[at]) << "out of sequence " << b << ", position " << i;
        }
        for (int64_t h = 0; h < a.heads; ++h) {
          const int64_t at = (b * a.heads + h) * a.queries + i;
          ASSERT_EQ(lse[at], base_lse[at]) << "lse of sequence " << b << ", head " << h
                                           << ", position " << i;
        }
      }
    }
  }
}

TEST(RandnlaAttentionCudaTest, RefusesShapesItDoesNotTake) {
  RandnlaShape s = Shape(1, 64, 2, 1, 257);
  EXPECT_EQ(ValidateRandnlaCudaShape(s).code(), absl::StatusCode::kInvalidArgument);
  s = Shape(1, 64, 2, 1, 64, Config(64, 5000, 16));
  EXPECT_EQ(ValidateRandnlaCudaShape(s).code(), absl::StatusCode::kInvalidArgument);
  s = Shape(1, 64, 2, 1, 64);
  s.attention.window = 16;
  EXPECT_EQ(ValidateRandnlaCudaShape(s).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateRandnlaCudaShape(Shape(1, 64, 2, 1, 256)).ok());
}

void CheckScorer(int64_t rows, int64_t input, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat("rows ", rows, " input ", input));
  std::printf("importance scorer: rows %lld input %lld\n", static_cast<long long>(rows),
              static_cast<long long>(input));
  constexpr int64_t width = kImportanceScorerWidth;
  const std::vector<float> w1 = RandomNormal(width * input, seed, 0.1f),
                           b1 = RandomNormal(width, seed + 1, 0.1f),
                           w2 = RandomNormal(width, seed + 2, 0.3f),
                           b2 = RandomNormal(1, seed + 3), x = RandomNormal(rows * input, seed + 4),
                           dscores = RandomNormal(rows, seed + 5),
                           dx0 = RandomNormal(rows * input, seed + 6),
                           gw1 = RandomNormal(width * input, seed + 7, 0.1f),
                           gb1 = RandomNormal(width, seed + 8, 0.1f),
                           gw2 = RandomNormal(width, seed + 9, 0.1f),
                           gb2 = RandomNormal(1, seed + 10, 0.1f);
  const ImportanceScorerWeights<float> host{input, w1.data(), b1.data(), w2.data(), b2.data()};
  std::vector<float> want_scores(rows);
  ASSERT_TRUE(ImportanceScores(host, rows, x.data(), want_scores.data()).ok());
  std::vector<float> want_dx = dx0, want_gw1 = gw1, want_gb1 = gb1, want_gw2 = gw2,
                     want_gb2 = gb2;
  ASSERT_TRUE(ImportanceScoresBackward(host, rows, x.data(), dscores.data(), want_dx.data(),
                                       {want_gw1.data(), want_gb1.data(), want_gw2.data(),
                                        want_gb2.data()})
                  .ok());

  DeviceBuffer<float> w1_dev = Upload(w1), b1_dev = Upload(b1), w2_dev = Upload(w2),
                      b2_dev = Upload(b2), x_dev = Upload(x), dscores_dev = Upload(dscores);
  const ImportanceScorerWeights<float> device{input, w1_dev.data(), b1_dev.data(), w2_dev.data(),
                                              b2_dev.data()};
  struct Results {
    std::vector<float> scores, dx, in_weight, in_bias, out_weight, out_bias;
  };
  auto run = [&]() {
    DeviceBuffer<float> scores_dev = Poisoned(rows), dx = Upload(dx0), gw1_dev = Upload(gw1),
                        gb1_dev = Upload(gb1), gw2_dev = Upload(gw2), gb2_dev = Upload(gb2),
                        workspace = Poisoned(ImportanceScoresBackwardWorkspaceFloats(rows, input));
    EXPECT_TRUE(ImportanceScoresCuda(device, rows, x_dev.data(), scores_dev.data()).ok());
    EXPECT_TRUE(ImportanceScoresBackwardCuda(
                    device, rows, x_dev.data(), dscores_dev.data(), dx.data(),
                    {gw1_dev.data(), gb1_dev.data(), gw2_dev.data(), gb2_dev.data()},
                    workspace.data())
                    .ok());
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return Results{Download(scores_dev), Download(dx),      Download(gw1_dev),
                   Download(gb1_dev),    Download(gw2_dev), Download(gb2_dev)};
  };
  const Results got = run();
  ExpectClose("scores", got.scores, want_scores, 1e-5);
  ExpectClose("dx", got.dx, want_dx, 1e-5);
  ExpectClose("d in_weight", got.in_weight, want_gw1, kSumTolerance);
  ExpectClose("d in_bias", got.in_bias, want_gb1, kSumTolerance);
  ExpectClose("d out_weight", got.out_weight, want_gw2, kSumTolerance);
  ExpectClose("d out_bias", got.out_bias, want_gb2, kSumTolerance);
  const Results again = run();
  EXPECT_EQ(again.scores, got.scores) << "scores differ between runs";
  EXPECT_EQ(again.dx, got.dx) << "dx differs between runs";
  EXPECT_EQ(again.in_weight, got.in_weight) << "d in_weight differs between runs";
  EXPECT_EQ(again.in_bias, got.in_bias) << "d in_bias differs between runs";
  EXPECT_EQ(again.out_weight, got.out_weight) << "d out_weight differs between runs";
  EXPECT_EQ(again.out_bias, got.out_bias) << "d out_bias differs between runs";
}

TEST(ImportanceScorerCudaTest, MatchesTheCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckScorer(1, 8, 200);
  CheckScorer(300, 70, 210);  // two row chunks, the second partial; a partial column tile
  CheckScorer(1000, 640, 220);
}

}  // namespace
}  // namespace maximus::kernels
