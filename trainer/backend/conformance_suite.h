// The backend conformance suite: every op of backend.h against float64
// definitions (forward and backward, odd shapes, sliding windows, GQA), the
// fused optimizer pass, determinism, and a whole model step against the CPU
// reference. A backend's test binary links :conformance_suite and
// instantiates it with its factory and its error bound:
//
//   INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformanceTest,
//       ::testing::Values(BackendUnderTest{"cuda", MakeCudaBackend, 1e-2}),
//       BackendUnderTestName);

#ifndef MAXIMUS_TRAINER_BACKEND_CONFORMANCE_SUITE_H_
#define MAXIMUS_TRAINER_BACKEND_CONFORMANCE_SUITE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "trainer/backend/backend.h"

namespace maximus::trainer {

struct BackendUnderTest {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
  // Bound on the relative error ‖out − ref‖ / ‖ref‖ of every op.
  double tolerance = 1e-5;
  // Why the backend cannot run here (the test is then skipped), or empty.
  std::function<std::string()> unavailable;
};

inline std::ostream& operator<<(std::ostream& os, const BackendUnderTest& b) {
  return os << b.name;
}

inline std::string BackendUnderTestName(const ::testing::TestParamInfo<BackendUnderTest>& info) {
  return info.param.name;
}

class BackendConformanceTest : public ::testing::TestWithParam<BackendUnderTest> {
 protected:
  void SetUp() override;
  std::unique_ptr<Buffer> Upload(const std::vector<float>& host);
  std::vector<float> Download(const Buffer& buffer);
  void ExpectClose(const std::vector<float>& got, const std::vector<double>& want,
                   const std::string& what);

  std::unique_ptr<Backend> backend_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_CONFORMANCE_SUITE_H_
