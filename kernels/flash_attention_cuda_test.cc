// The CUDA flash attention against the CPU reference (kernels/attention.h):
// forward output and log-sum-exp, and the backward's dq, dk and dv, on random
// non-zero inputs; the backward is deterministic to the bit.

#include "kernels/flash_attention_cuda.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/attention_test_util.h"
#include "kernels/device_buffer.h"
#include "kernels/device_test_util.h"
#include "kernels/gpu_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::AttentionShapeLabel;
using testing::Download;
using testing::Poisoned;
using testing::RandomNormal;
using testing::RelativeError;
using testing::TestAttentionShape;
using testing::Upload;

// Relative error bounds against the fp32 CPU reference. kFp32 differs only in
// the order of summation (and __expf); kTf32 rounds the tiles to a 10-bit
// mantissa (errors about 5e-4 seen in emulation).
double Tolerance(FlashAttentionMath math) {
  return math == FlashAttentionMath::kFp32 ? 1e-4 : 5e-3;
}

const char* Name(FlashAttentionMath math) {
  return math == FlashAttentionMath::kFp32 ? "fp32" : "tf32";
}

AttentionShape Decoding(int64_t window) {
  AttentionShape s = TestAttentionShape(3, 1, 4, 1, 64, window);
  s.query_offset = 37;
  s.key_stride = 64;
  return s;
}

void CheckShape(const AttentionShape& s, uint64_t seed, FlashAttentionMath math) {
  SCOPED_TRACE(AttentionShapeLabel(s) + " " + Name(math));
  const double tolerance = Tolerance(math);
  const size_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const size_t kv_size = s.batch * s.KeyStride() * s.kv_heads * s.head_dim;
  const size_t rows = s.batch * s.heads * s.queries;
  const std::vector<float> q = RandomNormal(q_size, seed), k = RandomNormal(kv_size, seed + 1),
                           v = RandomNormal(kv_size, seed + 2),
                           dout = RandomNormal(q_size, seed + 3);
  std::vector<float> want_out(q_size), want_lse(rows);
  ASSERT_TRUE(
      CausalAttention(s, q.data(), k.data(), v.data(), want_out.data(), want_lse.data()).ok());

  DeviceBuffer<float> q_dev = Upload(q), k_dev = Upload(k), v_dev = Upload(v),
                      dout_dev = Upload(dout);
  DeviceBuffer<float> out = Poisoned(q_size), lse = Poisoned(rows);
  ASSERT_TRUE(FlashAttentionForwardCuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out.data(),
                                        lse.data(), nullptr, math)
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got_out = Download(out);
  EXPECT_LE(RelativeError(got_out, want_out), tolerance) << "out";
  EXPECT_LE(RelativeError(Download(lse), want_lse), tolerance) << "lse";

  // Without lse (decoding) the output is the same.
  DeviceBuffer<float> out2 = Poisoned(q_size);
  ASSERT_TRUE(FlashAttentionForwardCuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out2.data(),
                                        nullptr, nullptr, math)
                  .ok());
  EXPECT_EQ(Download(out2), got_out);

  DeviceBuffer<float> dq = Poisoned(q_size), dk = Poisoned(kv_size), dv = Poisoned(kv_size),
                      delta = Poisoned(rows);
  if (s.query_offset != 0) {
    EXPECT_FALSE(FlashAttentionBackwardCuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out.data(),
                                            lse.data(), dout_dev.data(), dq.data(), dk.data(),
                                            dv.data(), delta.data(), nullptr, math)
                     .ok());
    return;
  }
  std::vector<float> want_dq(q_size), want_dk(kv_size), want_dv(kv_size);
  ASSERT_TRUE(CausalAttentionBackward(s, q.data(), k.data(), v.data(), want_out.data(),
                                      want_lse.data(), dout.data(), want_dq.data(), want_dk.data(),
                                      want_dv.data())
                  .ok());
  ASSERT_TRUE(FlashAttentionBackwardCuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out.data(),
                                         lse.data(), dout_dev.data(), dq.data(), dk.data(),
                                         dv.data(), delta.data(), nullptr, math)
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got_dq = Download(dq), got_dk = Download(dk), got_dv = Download(dv);
  EXPECT_LE(RelativeError(got_dq, want_dq), tolerance) << "dq";
  EXPECT_LE(RelativeError(got_dk, want_dk), tolerance) << "dk";
  EXPECT_LE(RelativeError(got_dv, want_dv), tolerance) << "dv";

  // A second run gives the same bits.
  DeviceBuffer<float> dq2 = Poisoned(q_size), dk2 = Poisoned(kv_size), dv2 = Poisoned(kv_size);
  ASSERT_TRUE(FlashAttentionBackwardCuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out.data(),
                                         lse.data(), dout_dev.data(), dq2.data(), dk2.data(),
                                         dv2.data(), delta.data(), nullptr, math)
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(Download(dq2), got_dq) << "dq differs between runs";
  EXPECT_EQ(Download(dk2), got_dk) << "dk differs between runs";
  EXPECT_EQ(Download(dv2), got_dv) << "dv differs between runs";
}

