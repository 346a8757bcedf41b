// The MAXIS and memory flags of RunConfig, shared by the programs that train
// (main, bench_quality); ApplyFlags (run_config.h) finds them by name.

#include <cstdint>

#include "absl/flags/flag.h"
#include "trainer/run_config.h"

namespace {

const maximus::trainer::RunConfig& Defaults() {
  static const auto* defaults =
      new maximus::trainer::RunConfig(maximus::trainer::DefaultRunConfig());
  return *defaults;
}

}  // namespace

ABSL_FLAG(int64_t, maxis_low_dim, Defaults().maxis_low_dim(),
          "MAXIS: dimensions of the scouts and the auxiliary loss");
ABSL_FLAG(int64_t, maxis_stride, Defaults().maxis_stride(), "MAXIS: every how many tokens a scout");
ABSL_FLAG(int64_t, maxis_candidates, Defaults().maxis_candidates(), "MAXIS: candidate budget K");
ABSL_FLAG(double, maxis_aux_weight, Defaults().maxis_aux_weight(),
          "MAXIS: weight of the auxiliary loss");
ABSL_FLAG(bool, activation_checkpointing, Defaults().activation_checkpointing(),
          "Recompute each layer's activations in the backward (less memory, one more forward)");
