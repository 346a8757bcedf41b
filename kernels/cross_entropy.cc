#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"

namespace maximus::kernels {
namespace {

// Bound on the per-group dH sums of the backward pass (see below).
constexpr int64_t kPartialHiddenGradientBytes = int64_t{256} << 20;
// Rows per task when the groups' dH sums are added up.
constexpr int64_t kRowBlock = 16;

bool Unmasked(const LinearHeadInputs& inputs, int64_t i) {
  return inputs.loss_mask == nullptr || inputs.loss_mask[i] != 0;
}

// logits (rows x cols, packed) = hidden (rows x d) · weight[v0 : v0 + cols]ᵀ.
absl::Status TileLogits(int64_t rows, int64_t d, int64_t cols, const float* hidden,
                        const float* weight_tile, float* logits) {
  GemmDims dims;
  dims.m = rows;
  dims.n = cols;
  dims.k = d;
  dims.transpose_b = true;
  return Gemm(dims, 1.0f, hidden, weight_tile, 0.0f, logits);
}

}  // namespace

absl::Status ValidateLinearHeadShape(const LinearHeadShape& shape) {
  // Targets are int32 and the GEMMs take 32-bit sizes.
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const struct {
    const char* name;
    int64_t value;
  } fields[] = {{"tokens", shape.tokens}, {"hidden", shape.hidden}, {"vocab", shape.vocab}};
  for (const auto& field : fields) {
    if (field.value <= 0 || field.value > kMax) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LinearHeadShape.", field.name, " must be in [1, ", kMax, "], got ", field.value));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLinearHeadInputs(const LinearHeadShape& shape,
                                      const LinearHeadInputs& inputs) {
  if (absl::Status status = ValidateLinearHeadShape(shape); !status.ok()) return status;
  const struct {
    const char* name;
    const void* pointer;
  } pointers[] = {
      {"hidden", inputs.hidden}, {"weight", inputs.weight}, {"targets", inputs.targets}};
  for (const auto& field : pointers) {
    if (field.pointer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("LinearHeadInputs.", field.name, " is null"));
    }
  }
  for (int64_t i = 0; i < shape.tokens; ++i) {
    // Other mask values would weigh rows differently here and on the GPU.
    if (inputs.loss_mask != nullptr && inputs.loss_mask[i] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("LinearHeadInputs.loss_mask[", i,
                                                     "] must be 0 or 1, got ",
                                                     static_cast<int>(inputs.loss_mask[i])));
    }
    if (Unmasked(inputs, i) && (inputs.targets[i] < 0 || inputs.targets[i] >= shape.vocab)) {
      return absl::InvalidArgumentError(absl::StrCat("LinearHeadInputs.targets[", i,
                                                     "] must be in [0, ", shape.vocab, "), got ",
                                                     inputs.targets[i]));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CrossEntropyResult> LinearCrossEntropy(const LinearHeadShape& shape,
                                                      const LinearHeadInputs& inputs,
                                                      bool compute_gradients, int64_t vocab_tile) {
  if (absl::Status status = ValidateLinearHeadInputs(shape, inputs); !status.ok()) return status;
  if (vocab_tile <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LinearCrossEntropy: vocab_tile must be positive, got ", vocab_tile));
  }
  const int64_t n = shape.tokens, d = shape.hidden, v = shape.vocab;
  const int64_t tile = std::min(vocab_tile, v);
  const int64_t tiles = (v + tile - 1) / tile;
  // Held across the parallel steps (see cpu_parallel.h).
  const SingleThreadedBlas single_threaded_blas;

  CrossEntropyResult result;
  result.token_loss.assign(n, 0.0f);
  if (compute_gradients) {
    result.grad_hidden.assign(n * d, 0.0f);
    result.grad_weight.assign(v * d, 0.0f);
  }
  int64_t unmasked = 0;
  for (int64_t i = 0; i < n; ++i) unmasked += Unmasked(inputs, i) ? 1 : 0;
  if (unmasked == 0) return result;  // Loss 0, gradients 0.
  const double inv_count = 1.0 / static_cast<double>(unmasked);

  // Pass 1, one task per vocabulary tile: each tile's max and sum of
  // exp(z - max) per row, combined below in tile order. Sums are taken
  // relative to their own tile's max, so no exp overflows.
  std::vector<double> tile_max(tiles * n), tile_sum(tiles * n);
  std::vector<double> target_logit(n, 0.0);
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(tiles, [&](int64_t t, std::vector<float>& logits) {
    const int64_t v0 = t * tile, cols = std::min(tile, v - v0);
    logits.resize(n * tile);
    MAXIMUS_RETURN_IF_ERROR(
        TileLogits(n, d, cols, inputs.hidden, inputs.weight + v0 * d, logits.data()));
    for (int64_t i = 0; i < n; ++i) {
      if (!Unmasked(inputs, i)) continue;
      const float* z = &logits[i * cols];
      double max = z[0];
      for (int64_t j = 1; j < cols; ++j) max = std::max(max, static_cast<double>(z[j]));
      double sum = 0.0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(z[j] - max);
      tile_max[t * n + i] = max;
      tile_sum[t * n + i] = sum;
      // One tile holds the target: no other task writes this row's entry.
      const int64_t y = inputs.targets[i];
      if (y >= v0 && y < v0 + cols) target_logit[i] = z[y - v0];
    }
    return absl::OkStatus();
  }));
  std::vector<double> lse(n, 0.0);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!Unmasked(inputs, i)) continue;
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < tiles; ++t) max = std::max(max, tile_max[t * n + i]);
    double sum = 0.0;
    for (int64_t t = 0; t < tiles; ++t)
      sum += tile_sum[t * n + i] * std::exp(tile_max[t * n + i] - max);
    lse[i] = max + std::log(sum);
    const double token_loss = lse[i] - target_logit[i];
    result.token_loss[i] = static_cast<float>(token_loss);
    total += token_loss;
  }
  result.loss = total * inv_count;
  if (!compute_gradients) return result;

  // Pass 2: recompute each tile's logits, turn them into
  // G = (softmax - onehot) * m_i / M in place, then dW[tile] = Gᵀ · H (rows
  // of its own) and dH += G · W[tile]. dH is summed per group of consecutive
  // tiles, one task per group, and the groups' sums are added in group order.
  // The groups' buffers are bounded in size; their number depends on the
  // shape alone.
  const int64_t group_bytes = n * d * static_cast<int64_t>(sizeof(float));
  const int64_t groups = std::clamp<int64_t>(kPartialHiddenGradientBytes / group_bytes, 1, tiles);
  std::vector<float> partial_dh(groups * n * d);
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(groups, [&](int64_t group, std::vector<float>& logits) {
    logits.resize(n * tile);
    float* dh = &partial_dh[group * n * d];
    const int64_t first = tiles * group / groups, last = tiles * (group + 1) / groups;
    for (int64_t t = first; t < last; ++t) {
      const int64_t v0 = t * tile, cols = std::min(tile, v - v0);
      const float* weight_tile = inputs.weight + v0 * d;
      MAXIMUS_RETURN_IF_ERROR(TileLogits(n, d, cols, inputs.hidden, weight_tile, logits.data()));
      for (int64_t i = 0; i < n; ++i) {
        float* g = &logits[i * cols];
        if (!Unmasked(inputs, i)) {
          std::fill(g, g + cols, 0.0f);
          continue;
        }
        const int64_t target_col = inputs.targets[i] - v0;  // In [0, cols) if in tile.
        for (int64_t j = 0; j < cols; ++j) {
          const double p = std::exp(g[j] - lse[i]);
          g[j] = static_cast<float>((j == target_col ? p - 1.0 : p) * inv_count);
        }
      }
      GemmDims dh_dims;
      dh_dims.m = n;
      dh_dims.n = d;
      dh_dims.k = cols;
      MAXIMUS_RETURN_IF_ERROR(
          Gemm(dh_dims, 1.0f, logits.data(), weight_tile, t == first ? 0.0f : 1.0f, dh));
      GemmDims dw_dims;
      dw_dims.m = cols;
      dw_dims.n = d;
      dw_dims.k = n;
      dw_dims.transpose_a = true;
      MAXIMUS_RETURN_IF_ERROR(Gemm(dw_dims, 1.0f, logits.data(), inputs.hidden, 0.0f,
                                   result.grad_weight.data() + v0 * d));
    }
    return absl::OkStatus();
  }));
  // dH = the groups' sums in group order, one task per block of rows.
  const int64_t row_blocks = (n + kRowBlock - 1) / kRowBlock;
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(row_blocks, [&](int64_t block, std::vector<float>&) {
    const int64_t begin = block * kRowBlock * d, end = std::min(n, (block + 1) * kRowBlock) * d;
    float* dh = result.grad_hidden.data();
    for (int64_t group = 0; group < groups; ++group) {
      const float* partial = &partial_dh[group * n * d];
      for (int64_t e = begin; e < end; ++e) dh[e] += partial[e];
    }
    return absl::OkStatus();
  }));
  return result;
}

}  // namespace maximus::kernels
