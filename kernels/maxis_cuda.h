// The MAXIS loss of maxis.h on the GPU: bf16 inputs, fp32 accumulation,
// forward and backward in one call. Steps, each a kernel or a cuBLAS GEMM:
//   1. E[||w||²] and E[||w[:d_low]||²] in one pass over W, on a side stream
//      that overlaps the scan (the pass is memory-bound, the scan is not);
//      there too, for dW, the tokens stably sorted by target.
//   2. Scout scan: every scout's d_low-dim scores against every vocabulary
//      row on the tensor cores (WMMA), 128 rows per tile into shared memory,
//      each scout's running top-k kept in registers (k <= 8; larger k keeps a
//      top-k per tile) and merged per scout; no #scouts x V matrix.
//   3. Candidate union: a flag per vocabulary row, compacted in id order
//      (sorted, deduplicated). The only host synchronisation of the step
//      fetches |C| and the number of gradient rows, which size the GEMMs.
//   4. Candidate logits, full and first-d_low, by two GEMMs against the
//      gathered rows W[C]; one block per token does both softmaxes with their
//      ghosts and writes the bf16 logit gradients.
//   5. Backward GEMMs for dH and the candidates' dW rows; the targets' and
//      ghosts' terms are added per row; dW leaves as sorted unique ids + rows.
// No atomics add floats: every sum has a fixed order, so a Run gives the same
// bits each time for the same inputs.

#ifndef MAXIMUS_KERNELS_MAXIS_CUDA_H_
#define MAXIMUS_KERNELS_MAXIS_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/bf16.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/cublas_handle.h"
#include "kernels/cuda_stream.h"
#include "kernels/device_buffer.h"
#include "kernels/maxis.h"

namespace maximus::kernels {

// Device pointers for the results; null skips an output.
struct MaxisDeviceOutputs {
  float* loss = nullptr;         // 3 values: loss, main loss, aux loss (required).
  float* grad_hidden = nullptr;  // N x d, overwritten.
  // dW as sparse rows: ids sorted ascending, rows x d. Capacity:
  // MaxisCuda::max_grad_rows() ids and rows. Give both or neither.
  int32_t* grad_weight_ids = nullptr;
  float* grad_weight_rows = nullptr;
};

class MaxisCuda {
 public:
  struct Counts {
    int64_t candidates = 0;  // |C|
    int64_t grad_rows = 0;   // |{y_i : m_i = 1} ∪ C|
  };

  // Allocates the workspace. UNIMPLEMENTED unless low_dim is 64 (the scout
  // scan's compiled tile); INVALID_ARGUMENT for configs maxis.h rejects.
  static absl::StatusOr<MaxisCuda> Create(const LinearHeadShape& shape, const MaxisConfig& config);

  // Forward and backward; returns |C| and the number of dW rows written.
  // INVALID_ARGUMENT naming the first unmasked target outside [0, V).
  absl::StatusOr<Counts> Run(const LinearHeadDeviceInputs& inputs,
                             const MaxisDeviceOutputs& outputs, cudaStream_t stream = nullptr);

  // The candidate set of the last Run (device, sorted, Counts.candidates ids).
  const int32_t* candidates() const { return candidates_.data(); }

  int64_t scouts() const { return scouts_; }
  int64_t picks_per_scout() const { return picks_per_scout_; }
  int64_t max_candidates() const { return scouts_ * picks_per_scout_; }
  int64_t max_grad_rows() const { return shape_.tokens + max_candidates(); }
  // Device memory held besides inputs and outputs.
  int64_t workspace_bytes() const;

 private:
  MaxisCuda(const LinearHeadShape& shape, const MaxisConfig& config, CublasHandle handle);

  LinearHeadShape shape_;
  MaxisConfig config_;
  CublasHandle handle_;
  // Step 1 (memory-bound) runs on side_stream_ beside step 2 (the scan).
  CudaStream side_stream_;
  CudaEvent start_event_;
  CudaEvent side_done_;
  int64_t scouts_ = 0;
  int64_t picks_per_scout_ = 0;  // k
  int64_t vocab_tiles_ = 0;
  // Scan partials per scout: scan_entries_ = groups x picks_per_entry_group_,
  // the groups being vocabulary segments (small k, scan_segments_ > 0) or tiles.
  int64_t scan_segments_ = 0;
  int64_t picks_per_entry_group_ = 0;
  int64_t scan_entries_ = 0;

  DeviceBuffer<double> norm_partials_;       // 2 x norm blocks: per block, as norm_sums_
  DeviceBuffer<double> norm_sums_;           // [sum ||w||², sum ||w[:dl]||²]
  DeviceBuffer<float> tile_scores_;          // scouts x scan_entries_
  DeviceBuffer<int32_t> tile_ids_;           // scouts x scan_entries_
  DeviceBuffer<int32_t> scout_picks_;        // scouts x k
  DeviceBuffer<uint8_t> candidate_flags_;    // V
  DeviceBuffer<uint8_t> row_flags_;          // V
  DeviceBuffer<int32_t> candidates_;         // max_candidates
  DeviceBuffer<int32_t> grad_ids_;           // max_grad_rows (when the caller gives none)
  DeviceBuffer<int32_t> row_of_;             // V: position of a row in the dW ids
  DeviceBuffer<int32_t> counts_;             // [|C|, |U|, first bad target]
  DeviceBuffer<uint8_t> select_temp_;        // CUB scratch
  DeviceBuffer<Bf16Bits> candidate_weight_;  // max_candidates x d
  DeviceBuffer<float> row_stats_;            // N x 4: t, t_low, ||h||², ||h_low||²
  DeviceBuffer<float> logits_;               // N x max_candidates
  DeviceBuffer<float> logits_low_;           // N x max_candidates
  DeviceBuffer<Bf16Bits> grad_logits_;       // N x max_candidates
  DeviceBuffer<Bf16Bits> grad_logits_low_;   // N x max_candidates (alpha folded in)
  DeviceBuffer<float> row_coefs_;       // N x 6: dz_t, dz_t_low, dz_g, dz_g_low, loss, loss_low
  DeviceBuffer<float> candidate_grad_;  // max_candidates x d
  DeviceBuffer<float> mask_count_;      // [M]
  // The targets' dW: tokens sorted by target (stable), and the sums of runs
  // that cross chunks of the sorted order.
  DeviceBuffer<int32_t> target_keys_;    // 2 x N: keys, then sorted keys
  DeviceBuffer<int32_t> target_tokens_;  // 2 x N: token indices, then sorted by key
  DeviceBuffer<uint8_t> sort_temp_;      // CUB scratch of the sort
  DeviceBuffer<float> target_partials_;  // 2 x chunks x d
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_MAXIS_CUDA_H_
