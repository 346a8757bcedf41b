// Tests of AdamW, gradient clipping and the learning-rate schedule, against
// float64 references written out step by step.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"

namespace maximus::trainer {
namespace {

using Decay = LrSchedule::Decay;

// Normal values, never exactly zero.
std::vector<float> RandomNormal(size_t count, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& value : values) {
    do {
      value = normal(rng);
    } while (value == 0.0f);
  }
  return values;
}

// ||out - ref|| / ||ref|| in float64.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / norm);
}

std::vector<double> ToDouble(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---------------------------------------------------------------------------
// AdamW

TEST(AdamWConfigTest, DefaultIsValid) { EXPECT_TRUE(ValidateAdamWConfig(AdamWConfig()).ok()); }

TEST(AdamWConfigTest, ErrorsNameTheField) {
  const struct {
    const char* field;
    void (*corrupt)(AdamWConfig&);
  } cases[] = {
      {"beta1", [](AdamWConfig& c) { c.beta1 = 1.0f; }},
      {"beta1", [](AdamWConfig& c) { c.beta1 = -0.1f; }},
      {"beta1", [](AdamWConfig& c) { c.beta1 = NAN; }},
      {"beta2", [](AdamWConfig& c) { c.beta2 = 1.0f; }},
      {"beta2", [](AdamWConfig& c) { c.beta2 = -1e-3f; }},
      {"eps", [](AdamWConfig& c) { c.eps = 0.0f; }},
      {"eps", [](AdamWConfig& c) { c.eps = INFINITY; }},
      {"eps", [](AdamWConfig& c) { c.eps = NAN; }},
      {"weight_decay", [](AdamWConfig& c) { c.weight_decay = -0.1f; }},
      {"weight_decay", [](AdamWConfig& c) { c.weight_decay = INFINITY; }},
  };
  for (const auto& test_case : cases) {
    AdamWConfig config;
    test_case.corrupt(config);
    const absl::Status status = ValidateAdamWConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << test_case.field;
    EXPECT_NE(status.message().find(std::string("AdamWConfig.") + test_case.field),
              absl::string_view::npos)
        << status.message();
  }
  AdamWConfig edge;
  edge.beta1 = 0.0f;
  edge.beta2 = 0.0f;
  edge.weight_decay = 0.0f;
  EXPECT_TRUE(ValidateAdamWConfig(edge).ok());
}

// The update written out in float64, one step.
void ReferenceAdamW(const AdamWConfig& config, int64_t step, double lr, double wd_scale,
                    const std::vector<float>& grad, std::vector<double>& param,
                    std::vector<double>& m, std::vector<double>& v) {
  const double beta1 = config.beta1, beta2 = config.beta2, eps = config.eps;
  const double wd = static_cast<double>(config.weight_decay) * wd_scale;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  for (size_t i = 0; i < param.size(); ++i) {
    const double g = grad[i];
    param[i] -= lr * wd * param[i];
    m[i] = beta1 * m[i] + (1.0 - beta1) * g;
    v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
    const double m_hat = m[i] / bias_correction1;
    const double v_hat = v[i] / bias_correction2;
    param[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

struct ReferenceCase {
  float lr, weight_decay, wd_scale;
  float grad_scale;    // 1e-7 makes eps matter.
  int64_t first_step;  // > 1: resume from random non-zero moments.
};

TEST(AdamWTest, MatchesFloat64ReferenceOverFiveSteps) {
  const ReferenceCase cases[] = {
      {1e-3f, 0.1f, 1.0f, 1.0f, 1}, {3e-3f, 0.1f, 0.0f, 1e-2f, 1}, {1e-2f, 0.01f, 1.0f, 1e-7f, 1},
      {0.1f, 0.5f, 0.5f, 3.0f, 1},  {1e-3f, 0.1f, 1.0f, 1.0f, 40}, {3e-4f, 0.2f, 1.0f, 1e-6f, 7},
  };
  constexpr size_t kN = 4099;
  uint64_t seed = 1;
  for (const ReferenceCase& c : cases) {
    SCOPED_TRACE(absl::StrFormat("lr=%g wd=%g wd_scale=%g grad_scale=%g first_step=%d", c.lr,
                                 c.weight_decay, c.wd_scale, c.grad_scale, c.first_step));
    AdamWConfig config;
    config.weight_decay = c.weight_decay;
    // A typical initialisation scale, so the updates are not lost in the
    // rounding of the parameters.
    std::vector<float> param = RandomNormal(kN, seed++, 0.02f);
    std::vector<float> m(kN, 0.0f), v(kN, 0.0f);
    if (c.first_step > 1) {
      m = RandomNormal(kN, seed++, 0.3f * c.grad_scale);
      v = RandomNormal(kN, seed++, c.grad_scale * c.grad_scale);
      for (float& x : v) x = std::abs(x);
    }
    std::vector<double> param_ref = ToDouble(param), m_ref = ToDouble(m), v_ref = ToDouble(v);
    const std::vector<double> param_start = param_ref;
    for (int64_t step = c.first_step; step < c.first_step + 5; ++step) {
      const std::vector<float> grad = RandomNormal(kN, seed++, c.grad_scale);
      AdamWUpdate(config, step, c.lr, c.wd_scale, kN, param.data(), grad.data(), m.data(),
                  v.data());
      ReferenceAdamW(config, step, c.lr, c.wd_scale, grad, param_ref, m_ref, v_ref);
    }
    EXPECT_LT(RelativeError(param, param_ref), 1e-6);
    EXPECT_LT(RelativeError(m, m_ref), 1e-6);
    EXPECT_LT(RelativeError(v, v_ref), 1e-6);
    // The parameters moved by far more than the tolerance above.
    double moved = 0.0, size = 0.0;
    for (size_t i = 0; i < kN; ++i) {
      moved += (param_ref[i] - param_start[i]) * (param_ref[i] - param_start[i]);
      size += param_start[i] * param_start[i];
    }
    EXPECT_GT(std::sqrt(moved / size), 1e-3);
  }
}

TEST(AdamWTest, WeightDecayIsDecoupledFromTheGradient) {
  AdamWConfig config;
  config.weight_decay = 0.1f;
  constexpr float kLr = 0.01f;
  constexpr size_t kN = 1000;
  const std::vector<float> start = RandomNormal(kN, 11, 1.0f);
  std::vector<float> param = start;
  const std::vector<float> grad(kN, 0.0f);
  std::vector<float> m(kN, 0.0f), v(kN, 0.0f);
  const float factor = static_cast<float>(1.0 - static_cast<double>(kLr) * config.weight_decay);
  for (int64_t step = 1; step <= 10; ++step) {
    std::vector<float> expected = param;
    for (float& x : expected) x *= factor;
    AdamWUpdate(config, step, kLr, 1.0f, kN, param.data(), grad.data(), m.data(), v.data());
    ASSERT_TRUE(SameBits(param, expected)) << "step " << step;
    ASSERT_TRUE(SameBits(m, std::vector<float>(kN, 0.0f)));
    ASSERT_TRUE(SameBits(v, std::vector<float>(kN, 0.0f)));
  }
  // Ten steps shrink by (1 - lr wd)^10 in all.
  for (size_t i = 0; i < kN; ++i) {
    EXPECT_NEAR(param[i], start[i] * std::pow(1.0 - 1e-3, 10), 1e-6 * std::abs(start[i]));
  }
  // weight_decay_scale = 0 turns it off.
  const std::vector<float> before = param;
  AdamWUpdate(config, 11, kLr, 0.0f, kN, param.data(), grad.data(), m.data(), v.data());
  EXPECT_TRUE(SameBits(param, before));

  // With a gradient, the decay is lr * wd * param whatever the gradient's
  // scale (coupled L2 decay would be divided by sqrt(v_hat) instead).
  for (float grad_scale : {1e-4f, 1.0f, 1e4f}) {
    const std::vector<float> start2 = RandomNormal(kN, 12, 1.0f);
    std::vector<float> with_decay = start2, without_decay = start2;
    const std::vector<float> g = RandomNormal(kN, 13, grad_scale);
    std::vector<float> m1(kN, 0.0f), v1(kN, 0.0f), m2(kN, 0.0f), v2(kN, 0.0f);
    AdamWUpdate(config, 1, kLr, 1.0f, kN, with_decay.data(), g.data(), m1.data(), v1.data());
    AdamWUpdate(config, 1, kLr, 0.0f, kN, without_decay.data(), g.data(), m2.data(), v2.data());
    for (size_t i = 0; i < kN; ++i) {
      EXPECT_NEAR(without_decay[i] - with_decay[i], kLr * config.weight_decay * start2[i], 1e-6)
          << "grad_scale " << grad_scale;
    }
  }
}

TEST(AdamWTest, FirstStepMovesByLrTimesSignOfGradient) {
  AdamWConfig config;
  config.weight_decay = 0.0f;
  constexpr float kLr = 1e-3f;
  constexpr size_t kN = 3000;
  std::vector<float> grad = RandomNormal(kN, 21, 1.0f);
  // Magnitudes from 1e-3 to 1e3: the first step ignores them (|g| >> eps).
  for (size_t i = 0; i < kN; ++i) {
    const float magnitude = std::pow(10.0f, -3.0f + 6.0f * i / kN);
    grad[i] = std::copysign(magnitude, grad[i]);
  }
  std::vector<float> param(kN, 0.0f), m(kN, 0.0f), v(kN, 0.0f);
  AdamWUpdate(config, 1, kLr, 1.0f, kN, param.data(), grad.data(), m.data(), v.data());
  for (size_t i = 0; i < kN; ++i) {
    const float expected = -kLr * std::copysign(1.0f, grad[i]);
    ASSERT_NEAR(param[i], expected, 2e-5 * kLr) << "grad " << grad[i];
  }
}

TEST(AdamWTest, SameBitsForAnyThreadCount) {
  AdamWConfig config;
  constexpr size_t kN = 3'000'001;
  const std::vector<float> param0 = RandomNormal(kN, 31, 0.02f);
  std::vector<std::vector<float>> grads;
  for (int step = 0; step < 3; ++step) grads.push_back(RandomNormal(kN, 32 + step, 1.0f));

  auto run = [&](int threads) {
    std::vector<float> param = param0, m(kN, 0.0f), v(kN, 0.0f);
    for (int step = 1; step <= 3; ++step) {
      AdamWUpdate(config, step, 3e-3f, 1.0f, kN, param.data(), grads[step - 1].data(), m.data(),
                  v.data(), threads);
    }
    return std::vector<std::vector<float>>{param, m, v};
  };
  const auto one = run(1);
  for (int threads : {2, 3, 7, 16, 0}) {
    const auto many = run(threads);
    EXPECT_TRUE(SameBits(one[0], many[0])) << threads << " threads: param";
    EXPECT_TRUE(SameBits(one[1], many[1])) << threads << " threads: m";
    EXPECT_TRUE(SameBits(one[2], many[2])) << threads << " threads: v";
  }
  EXPECT_FALSE(SameBits(one[0], param0));
}

TEST(AdamWTest, SolvesLeastSquares) {
  // minimise |A x - b|^2 / (2 rows) in 10-D, b = A x_star.
  constexpr int kRows = 40, kDim = 10;
  const std::vector<float> a = RandomNormal(kRows * kDim, 41, 1.0f);
  const std::vector<float> x_star = RandomNormal(kDim, 42, 1.0f);
  std::vector<double> b(kRows, 0.0);
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kDim; ++c) b[r] += static_cast<double>(a[r * kDim + c]) * x_star[c];
  }
  auto loss_and_grad = [&](const std::vector<float>& x, std::vector<float>* grad) {
    std::vector<double> g(kDim, 0.0);
    double loss = 0.0;
    for (int r = 0; r < kRows; ++r) {
      double residual = -b[r];
      for (int c = 0; c < kDim; ++c) residual += static_cast<double>(a[r * kDim + c]) * x[c];
      loss += residual * residual / (2.0 * kRows);
      for (int c = 0; c < kDim; ++c) g[c] += residual * a[r * kDim + c] / kRows;
    }
    if (grad != nullptr) grad->assign(g.begin(), g.end());
    return loss;
  };

  AdamWConfig config;
  config.beta2 = 0.999f;
  config.weight_decay = 0.0f;
  LrSchedule schedule;
  schedule.peak_lr = 0.05f;
  schedule.warmup_steps = 20;
  schedule.total_steps = 3000;
  schedule.decay_fraction = 0.5f;
  schedule.min_lr_ratio = 0.0f;
  schedule.decay = Decay::kCosine;
  ASSERT_TRUE(ValidateLrSchedule(schedule).ok());

  std::vector<float> x(kDim, 0.0f), m(kDim, 0.0f), v(kDim, 0.0f), grad;
  const double initial_loss = loss_and_grad(x, nullptr);
  for (int64_t step = 1; step <= schedule.total_steps; ++step) {
    loss_and_grad(x, &grad);
    AdamWUpdate(config, step, LearningRate(schedule, step), 1.0f, kDim, x.data(), grad.data(),
                m.data(), v.data());
  }
  const double final_loss = loss_and_grad(x, nullptr);
  EXPECT_LT(final_loss, 1e-8 * initial_loss) << initial_loss << " -> " << final_loss;
  for (int c = 0; c < kDim; ++c) EXPECT_NEAR(x[c], x_star[c], 1e-3) << c;
}

// Prints AdamWUpdate's throughput on the tiny model's embedding (262,144 x
// 256) next to memcpy of as many bytes; asserts nothing about speed.
TEST(AdamWTest, ThroughputOnTinyEmbedding) {
  constexpr int64_t kN = int64_t{262144} * 256;
  // 16 bytes read (param, grad, m, v) and 12 written (param, m, v) per element.
  constexpr double kBytes = 28.0 * kN;
  std::vector<float> param(kN), grad(kN), m(kN, 0.0f), v(kN, 0.0f);
  uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int32_t>(state)) * 0x1p-31f;
  };
  for (int64_t i = 0; i < kN; ++i) param[i] = 0.02f * next(), grad[i] = next();

  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  const AdamWConfig config;
  AdamWUpdate(config, 1, 3e-3f, 1.0f, kN, param.data(), grad.data(), m.data(), v.data());
  constexpr int kRepeats = 5;
  double best_adamw = INFINITY;
  for (int r = 0; r < kRepeats; ++r) {
    const auto start = Clock::now();
    AdamWUpdate(config, 2 + r, 3e-3f, 1.0f, kN, param.data(), grad.data(), m.data(), v.data());
    best_adamw = std::min(best_adamw, seconds_since(start));
  }
  for (int64_t i = 0; i < kN; i += 4099) ASSERT_TRUE(std::isfinite(param[i]));

  // memcpy between the same arrays: param to m and grad to v, split over
  // `threads` threads.
  constexpr size_t kArrayBytes = sizeof(float) * kN;
  constexpr double kCopyBytes = 2.0 * 2 * kArrayBytes;  // Read + written.
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  auto timed_copy = [&](int threads) {
    double best = INFINITY;
    for (int r = 0; r < kRepeats; ++r) {
      const auto start = Clock::now();
      std::vector<std::thread> workers;
      const size_t per = (kArrayBytes + threads - 1) / threads;
      for (int t = 0; t < threads; ++t) {
        const size_t begin = std::min(kArrayBytes, t * per);
        const size_t size = std::min(kArrayBytes, begin + per) - begin;
        workers.emplace_back([&, begin, size] {
          std::memcpy(reinterpret_cast<char*>(m.data()) + begin,
                      reinterpret_cast<const char*>(param.data()) + begin, size);
          std::memcpy(reinterpret_cast<char*>(v.data()) + begin,
                      reinterpret_cast<const char*>(grad.data()) + begin, size);
        });
      }
      for (std::thread& worker : workers) worker.join();
      best = std::min(best, seconds_since(start));
    }
    return best;
  };
  const double copy_one = timed_copy(1);
  const double copy_all = timed_copy(cores);
  EXPECT_EQ(m[kN - 1], param[kN - 1]);

  absl::FPrintF(stdout,
                "AdamWUpdate, %d parameters, %d threads: %.1f ms, %.2f GB/s "
                "(28 B/parameter: 16 read, 12 written)\n",
                kN, cores, best_adamw * 1e3, kBytes / best_adamw * 1e-9);
  absl::FPrintF(stdout, "memcpy of 2 x %d bytes, 1 thread: %.1f ms, %.2f GB/s (read + written)\n",
                kArrayBytes, copy_one * 1e3, kCopyBytes / copy_one * 1e-9);
  absl::FPrintF(stdout, "memcpy of 2 x %d bytes, %d threads: %.1f ms, %.2f GB/s (read + written)\n",
                kArrayBytes, cores, copy_all * 1e3, kCopyBytes / copy_all * 1e-9);
}

