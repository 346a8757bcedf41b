// The CPU references of the losses at the default training run's shape
// (N = 512 tokens, d = 256, V = 262,144): MAXIS and exact cross-entropy,
// forward and backward, median wall time on one thread and on every thread
// of the shared pool.
//
//   bazel run //kernels:bench_loss_cpu [-- repetitions]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu_parallel.h"
#include "kernels/cross_entropy.h"
#include "kernels/maxis.h"
#include "kernels/random.h"

namespace maximus::kernels {
namespace {

// Median wall time of `repetitions` calls after one warm-up call; returns
// nullopt (after printing the error) if a call fails.
std::optional<double> MedianMs(int repetitions, const std::function<absl::Status()>& work) {
  std::vector<double> ms;
  for (int r = 0; r <= repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status status = work(); !status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return std::nullopt;
    }
    const auto stop = std::chrono::steady_clock::now();
    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int Run(int repetitions) {
  const LinearHeadShape shape{512, 256, 262144};
  std::vector<float> hidden(shape.tokens * shape.hidden), weight(shape.vocab * shape.hidden);
  FillNormal(hidden.data(), hidden.size(), 1, 1.0f);
  FillNormal(weight.data(), weight.size(), 2, 0.0625f);  // 1/sqrt(d), as the model starts.
  std::vector<int32_t> targets(shape.tokens);
  for (int64_t i = 0; i < shape.tokens; ++i)
    targets[i] = static_cast<int32_t>(i * 104729 % shape.vocab);
  const LinearHeadInputs inputs{hidden.data(), weight.data(), targets.data(), nullptr};
  const MaxisConfig maxis;  // The run's defaults.

  const int all = base::ThreadPool::Shared().size();
  std::printf("shape N=%lld d=%lld V=%lld; %d repetitions after a warm-up; pool of %d threads\n",
              static_cast<long long>(shape.tokens), static_cast<long long>(shape.hidden),
              static_cast<long long>(shape.vocab), repetitions, all);
  const struct {
    const char* name;
    std::function<absl::Status()> work;
  } losses[] = {
      {"MAXIS fwd+bwd", [&] { return MaxisLoss(shape, inputs, maxis, true).status(); }},
      {"exact CE fwd+bwd", [&] { return LinearCrossEntropy(shape, inputs, true).status(); }},
      {"exact CE fwd", [&] { return LinearCrossEntropy(shape, inputs, false).status(); }},
  };
  for (const auto& loss : losses) {
    std::optional<double> one, many;
    {
      base::ThreadPool::ParallelismLimit limit(1);
      SingleThreadedBlas blas;  // Nothing else may use a second core either.
      one = MedianMs(repetitions, loss.work);
    }
    many = MedianMs(repetitions, loss.work);
    if (!one || !many) return 1;
    std::printf("%-18s 1 thread %9.1f ms   %2d threads %9.1f ms   speed-up %.2fx\n", loss.name,
                *one, all, *many, *one / *many);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::kernels

int main(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  return maximus::kernels::Run(repetitions);
}
