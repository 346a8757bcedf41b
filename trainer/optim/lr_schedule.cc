#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace maximus::trainer {
namespace {

constexpr double kPi = 3.14159265358979323846;

absl::Status FieldError(const char* field, const char* range, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("LrSchedule.", field, " must be ", range, ", got ", value));
}

}  // namespace

absl::Status ValidateLrSchedule(const LrSchedule& schedule) {
  // Written so that NaN fails every check.
  if (!(schedule.peak_lr > 0.0f && std::isfinite(schedule.peak_lr))) {
    return FieldError("peak_lr", "finite and > 0", schedule.peak_lr);
  }
  if (schedule.total_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("LrSchedule.total_steps must be >= 1, got ", schedule.total_steps));
  }
  if (schedule.warmup_steps < 0 || schedule.warmup_steps > schedule.total_steps) {
    return absl::InvalidArgumentError(absl::StrCat("LrSchedule.warmup_steps must be in [0, ",
                                                   "total_steps = ", schedule.total_steps,
                                                   "], got ", schedule.warmup_steps));
  }
  if (!(schedule.decay_fraction >= 0.0f && schedule.decay_fraction <= 1.0f)) {
    return FieldError("decay_fraction", "in [0, 1]", schedule.decay_fraction);
  }
  if (!(schedule.min_lr_ratio >= 0.0f && schedule.min_lr_ratio <= 1.0f)) {
    return FieldError("min_lr_ratio", "in [0, 1]", schedule.min_lr_ratio);
  }
  if (schedule.decay != LrSchedule::Decay::kLinear &&
      schedule.decay != LrSchedule::Decay::kCosine) {
    return absl::InvalidArgumentError(absl::StrCat("LrSchedule.decay must be kLinear or kCosine, ",
                                                   "got ", static_cast<int>(schedule.decay)));
  }
  return absl::OkStatus();
}

int64_t DecaySteps(const LrSchedule& schedule) {
  const double product =
      static_cast<double>(schedule.decay_fraction) * static_cast<double>(schedule.total_steps);
  // decay_fraction carries a relative error up to 2^-24 from its float32
  // rounding; forgive twice that before rounding up.
  const double steps = std::ceil(product - std::abs(product) * 0x1p-23);
  return std::clamp<int64_t>(static_cast<int64_t>(steps), 0, schedule.total_steps);
}

float LearningRate(const LrSchedule& schedule, int64_t step) {
  if (step < 1) return 0.0f;
  const double peak = schedule.peak_lr;
  const double floor = peak * static_cast<double>(schedule.min_lr_ratio);
  if (step > schedule.total_steps) return static_cast<float>(floor);

  const double t = static_cast<double>(step);
  const double ramp = schedule.warmup_steps > 0
                          ? peak * t / static_cast<double>(schedule.warmup_steps)
                          : std::numeric_limits<double>::infinity();
  const int64_t decay_steps = DecaySteps(schedule);
  const int64_t stable_end = schedule.total_steps - decay_steps;
  double main = peak;
  if (step > stable_end) {
    const double progress =
        static_cast<double>(step - stable_end) / static_cast<double>(decay_steps);
    const double shape = schedule.decay == LrSchedule::Decay::kCosine
                             ? 0.5 * (1.0 + std::cos(kPi * progress))
                             : 1.0 - progress;
    main = floor + (peak - floor) * shape;
  }
  return static_cast<float>(std::min(ramp, main));
}

}  // namespace maximus::trainer