// ---------------------------------------------------------------------------
// Gradient clipping

TEST(ClipGradientNormTest, NormAndScaling) {
  const std::vector<int64_t> sizes = {1000, 1, 777'777};
  std::vector<std::vector<float>> original;
  for (size_t i = 0; i < sizes.size(); ++i) {
    original.push_back(RandomNormal(sizes[i], 51 + i, 0.5f + i));
  }
  // Compensated long-double sum: accurate well past float64's rounding.
  long double sum = 0.0L, compensation = 0.0L;
  for (const auto& buffer : original) {
    for (float g : buffer) {
      const long double term = static_cast<long double>(g) * g - compensation;
      const long double next = sum + term;
      compensation = (next - sum) - term;
      sum = next;
    }
  }
  const double reference = static_cast<double>(std::sqrt(sum));

  auto clip = [&](double max_norm, int threads, std::vector<std::vector<float>>& buffers) {
    buffers = original;
    std::vector<std::pair<float*, int64_t>> spans;
    for (auto& buffer : buffers) spans.emplace_back(buffer.data(), buffer.size());
    return ClipGradientNorm(spans, max_norm, threads);
  };
  std::vector<std::vector<float>> buffers;

  // Disabled: measures only.
  const double norm = clip(0.0, 1, buffers);
  EXPECT_NEAR(norm, reference, 1e-12 * reference);
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_TRUE(SameBits(buffers[i], original[i]));
  // Same bits for any thread count.
  for (int threads : {2, 5, 0}) EXPECT_EQ(clip(-1.0, threads, buffers), norm) << threads;

  // Below the limit: untouched.
  EXPECT_EQ(clip(norm * 1.01, 0, buffers), norm);
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_TRUE(SameBits(buffers[i], original[i]));

  // Above: scaled by max_norm / (norm + 1e-6), to a norm of max_norm.
  const double max_norm = norm / 3.0;
  EXPECT_EQ(clip(max_norm, 0, buffers), norm);
  const double scale = max_norm / (norm + 1e-6);
  double clipped_sum = 0.0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (size_t j = 0; j < buffers[i].size(); ++j) {
      ASSERT_NEAR(buffers[i][j], original[i][j] * scale, 1e-7 * std::abs(original[i][j]));
      clipped_sum += static_cast<double>(buffers[i][j]) * buffers[i][j];
    }
  }
  EXPECT_NEAR(std::sqrt(clipped_sum), max_norm, 1e-6 * max_norm);
}

