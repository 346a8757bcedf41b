// Warmup-stable-decay learning-rate schedule, as in the MaximusLLM research
// code: a linear warmup, a long constant phase at the peak rate, and a final
// decay (linear or cosine) to a floor.

#ifndef MAXIMUS_TRAINER_OPTIM_LR_SCHEDULE_H_
#define MAXIMUS_TRAINER_OPTIM_LR_SCHEDULE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace maximus::trainer {

// With P = peak_lr, W = warmup_steps, T = total_steps,
// F = P * min_lr_ratio (the floor), D = DecaySteps(s) = ceil(decay_fraction * T)
// and S = T - D (the last step of the constant phase), the rate at the 1-based
// step t is, computed in float64 and rounded to float32:
//
//   ramp(t)  = P * t / W                                  (+inf when W = 0)
//   p(t)     = (t - S) / D                                decay progress
//   main(t)  = P                                          t <= S
//            = F + (P - F) * (1 - p(t))                   S < t <= T, kLinear
//            = F + (P - F) * (1 + cos(pi * p(t))) / 2     S < t <= T, kCosine
//
//   lr(t)    = 0                                          t < 1
//            = min(ramp(t), main(t))                      1 <= t <= T
//            = F                                          t > T
//
// So when W + D <= T: warmup P * t / W for t <= W, P up to S, decay from P to
// F reached at t = T, F after. When warmup and decay overlap, the rate follows
// the warmup ramp until it meets the decay curve, then the curve. With
// decay_fraction = 0 the rate stays P through T.
struct LrSchedule {
  float peak_lr = 3e-3f;
  int64_t warmup_steps = 100;
  int64_t total_steps = 1000;
  float decay_fraction = 0.2f;  // Share of total_steps spent decaying, in [0, 1].
  float min_lr_ratio = 0.1f;    // Floor as a fraction of peak_lr, in [0, 1].
  enum class Decay { kLinear, kCosine } decay = Decay::kLinear;
};

// INVALID_ARGUMENT naming the field unless peak_lr is finite and > 0,
// 0 <= warmup_steps <= total_steps, total_steps >= 1, decay_fraction and
// min_lr_ratio are in [0, 1], and decay is a known kind.
absl::Status ValidateLrSchedule(const LrSchedule& schedule);

// D = ceil(decay_fraction * total_steps), reading decay_fraction to float32
// precision: a product within 2^-23 (relative) of an integer is that integer,
// so 0.2f of 1000 steps is 200 steps, not 201 (0.2f is 0.2000000030).
int64_t DecaySteps(const LrSchedule& schedule);

// The rate at the 1-based step t (see above). Expects a valid schedule.
float LearningRate(const LrSchedule& schedule, int64_t step);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_OPTIM_LR_SCHEDULE_H_
