// The bf16 flash attention against the CPU reference (kernels/attention.h)
// run on the same bf16-rounded inputs: forward output and log-sum-exp, the
// backward's dq, dk and dv, on random non-zero inputs; every output element
// written, and the backward deterministic to the bit.

#include "kernels/flash_attention_bf16_cuda.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/attention_test_util.h"
#include "kernels/bf16.h"
#include "kernels/device_buffer.h"
#include "kernels/device_test_util.h"
#include "kernels/flash_attention_cuda.h"
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

// Against fp32 arithmetic on the same rounded inputs, the kernels differ by
// rounding the probabilities (and dS) to bf16 before their second product:
// about 2^-9 per element, about 3e-3 on whole outputs. A wrong fragment or
// mask gives errors of order 1.
constexpr double kTolerance = 1e-2;

// Rounds to bf16 in place and returns the bits.
std::vector<Bf16Bits> RoundToBf16(std::vector<float>& values) {
  std::vector<Bf16Bits> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    bits[i] = FloatToBf16(values[i]);
    values[i] = Bf16ToFloat(bits[i]);
  }
  return bits;
}

void CheckShape(const AttentionShape& s, uint64_t seed) {
  SCOPED_TRACE(AttentionShapeLabel(s));
  const size_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const size_t kv_size = s.batch * s.KeyStride() * s.kv_heads * s.head_dim;
  const size_t rows = s.batch * s.heads * s.queries;
  std::vector<float> q = RandomNormal(q_size, seed), k = RandomNormal(kv_size, seed + 1),
                     v = RandomNormal(kv_size, seed + 2), dout = RandomNormal(q_size, seed + 3);
  const std::vector<Bf16Bits> q_bits = RoundToBf16(q), k_bits = RoundToBf16(k),
                              v_bits = RoundToBf16(v), dout_bits = RoundToBf16(dout);
  std::vector<float> want_out(q_size), want_lse(rows);
  ASSERT_TRUE(
      CausalAttention(s, q.data(), k.data(), v.data(), want_out.data(), want_lse.data()).ok());

  DeviceBuffer<Bf16Bits> q_dev = Upload(q_bits), k_dev = Upload(k_bits), v_dev = Upload(v_bits),
                         dout_dev = Upload(dout_bits);
  DeviceBuffer<float> out = Poisoned(q_size), lse = Poisoned(rows);
  ASSERT_TRUE(FlashAttentionForwardBf16Cuda(s, q_dev.data(), k_dev.data(), v_dev.data(), out.data(),
                                            lse.data())
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got_out = Download(out);
  const double out_error = RelativeError(got_out, want_out);
  EXPECT_LE(out_error, kTolerance) << "out";
  EXPECT_LE(RelativeError(Download(lse), want_lse), kTolerance) << "lse";
  if (s.query_offset != 0) return;

  // The backward from the reference's own output (as fp32 dout·out rows).
  DeviceBuffer<float> out_ref = Upload(want_out), dout_f32 = Upload(dout),
                      lse_ref = Upload(want_lse), delta = Poisoned(rows);
  ASSERT_TRUE(FlashAttentionDeltaCuda(s, out_ref.data(), dout_f32.data(), delta.data()).ok());
  std::vector<float> want_dq(q_size), want_dk(kv_size), want_dv(kv_size);
  ASSERT_TRUE(CausalAttentionBackward(s, q.data(), k.data(), v.data(), want_out.data(),
                                      want_lse.data(), dout.data(), want_dq.data(), want_dk.data(),
                                      want_dv.data())
                  .ok());
  DeviceBuffer<float> dq = Poisoned(q_size), dk = Poisoned(kv_size), dv = Poisoned(kv_size);
  ASSERT_TRUE(FlashAttentionBackwardBf16Cuda(s, q_dev.data(), k_dev.data(), v_dev.data(),
                                             dout_dev.data(), lse_ref.data(), delta.data(),
                                             dq.data(), dk.data(), dv.data())
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got_dq = Download(dq), got_dk = Download(dk), got_dv = Download(dv);
  const double dq_error = RelativeError(got_dq, want_dq), dk_error = RelativeError(got_dk, want_dk),
               dv_error = RelativeError(got_dv, want_dv);
  EXPECT_LE(dq_error, kTolerance) << "dq";
  EXPECT_LE(dk_error, kTolerance) << "dk";
  EXPECT_LE(dv_error, kTolerance) << "dv";
  std::printf("%s: relative error out %.2e dq %.2e dk %.2e dv %.2e\n",
              AttentionShapeLabel(s).c_str(), out_error, dq_error, dk_error, dv_error);

  // A second run gives the same bits.
  DeviceBuffer<float> dq2 = Poisoned(q_size), dk2 = Poisoned(kv_size), dv2 = Poisoned(kv_size);
  ASSERT_TRUE(FlashAttentionBackwardBf16Cuda(s, q_dev.data(), k_dev.data(), v_dev.data(),
                                             dout_dev.data(), lse_ref.data(), delta.data(),
                                             dq2.data(), dk2.data(), dv2.data())
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(Download(dq2), got_dq) << "dq differs between runs";
  EXPECT_EQ(Download(dk2), got_dk) << "dk differs between runs";
  EXPECT_EQ(Download(dv2), got_dv) << "dv differs between runs";
}

TEST(FlashAttentionBf16CudaTest, SmallShapes) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  for (int64_t window : {0, 3}) {
    AttentionShape s = TestAttentionShape(2, 7, 4, 2, 8, window);
    s.scale = 0.4f;
    CheckShape(s, 10 + window);
  }
  CheckShape(TestAttentionShape(1, 97, 2, 1, 40, 17), 20);  // Padded to 64.
  CheckShape(TestAttentionShape(2, 130, 2, 2, 96, 0), 30);  // Padded to 128.
  CheckShape(TestAttentionShape(1, 70, 2, 1, 160, 0), 40);  // Padded to 256.
}

TEST(FlashAttentionBf16CudaTest, HeadDim64And128) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(2, 300, 4, 1, 64, 0), 50);
  CheckShape(TestAttentionShape(2, 300, 4, 1, 64, 128), 60);
  CheckShape(TestAttentionShape(1, 520, 8, 2, 128, 0), 70);
}