TEST(ClipGradientNormTest, EmptyAndNonFinite) {
  EXPECT_EQ(ClipGradientNorm({}, 1.0), 0.0);
  std::vector<float> grad = {3.0f, 4.0f};
  std::vector<std::pair<float*, int64_t>> spans = {{grad.data(), 2}, {nullptr, 0}};
  EXPECT_DOUBLE_EQ(ClipGradientNorm(spans, 0.0), 5.0);
  grad[1] = INFINITY;
  EXPECT_TRUE(std::isinf(ClipGradientNorm(spans, 1.0)));
  EXPECT_EQ(grad[0], 3.0f);  // Left for the caller, which skips the step.
}

// ---------------------------------------------------------------------------
// Learning-rate schedule

TEST(LrScheduleTest, DefaultIsValid) { EXPECT_TRUE(ValidateLrSchedule(LrSchedule()).ok()); }

TEST(LrScheduleTest, ErrorsNameTheField) {
  const struct {
    const char* field;
    void (*corrupt)(LrSchedule&);
  } cases[] = {
      {"peak_lr", [](LrSchedule& s) { s.peak_lr = 0.0f; }},
      {"peak_lr", [](LrSchedule& s) { s.peak_lr = NAN; }},
      {"peak_lr", [](LrSchedule& s) { s.peak_lr = INFINITY; }},
      {"total_steps", [](LrSchedule& s) { s.total_steps = 0; }},
      {"warmup_steps", [](LrSchedule& s) { s.warmup_steps = -1; }},
      {"warmup_steps", [](LrSchedule& s) { s.warmup_steps = s.total_steps + 1; }},
      {"decay_fraction", [](LrSchedule& s) { s.decay_fraction = 1.5f; }},
      {"decay_fraction", [](LrSchedule& s) { s.decay_fraction = -0.1f; }},
      {"decay_fraction", [](LrSchedule& s) { s.decay_fraction = NAN; }},
      {"min_lr_ratio", [](LrSchedule& s) { s.min_lr_ratio = 1.01f; }},
      {"min_lr_ratio", [](LrSchedule& s) { s.min_lr_ratio = -0.5f; }},
      {"decay", [](LrSchedule& s) { s.decay = static_cast<Decay>(7); }},
  };
  for (const auto& test_case : cases) {
    LrSchedule schedule;
    test_case.corrupt(schedule);
    const absl::Status status = ValidateLrSchedule(schedule);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << test_case.field;
    EXPECT_NE(status.message().find(std::string("LrSchedule.") + test_case.field + " "),
              absl::string_view::npos)
        << status.message();
  }
  LrSchedule edge;
  edge.warmup_steps = edge.total_steps;
  edge.decay_fraction = 1.0f;
  edge.min_lr_ratio = 0.0f;
  EXPECT_TRUE(ValidateLrSchedule(edge).ok());
}

