#include "trainer/optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/thread_pool.h"

namespace maximus::trainer {
namespace {

// Elements per thread below which AdamWUpdate stays on the calling thread:
// starting a thread costs about as much as updating this many elements.
constexpr int64_t kMinElementsPerThread = int64_t{1} << 16;
// Thread ranges start at multiples of this many elements, so every element
// sits at the same offset within its range's vector loop for any thread count.
constexpr int64_t kRangeAlignment = 4096;
// ClipGradientNorm sums squares in fixed blocks of this many elements.
constexpr int64_t kNormBlock = int64_t{1} << 16;

int ThreadCount(int requested) {
  return requested > 0 ? requested : base::ThreadPool::Shared().size();
}

// Calls fn(begin, end) on disjoint ranges covering [0, n), on at most
// `threads` workers of the shared pool (which follows the CPUs the process
// may use), each range (but the last) a multiple of `alignment` long and at
// least `min_per_thread` long.
template <typename Fn>
void ParallelFor(int64_t n, int64_t min_per_thread, int64_t alignment, int threads, const Fn& fn) {
  if (n <= 0) return;
  const int64_t most = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int64_t count = std::min<int64_t>(ThreadCount(threads), most);
  int64_t per = (n + count - 1) / count;
  per = (per + alignment - 1) / alignment * alignment;
  const int64_t ranges = (n + per - 1) / per;
  if (ranges == 1) {
    fn(int64_t{0}, n);
    return;
  }
  base::ThreadPool::Shared().ParallelFor(static_cast<size_t>(ranges), static_cast<int>(ranges),
                                         [&](size_t r) {
                                           const int64_t begin = static_cast<int64_t>(r) * per;
                                           fn(begin, std::min(n, begin + per));
                                         });
}

absl::Status RangeError(const char* field, const char* range, float value) {
  return absl::InvalidArgumentError(
      absl::StrCat("AdamWConfig.", field, " must be ", range, ", got ", value));
}

// Sum of squares of x[0, n) in float64, in a fixed order.
double SumOfSquares(const float* x, int64_t n) {
  // Independent partial sums keep the adds from waiting on one another.
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) {
      const double value = x[i + j];
      acc[j] += value * value;
    }
  }
  for (; i < n; ++i) {
    const double value = x[i];
    acc[0] += value * value;
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

struct AdamWScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float decay;                  // 1 - lr * weight_decay * weight_decay_scale.
  float step_size;              // lr / (1 - beta1^t).
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t).
};

// The per-element update. The scalars are passed by value and the arrays as
// restrict pointers so that the compiler can vectorise the loop.
void AdamWRange(const AdamWScalars s, int64_t n, float* __restrict param,
                const float* __restrict grad, float* __restrict m, float* __restrict v) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float m_i = s.beta1 * m[i] + s.one_minus_beta1 * g;
    const float v_i = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    const float denom = std::sqrt(v_i) / s.bias_correction2_sqrt + s.eps;
    m[i] = m_i;
    v[i] = v_i;
    param[i] = param[i] * s.decay - s.step_size * (m_i / denom);
  }
}

}  // namespace

absl::Status ValidateAdamWConfig(const AdamWConfig& config) {
  // Written so that NaN fails every check.
  if (!(config.beta1 >= 0.0f && config.beta1 < 1.0f)) {
    return RangeError("beta1", "in [0, 1)", config.beta1);
  }
  if (!(config.beta2 >= 0.0f && config.beta2 < 1.0f)) {
    return RangeError("beta2", "in [0, 1)", config.beta2);
  }
  if (!(config.eps > 0.0f && std::isfinite(config.eps))) {
    return RangeError("eps", "finite and > 0", config.eps);
  }
  if (!(config.weight_decay >= 0.0f && std::isfinite(config.weight_decay))) {
    return RangeError("weight_decay", "finite and >= 0", config.weight_decay);
  }
  return absl::OkStatus();
}

void AdamWUpdate(const AdamWConfig& config, int64_t step, float lr, float weight_decay_scale,
                 int64_t n, float* param, const float* grad, float* m, float* v, int threads) {
  if (n <= 0) return;
  // Step scalars in float64, rounded once to float32, as PyTorch forms them
  // from Python floats.
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  const float decay =
      static_cast<float>(1.0 - static_cast<double>(lr) * config.weight_decay * weight_decay_scale);
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const AdamWScalars scalars = {config.beta1,
                                config.beta2,
                                static_cast<float>(1.0 - config.beta1),
                                static_cast<float>(1.0 - config.beta2),
                                config.eps,
                                decay,
                                step_size,
                                bias_correction2_sqrt};
  ParallelFor(n, kMinElementsPerThread, kRangeAlignment, threads, [&](int64_t begin, int64_t end) {
    AdamWRange(scalars, end - begin, param + begin, grad + begin, m + begin, v + begin);
  });
}

double ClipGradientNorm(absl::Span<const std::pair<float*, int64_t>> grads, double max_norm,
                        int threads) {
  // Fixed blocks over all buffers: the order of the float64 sums depends on
  // the sizes alone, never on how the blocks are shared among threads.
  struct Block {
    float* data;
    int64_t size;
  };
  std::vector<Block> blocks;
  for (const auto& [data, size] : grads) {
    for (int64_t begin = 0; begin < size; begin += kNormBlock) {
      blocks.push_back({data + begin, std::min(kNormBlock, size - begin)});
    }
  }
  const int64_t num_blocks = static_cast<int64_t>(blocks.size());
  constexpr int64_t kMinBlocksPerThread = 4;
  std::vector<double> partial(blocks.size(), 0.0);
  ParallelFor(num_blocks, kMinBlocksPerThread, 1, threads, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) partial[b] = SumOfSquares(blocks[b].data, blocks[b].size);
  });
  double sum = 0.0;
  for (double p : partial) sum += p;
  const double norm = std::sqrt(sum);

  if (max_norm > 0.0 && std::isfinite(norm) && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    ParallelFor(num_blocks, kMinBlocksPerThread, 1, threads, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        float* data = blocks[b].data;
        for (int64_t i = 0; i < blocks[b].size; ++i) data[i] *= scale;
      }
    });
  }
  return norm;
}

}  // namespace maximus::trainer
