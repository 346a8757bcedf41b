// The MAXIS loss: a sampled softmax over a candidate set chosen by cheap
// low-dimensional "scouts", with a ghost logit standing in for the rest of
// the vocabulary, plus a Matryoshka auxiliary loss on the first d_low
// dimensions.
//
// For hidden H (N x d), tied embedding W (V x d), targets y, loss mask m:
// 1. Scouts are rows 0, s, 2s, ... of H (s = scout_stride). Each scout scores
//    every vocabulary row on the first d_low dimensions, H[r, :d_low] ·
//    W[v, :d_low], and keeps its top k = max(1, K / #scouts) rows (K =
//    candidate_budget; ties go to the lower id).
// 2. The candidate set C is the union of the scouts' picks, deduplicated and
//    sorted by id.
// 3. Row i's logits are z_i = [h_i·w_{y_i}, h_i·w_c for c in C (-inf where
//    c = y_i), g_i] with the ghost logit
//      g_i = ln(V - |C| - 1) + ||h_i||² E[||w||²] / (2d),
//    E[||w||²] the mean squared row norm of W (no gradient flows into it).
// 4. main_i = -log softmax(z_i)[0]; aux_i is the same with h_i[:d_low],
//    w[:d_low] (its own ghost with E[||w[:d_low]||²] and 2 d_low), the same C.
//    loss = sum_i m_i (main_i + aux_weight * aux_i) / max(1, sum_i m_i).
// 5. Gradients: dH (the ghost contributes through ||h_i||²), and dW only for
//    the rows in {y_i : m_i = 1} ∪ C, returned sparse (sorted unique ids +
//    rows). The ghost gives W no gradient.
//
// The CPU reference (maxis.cc, fp32) follows these steps literally; the CUDA
// version (maxis.cu, bf16 inputs, fp32 accumulation) must agree with it.

#ifndef MAXIMUS_KERNELS_MAXIS_H_
#define MAXIMUS_KERNELS_MAXIS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cross_entropy.h"

namespace maximus::kernels {

struct MaxisConfig {
  int64_t low_dim = 64;             // d_low; at most d.
  int64_t scout_stride = 4;         // s
  int64_t candidate_budget = 2048;  // K
  float aux_weight = 0.2f;          // alpha
  bool use_ghost = true;            // false: no ghost slot (for checking against exact CE).
};

// INVALID_ARGUMENT naming the field for a config that does not fit `shape`
// (low_dim in [1, d], scout_stride >= 1, candidate_budget >= 1, aux_weight
// finite and >= 0; with the ghost, K must leave at least 2 rows outside C:
// candidate_budget <= V - 2).
absl::Status ValidateMaxisConfig(const LinearHeadShape& shape, const MaxisConfig& config);

// Rows of W with their gradient: ids sorted ascending and unique; rows is
// ids.size() x d.
struct SparseRows {
  std::vector<int32_t> ids;
  std::vector<float> rows;
};

struct MaxisResult {
  double loss = 0.0;  // main + aux_weight * aux, means over unmasked rows.
  double main_loss = 0.0;
  double aux_loss = 0.0;            // Unweighted.
  std::vector<int32_t> candidates;  // C, sorted unique.
  std::vector<float> grad_hidden;   // N x d; empty unless gradients were asked for.
  SparseRows grad_weight;           // Empty unless gradients were asked for.
};

// Step 1-2 alone: the candidate set C (sorted unique ids).
absl::StatusOr<std::vector<int32_t>> MaxisCandidates(const LinearHeadShape& shape,
                                                     const float* hidden, const float* weight,
                                                     const MaxisConfig& config);

// Steps 3-5 for a given candidate set (sorted unique ids in [0, V)); lets
// tests fix C, e.g. to the whole vocabulary. INVALID_ARGUMENT if C is not such
// a set, or if with the ghost V - |C| - 1 < 1 (from MaxisLoss too: with more
// scouts than K, each scout still keeps one row and |C| can exceed K).
absl::StatusOr<MaxisResult> MaxisLossWithCandidates(const LinearHeadShape& shape,
                                                    const LinearHeadInputs& inputs,
                                                    const std::vector<int32_t>& candidates,
                                                    const MaxisConfig& config,
                                                    bool compute_gradients);

// CPU reference of the whole loss: MaxisCandidates, then MaxisLossWithCandidates.
absl::StatusOr<MaxisResult> MaxisLoss(const LinearHeadShape& shape, const LinearHeadInputs& inputs,
                                      const MaxisConfig& config, bool compute_gradients);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_MAXIS_H_