TEST(LrScheduleTest, DecayStepsRoundsUpAtFloatPrecision) {
  auto decay_steps = [](float fraction, int64_t total) {
    LrSchedule schedule;
    schedule.decay_fraction = fraction;
    schedule.total_steps = total;
    return DecaySteps(schedule);
  };
  EXPECT_EQ(decay_steps(0.2f, 1000), 200);  // 0.2f * 1000 is 200.000003 in float64.
  EXPECT_EQ(decay_steps(0.3f, 10), 3);      // 3.0000001.
  EXPECT_EQ(decay_steps(0.1f, 30), 3);
  EXPECT_EQ(decay_steps(0.25f, 10), 3);  // ceil(2.5).
  EXPECT_EQ(decay_steps(0.2001f, 1000), 201);
  EXPECT_EQ(decay_steps(0.0f, 1000), 0);
  EXPECT_EQ(decay_steps(1.0f, 1000), 1000);
  EXPECT_EQ(decay_steps(1e-9f, 1000), 1);
}

TEST(LrScheduleTest, LinearValuesAtPhaseBoundaries) {
  const LrSchedule s;  // peak 3e-3, warmup 100, total 1000, decay over the last 200, floor 3e-4.
  const double peak = 3e-3, floor = 3e-4;
  const double tolerance = 1e-6 * peak;
  EXPECT_EQ(LearningRate(s, 0), 0.0f);
  EXPECT_NEAR(LearningRate(s, 1), peak / 100, tolerance);
  EXPECT_NEAR(LearningRate(s, 50), peak / 2, tolerance);
  EXPECT_EQ(LearningRate(s, 100), s.peak_lr);  // Warmup end.
  EXPECT_EQ(LearningRate(s, 101), s.peak_lr);
  EXPECT_EQ(LearningRate(s, 450), s.peak_lr);  // Stable middle.
  EXPECT_EQ(LearningRate(s, 800), s.peak_lr);  // Last stable step.
  EXPECT_NEAR(LearningRate(s, 801), floor + (peak - floor) * 199 / 200, tolerance);
  EXPECT_LT(LearningRate(s, 801), s.peak_lr);
  EXPECT_NEAR(LearningRate(s, 900), (peak + floor) / 2, tolerance);
  EXPECT_NEAR(LearningRate(s, 999), floor + (peak - floor) / 200, tolerance);
  EXPECT_NEAR(LearningRate(s, 1000), floor, tolerance);  // total_steps.
  EXPECT_NEAR(LearningRate(s, 1001), floor, tolerance);
  EXPECT_NEAR(LearningRate(s, 1'000'000), floor, tolerance);
}