// The trained models' head_dim, with a sliding window and GQA.
TEST(FlashAttentionBf16CudaTest, HeadDim256) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  CheckShape(TestAttentionShape(1, 1000, 4, 1, 256, 512), 80);
  CheckShape(TestAttentionShape(2, 600, 4, 1, 256, 0), 90);
}

// A forward of a few queries after a cache (as a prompt's continuation).
TEST(FlashAttentionBf16CudaTest, AfterACache) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  AttentionShape s = TestAttentionShape(2, 70, 4, 2, 64, 0);
  s.query_offset = 60;
  s.key_stride = 160;
  CheckShape(s, 100);
  s.window = 50;
  CheckShape(s, 110);
}

TEST(FlashAttentionBf16CudaTest, RejectsBadShapes) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const Bf16Bits* none = nullptr;
  EXPECT_FALSE(Bf16AttentionSupported(TestAttentionShape(1, 4, 2, 1, 100, 0)));
  EXPECT_FALSE(Bf16AttentionSupported(TestAttentionShape(1, 4, 2, 1, 264, 0)));
  EXPECT_TRUE(Bf16AttentionSupported(TestAttentionShape(1, 4, 2, 1, 256, 0)));
  EXPECT_FALSE(FlashAttentionForwardBf16Cuda(TestAttentionShape(1, 4, 2, 1, 100, 0), none, none,
                                             none, nullptr, nullptr)
                   .ok());
  EXPECT_FALSE(FlashAttentionForwardBf16Cuda(TestAttentionShape(1, 4, 3, 2, 64, 0), none, none,
                                             none, nullptr, nullptr)
                   .ok());
}

}  // namespace
}  // namespace maximus::kernels
