#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/gemm.h"

namespace maximus::kernels {
namespace {

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

  // Pass 1: online log-sum-exp per row. The running sum is kept relative to
  // the running max and rescaled when the max grows, so no exp overflows.
  std::vector<float> logits(n * tile);
  std::vector<double> row_max(n, -std::numeric_limits<double>::infinity());
  std::vector<double> row_sum(n, 0.0);
  std::vector<double> target_logit(n, 0.0);
  for (int64_t v0 = 0; v0 < v; v0 += tile) {
    const int64_t cols = std::min(tile, v - v0);
    if (absl::Status status =
            TileLogits(n, d, cols, inputs.hidden, inputs.weight + v0 * d, logits.data());
        !status.ok()) {
      return status;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!Unmasked(inputs, i)) continue;
      const float* z = &logits[i * cols];
      double tile_max = z[0];
      for (int64_t j = 1; j < cols; ++j) tile_max = std::max(tile_max, static_cast<double>(z[j]));
      if (tile_max > row_max[i]) {
        row_sum[i] *= std::exp(row_max[i] - tile_max);
        row_max[i] = tile_max;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(z[j] - row_max[i]);
      row_sum[i] += sum;
      const int64_t y = inputs.targets[i];
      if (y >= v0 && y < v0 + cols) target_logit[i] = z[y - v0];
    }
  }
  std::vector<double> lse(n, 0.0);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!Unmasked(inputs, i)) continue;
    lse[i] = row_max[i] + std::log(row_sum[i]);
    const double token_loss = lse[i] - target_logit[i];
    result.token_loss[i] = static_cast<float>(token_loss);
    total += token_loss;
  }
  result.loss = total * inv_count;
  if (!compute_gradients) return result;

  // Pass 2: recompute each tile's logits, turn them into
  // G = (softmax - onehot) * m_i / M in place, then dH += G · W[tile] and
  // dW[tile] = Gᵀ · H. Masked rows of G are zero.
  for (int64_t v0 = 0; v0 < v; v0 += tile) {
    const int64_t cols = std::min(tile, v - v0);
    const float* weight_tile = inputs.weight + v0 * d;
    if (absl::Status status = TileLogits(n, d, cols, inputs.hidden, weight_tile, logits.data());
        !status.ok()) {
      return status;
    }
    for (int64_t i = 0; i < n; ++i) {
      float* g = &logits[i * cols];
      if (!Unmasked(inputs, i)) {
        std::fill(g, g + cols, 0.0f);
        continue;
      }
      const int64_t target_col = inputs.targets[i] - v0;  // Outside [0, cols) unless in tile.
      for (int64_t j = 0; j < cols; ++j) {
        const double p = std::exp(g[j] - lse[i]);
        g[j] = static_cast<float>((j == target_col ? p - 1.0 : p) * inv_count);
      }
    }
    GemmDims dh;
    dh.m = n;
    dh.n = d;
    dh.k = cols;
    if (absl::Status status =
            Gemm(dh, 1.0f, logits.data(), weight_tile, 1.0f, result.grad_hidden.data());
        !status.ok()) {
      return status;
    }
    GemmDims dw;
    dw.m = cols;
    dw.n = d;
    dw.k = n;
    dw.transpose_a = true;
    if (absl::Status status =
            Gemm(dw, 1.0f, logits.data(), inputs.hidden, 0.0f, result.grad_weight.data() + v0 * d);
        !status.ok()) {
      return status;
    }
  }
  return result;
}

}  // namespace maximus::kernels