TEST(LrScheduleTest, CosineValuesAndEndpoints) {
  LrSchedule s;
  s.decay = Decay::kCosine;
  s.min_lr_ratio = 0.0f;
  const double peak = 3e-3;
  const double tolerance = 1e-6 * peak;
  EXPECT_EQ(LearningRate(s, 800), s.peak_lr);
  EXPECT_NEAR(LearningRate(s, 801), peak * 0.5 * (1 + std::cos(M_PI / 200)), tolerance);
  EXPECT_GT(LearningRate(s, 801), 0.9999 * peak);  // Flat start, unlike linear.
  EXPECT_NEAR(LearningRate(s, 850), peak * 0.5 * (1 + std::cos(M_PI / 4)), tolerance);
  EXPECT_NEAR(LearningRate(s, 900), peak / 2, tolerance);
  EXPECT_NEAR(LearningRate(s, 950), peak * 0.5 * (1 + std::cos(3 * M_PI / 4)), tolerance);
  EXPECT_EQ(LearningRate(s, 1000), 0.0f);
  EXPECT_EQ(LearningRate(s, 1001), 0.0f);

  s.min_lr_ratio = 0.1f;
  EXPECT_NEAR(LearningRate(s, 1000), 3e-4, tolerance);
  EXPECT_NEAR(LearningRate(s, 900), (3e-3 + 3e-4) / 2, tolerance);
}

