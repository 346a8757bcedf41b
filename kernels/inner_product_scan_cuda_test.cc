// The cuBLAS stage-1 scan against the CPU reference, on random inputs:
// single queries and batches, prefixes of longer rows.

#include "kernels/inner_product_scan_cuda.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/inner_product_scan.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

struct Shape {
  int64_t queries, n, dims, stride;
};

const Shape kShapes[] = {{1, 1, 1, 1},         {1, 1000, 64, 64},  {3, 4097, 64, 640},
                         {16, 10000, 640, 640}, {1, 777, 128, 640}, {5, 33, 17, 19}};

TEST(InnerProductScanCudaTest, MatchesTheCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  auto handle = CublasHandle::Create();
  ASSERT_TRUE(handle.ok()) << handle.status();
  for (const Shape& s : kShapes) {
    const std::vector<float> queries = RandomNormal(s.queries * s.dims, 1);
    const std::vector<float> rows = RandomNormal(s.n * s.stride, 2);
    std::vector<float> ref(s.queries * s.n);
    for (int64_t q = 0; q < s.queries; ++q) {
      InnerProductScanReference(queries.data() + q * s.dims, s.dims, rows.data(), s.n, s.stride,
                                ref.data() + q * s.n);
    }
    auto d_queries = DeviceBuffer<float>::FromHost(queries);
    auto d_rows = DeviceBuffer<float>::FromHost(rows);
    auto d_out = DeviceBuffer<float>::Allocate(ref.size());
    ASSERT_TRUE(d_queries.ok() && d_rows.ok() && d_out.ok());
    ASSERT_TRUE(d_out->FillBytes(0xff).ok());
    ASSERT_TRUE(InnerProductScanCuda(handle->get(), d_queries->data(), s.queries, s.dims,
                                     d_rows->data(), s.n, s.stride, d_out->data())
                    .ok());
    auto out = d_out->ToHost();
    ASSERT_TRUE(out.ok());
    // fp32 products accumulated in fp32, in cuBLAS's order.
    EXPECT_LT(RelativeError(*out, ref), 2e-6 * (1 + s.dims / 64.0))
        << s.queries << " x " << s.n << " x " << s.dims << " stride " << s.stride;
  }
}

}  // namespace
}  // namespace maximus::kernels