// Both arithmetics.
void CheckShape(const AttentionShape& s, uint64_t seed) {
  for (FlashAttentionMath math : {FlashAttentionMath::kFp32, FlashAttentionMath::kTf32}) {
    CheckShape(s, seed, math);
  }
}

TEST(FlashAttentionCudaTest, ConformanceShape) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  for (int64_t window : {0, 3}) {
    AttentionShape s = TestAttentionShape(2, 7, 4, 2, 6, window);
    s.scale = 0.4f;
    CheckShape(s, 10 + window);
  }
}

TEST(FlashAttentionCudaTest, HeadDim64) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(2, 300, 4, 1, 64, 0), 20);
  CheckShape(TestAttentionShape(2, 300, 4, 1, 64, 128), 30);
}

TEST(FlashAttentionCudaTest, HeadDim256Windowed) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(1, 1000, 4, 1, 256, 512), 40);
}

// The tensor-core forward and dK/dV split each query or key tile over a
// cluster of 4 blocks, of 2, or none as the tiles (times batch and heads) grow
// past half the SM count and the SM count (132 on an H200); the smaller tests
// take clusters of 4.
TEST(FlashAttentionCudaTest, ClusterSplits) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(2, 1100, 2, 1, 64, 0), 160);    // 72 query tiles, 70 key tiles.
  CheckShape(TestAttentionShape(4, 1100, 2, 1, 64, 256), 170);  // 144 query tiles, 140 key tiles.
}

TEST(FlashAttentionCudaTest, OddHeadDims) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(1, 130, 2, 2, 100, 0), 50);  // Padded to 128.
  CheckShape(TestAttentionShape(2, 50, 3, 1, 1, 0), 60);
  CheckShape(TestAttentionShape(1, 97, 2, 1, 33, 17), 70);  // Padded to 64.
  CheckShape(TestAttentionShape(1, 70, 2, 1, 160, 0), 80);  // Padded to 256.
}

TEST(FlashAttentionCudaTest, Decoding) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(Decoding(0), 90);
  CheckShape(Decoding(16), 100);
  AttentionShape chunk = TestAttentionShape(2, 5, 4, 2, 32, 0);  // A few queries after a cache.
  chunk.query_offset = 60;
  chunk.key_stride = 80;
  CheckShape(chunk, 110);
  AttentionShape long_cache = TestAttentionShape(2, 1, 4, 1, 256, 0);
  long_cache.query_offset = 3000;
  long_cache.key_stride = 4096;
  CheckShape(long_cache, 120);
  long_cache.window = 1000;
  CheckShape(long_cache, 130);
  AttentionShape few = TestAttentionShape(2, 3, 4, 2, 40, 2);  // Few queries, after a cache...
  few.query_offset = 5;
  CheckShape(few, 140);
  few.query_offset = 0;  // ... and without one, with a backward.
  CheckShape(few, 150);
}

TEST(FlashAttentionCudaTest, RejectsBadShapes) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  float* none = nullptr;
  EXPECT_FALSE(FlashAttentionForwardCuda(TestAttentionShape(1, 4, 2, 1, 257, 0), none, none, none,
                                         none, none)
                   .ok());
  EXPECT_FALSE(
      FlashAttentionForwardCuda(TestAttentionShape(1, 4, 3, 2, 64, 0), none, none, none, none, none)
          .ok());
}

}  // namespace
}  // namespace maximus::kernels