TEST(LrScheduleTest, NonIncreasingAfterWarmup) {
  for (Decay decay : {Decay::kLinear, Decay::kCosine}) {
    for (float fraction : {0.0f, 0.2f, 0.9f, 1.0f}) {
      LrSchedule s;
      s.decay = decay;
      s.decay_fraction = fraction;
      s.warmup_steps = fraction == 1.0f ? 0 : 100;
      ASSERT_TRUE(ValidateLrSchedule(s).ok());
      const int64_t warmup_end = std::max<int64_t>(1, s.warmup_steps);
      float previous = LearningRate(s, warmup_end);
      EXPECT_EQ(previous, fraction == 1.0f ? LearningRate(s, 1) : s.peak_lr);
      EXPECT_LE(previous, s.peak_lr);
      for (int64_t t = warmup_end + 1; t <= s.total_steps + 50; ++t) {
        const float lr = LearningRate(s, t);
        ASSERT_LE(lr, previous) << "t=" << t << " fraction=" << fraction;
        ASSERT_GE(lr, s.peak_lr * s.min_lr_ratio * (1 - 1e-6)) << "t=" << t;
        previous = lr;
      }
      // Increasing during warmup.
      for (int64_t t = 2; t <= s.warmup_steps; ++t) {
        ASSERT_GT(LearningRate(s, t), LearningRate(s, t - 1)) << "t=" << t;
      }
    }
  }
}

