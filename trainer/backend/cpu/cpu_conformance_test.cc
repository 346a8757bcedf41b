// The CPU backend against the conformance suite's float64 definitions.

#include <memory>

#include "trainer/backend/conformance_suite.h"
#include "trainer/backend/cpu/cpu_backend.h"

namespace maximus::trainer {
namespace {

INSTANTIATE_TEST_SUITE_P(Cpu, BackendConformanceTest,
                         ::testing::Values(BackendUnderTest{
                             "cpu", [] { return std::make_unique<CpuBackend>(); }, 2e-5}),
                         BackendUnderTestName);

}  // namespace
}  // namespace maximus::trainer