TEST(LrScheduleTest, EdgeCases) {
  LrSchedule s;
  s.warmup_steps = 0;
  EXPECT_EQ(LearningRate(s, 1), s.peak_lr);  // No warmup.

  s = LrSchedule();
  s.decay_fraction = 0.0f;  // No decay: peak through total_steps, then the floor.
  EXPECT_EQ(LearningRate(s, 1000), s.peak_lr);
  EXPECT_NEAR(LearningRate(s, 1001), 3e-4, 1e-9);

  // Warmup and decay overlap: the ramp until it meets the decay line.
  s = LrSchedule();
  s.warmup_steps = 100;
  s.total_steps = 100;
  s.decay_fraction = 0.5f;
  s.min_lr_ratio = 0.0f;
  ASSERT_TRUE(ValidateLrSchedule(s).ok());
  EXPECT_NEAR(LearningRate(s, 40), 3e-3 * 0.4, 1e-9);      // Ramp.
  EXPECT_NEAR(LearningRate(s, 50), 3e-3 * 0.5, 1e-9);      // Ramp; decay not started.
  EXPECT_NEAR(LearningRate(s, 70), 3e-3 * 30 / 50, 1e-9);  // Decay line below the ramp.
  EXPECT_EQ(LearningRate(s, 100), 0.0f);
}

}  // namespace
}  // namespace maximus::trainer
