#include "kernels/maxis.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cpu_parallel.h"
#include "kernels/gemm.h"

namespace maximus::kernels {
namespace {

// Vocabulary rows per task when picking candidates (#scouts x tile scores)
// and when averaging row norms.
constexpr int64_t kVocabTile = 4096;
// Rows of H per task in the sampled softmax, and candidates per task in dW[C].
// Fixed sizes: the partition, hence every result, is the same on any number
// of threads.
constexpr int64_t kRowBlock = 32;
constexpr int64_t kCandidateBlock = 128;

bool Unmasked(const LinearHeadInputs& inputs, int64_t i) {
  return inputs.loss_mask == nullptr || inputs.loss_mask[i] != 0;
}

struct Scored {
  float score;
  int32_t id;
};

// Ranking of the scouts' top-k: higher score first, ties to the lower id.
bool Better(const Scored& a, const Scored& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// E[||W[v, :d]||²] and E[||W[v, :low]||²] over all rows, in double: one task
// per tile of rows, the tiles' sums added in tile order.
absl::Status MeanSquaredRowNorms(const LinearHeadShape& shape, const float* weight, int64_t low,
                                 double* mean_full, double* mean_low) {
  const int64_t d = shape.hidden, v = shape.vocab;
  const int64_t tiles = (v + kVocabTile - 1) / kVocabTile;
  std::vector<double> full(tiles), head(tiles);
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(tiles, [&](int64_t t, std::vector<float>&) {
    double sum_head = 0.0, sum_tail = 0.0;
    for (int64_t r = t * kVocabTile; r < std::min(v, (t + 1) * kVocabTile); ++r) {
      const float* w = weight + r * d;
      for (int64_t j = 0; j < low; ++j) sum_head += static_cast<double>(w[j]) * w[j];
      for (int64_t j = low; j < d; ++j) sum_tail += static_cast<double>(w[j]) * w[j];
    }
    head[t] = sum_head;
    full[t] = sum_head + sum_tail;
    return absl::OkStatus();
  }));
  double total_full = 0.0, total_low = 0.0;
  for (int64_t t = 0; t < tiles; ++t) {
    total_full += full[t];
    total_low += head[t];
  }
  *mean_full = total_full / static_cast<double>(v);
  *mean_low = total_low / static_cast<double>(v);
  return absl::OkStatus();
}

// What one sampled softmax (main: dims = d; aux: dims = d_low) needs besides
// the inputs. Only the first `dims` columns of H, W and the gradients are used.
struct Part {
  int64_t dims;
  double mean_norm;     // E[||w[:dims]||²], a constant (no gradient).
  double weight;        // 1 for main, alpha for aux: scales the gradients.
  double ghost_offset;  // ln(V - |C| - 1); unused without the ghost.
};

// Buffers shared by the two parts.
struct Work {
  const std::vector<int32_t>* candidates;
  std::vector<float> candidate_rows;   // |C| x d: W[C].
  std::vector<float> logits;           // N x |C|, then G = d loss / d logits.
  std::vector<float> grad_candidates;  // |C| x d: dW[C] (not yet scattered).
  std::vector<int32_t> grad_ids;       // Sorted unique {y_i : m_i = 1} ∪ C.
  std::vector<double> grad_rows;       // grad_ids.size() x d: target terms, in double.
  double inv_count;                    // 1 / max(1, sum m).
};

int64_t IndexOf(const std::vector<int32_t>& sorted, int32_t id) {
  const auto it = std::lower_bound(sorted.begin(), sorted.end(), id);
  return it != sorted.end() && *it == id ? it - sorted.begin() : -1;
}

// Adds one part's loss sum (unnormalised, over unmasked rows) to *loss_sum and,
// if grad_hidden is non-null, its gradients scaled by part.weight / M.
// One task per block of rows computes their logits, losses, G and dH rows;
// the per-row results that meet in shared sums (the loss, the target rows of
// dW) are added afterwards in row order, and dW[C] is split by candidates.
absl::Status AddPart(const LinearHeadShape& shape, const LinearHeadInputs& inputs,
                     const MaxisConfig& config, const Part& part, Work& work, double* loss_sum,
                     float* grad_hidden) {
  const int64_t n = shape.tokens, d = shape.hidden, dims = part.dims;
  const std::vector<int32_t>& candidates = *work.candidates;
  const int64_t c = static_cast<int64_t>(candidates.size());
  const double scale = part.weight * work.inv_count;
  std::vector<double> row_loss(n, 0.0), row_g_target(n, 0.0);
  const int64_t row_blocks = (n + kRowBlock - 1) / kRowBlock;
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(row_blocks, [&](int64_t block, std::vector<float>&) {
    const int64_t first = block * kRowBlock, rows = std::min(kRowBlock, n - first);
    float* logits = work.logits.data() + first * c;
    if (c > 0) {
      GemmDims dims_z;  // Z = H[rows, :dims] · W[C, :dims]ᵀ.
      dims_z.m = rows;
      dims_z.n = c;
      dims_z.k = dims;
      dims_z.transpose_b = true;
      dims_z.lda = d;
      dims_z.ldb = d;
      MAXIMUS_RETURN_IF_ERROR(
          Gemm(dims_z, 1.0f, inputs.hidden + first * d, work.candidate_rows.data(), 0.0f, logits));
    }
    for (int64_t i = first; i < first + rows; ++i) {
      float* z = work.logits.data() + i * c;
      if (!Unmasked(inputs, i)) {
        std::fill(z, z + c, 0.0f);  // No gradient from masked rows.
        continue;
      }
      const float* h = inputs.hidden + i * d;
      const int32_t y = inputs.targets[i];
      const float* w_y = inputs.weight + static_cast<int64_t>(y) * d;
      double target = 0.0, norm = 0.0;
      for (int64_t j = 0; j < dims; ++j) {
        target += static_cast<double>(h[j]) * w_y[j];
        norm += static_cast<double>(h[j]) * h[j];
      }
      const int64_t target_slot = IndexOf(candidates, y);  // Its candidate logit is -inf.
      const double ghost = part.ghost_offset + norm * part.mean_norm / (2.0 * dims);
      double max = target;
      if (config.use_ghost) max = std::max(max, ghost);
      for (int64_t j = 0; j < c; ++j) {
        if (j != target_slot) max = std::max(max, static_cast<double>(z[j]));
      }
      double sum = std::exp(target - max);
      if (config.use_ghost) sum += std::exp(ghost - max);
      for (int64_t j = 0; j < c; ++j) {
        if (j != target_slot) sum += std::exp(z[j] - max);
      }
      const double lse = max + std::log(sum);
      row_loss[i] = lse - target;
      if (grad_hidden == nullptr) continue;

      // d/dz of -log softmax(z)[0] is softmax(z) - onehot(0).
      for (int64_t j = 0; j < c; ++j) {
        z[j] = j == target_slot ? 0.0f : static_cast<float>(std::exp(z[j] - lse) * scale);
      }
      const double g_target = (std::exp(target - lse) - 1.0) * scale;
      row_g_target[i] = g_target;
      // d ghost / d h = h * E / dims; the ghost gives W nothing.
      const double g_ghost =
          config.use_ghost ? std::exp(ghost - lse) * scale * part.mean_norm / dims : 0.0;
      float* dh = grad_hidden + i * d;
      for (int64_t j = 0; j < dims; ++j) {
        dh[j] += static_cast<float>(g_target * w_y[j] + g_ghost * h[j]);
      }
    }
    if (grad_hidden == nullptr || c == 0) return absl::OkStatus();
    GemmDims dims_h;  // dH[rows, :dims] += G[rows] · W[C, :dims].
    dims_h.m = rows;
    dims_h.n = dims;
    dims_h.k = c;
    dims_h.ldb = d;
    dims_h.ldc = d;
    return Gemm(dims_h, 1.0f, logits, work.candidate_rows.data(), 1.0f, grad_hidden + first * d);
  }));
  for (int64_t i = 0; i < n; ++i) {
    if (!Unmasked(inputs, i)) continue;
    *loss_sum += row_loss[i];
    if (grad_hidden == nullptr) continue;
    const float* h = inputs.hidden + i * d;
    double* dw_y = &work.grad_rows[IndexOf(work.grad_ids, inputs.targets[i]) * d];
    for (int64_t j = 0; j < dims; ++j) dw_y[j] += row_g_target[i] * h[j];
  }
  if (grad_hidden == nullptr || c == 0) return absl::OkStatus();

  const int64_t candidate_blocks = (c + kCandidateBlock - 1) / kCandidateBlock;
  return ParallelTasks(candidate_blocks, [&](int64_t block, std::vector<float>&) {
    const int64_t first = block * kCandidateBlock, count = std::min(kCandidateBlock, c - first);
    GemmDims dims_w;  // dW[C block, :dims] += G[:, block]ᵀ · H[:, :dims].
    dims_w.m = count;
    dims_w.n = dims;
    dims_w.k = n;
    dims_w.transpose_a = true;
    dims_w.lda = c;
    dims_w.ldb = d;
    dims_w.ldc = d;
    return Gemm(dims_w, 1.0f, work.logits.data() + first, inputs.hidden, 1.0f,
                work.grad_candidates.data() + first * d);
  });
}

absl::Status ValidateCandidates(const LinearHeadShape& shape, const MaxisConfig& config,
                                const std::vector<int32_t>& candidates) {
  for (size_t j = 0; j < candidates.size(); ++j) {
    if (candidates[j] < 0 || candidates[j] >= shape.vocab) {
      return absl::InvalidArgumentError(absl::StrCat("candidates[", j, "] must be in [0, ",
                                                     shape.vocab, "), got ", candidates[j]));
    }
    if (j > 0 && candidates[j] <= candidates[j - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidates must be sorted and unique: candidates[", j,
                       "] = ", candidates[j], " follows ", candidates[j - 1]));
    }
  }
  const int64_t outside = shape.vocab - static_cast<int64_t>(candidates.size()) - 1;
  if (config.use_ghost && outside < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ghost logit needs V - |C| - 1 >= 1, got V = ", shape.vocab,
                     ", |C| = ", candidates.size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateMaxisConfig(const LinearHeadShape& shape, const MaxisConfig& config) {
  if (absl::Status status = ValidateLinearHeadShape(shape); !status.ok()) return status;
  if (config.low_dim < 1 || config.low_dim > shape.hidden) {
    return absl::InvalidArgumentError(absl::StrCat("MaxisConfig.low_dim must be in [1, ",
                                                   shape.hidden, "], got ", config.low_dim));
  }
  if (config.scout_stride < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxisConfig.scout_stride must be >= 1, got ", config.scout_stride));
  }
  if (config.candidate_budget < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxisConfig.candidate_budget must be >= 1, got ", config.candidate_budget));
  }
  if (config.use_ghost && config.candidate_budget > shape.vocab - 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxisConfig.candidate_budget must be <= V - 2 = ", shape.vocab - 2,
                     " with the ghost logit, got ", config.candidate_budget));
  }
  if (!std::isfinite(config.aux_weight) || config.aux_weight < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaxisConfig.aux_weight must be finite and >= 0, got ", config.aux_weight));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> MaxisCandidates(const LinearHeadShape& shape,
                                                     const float* hidden, const float* weight,
                                                     const MaxisConfig& config) {
  if (absl::Status status = ValidateMaxisConfig(shape, config); !status.ok()) return status;
  if (hidden == nullptr || weight == nullptr) {
    return absl::InvalidArgumentError("MaxisCandidates: hidden and weight must be non-null");
  }
  const int64_t d = shape.hidden, v = shape.vocab, low = config.low_dim;
  const int64_t scouts = (shape.tokens + config.scout_stride - 1) / config.scout_stride;
  const int64_t k = std::min(v, std::max<int64_t>(1, config.candidate_budget / scouts));
  const int64_t tile = std::min(kVocabTile, v);
  // Held across the parallel steps (see cpu_parallel.h).
  const SingleThreadedBlas single_threaded_blas;

  // One task per vocabulary tile keeps each scout's top min(k, tile) of the
  // tile in a heap with its worst entry in front; each scout's top k are then
  // picked from its tiles' survivors. Better is a strict order (ids are
  // unique), so the picks do not depend on the tiling.
  const int64_t tiles = (v + tile - 1) / tile;
  const int64_t kept = std::min(k, tile);
  std::vector<Scored> survivors(tiles * scouts * kept);
  std::vector<int64_t> survivor_count(tiles * scouts, 0);
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(tiles, [&](int64_t t, std::vector<float>& scores) {
    const int64_t v0 = t * tile, cols = std::min(tile, v - v0);
    scores.resize(scouts * tile);
    GemmDims dims;  // scores = H[0::s, :d_low] · W[tile, :d_low]ᵀ, scouts read in place.
    dims.m = scouts;
    dims.n = cols;
    dims.k = low;
    dims.transpose_b = true;
    dims.lda = scouts > 1 ? config.scout_stride * d : d;
    dims.ldb = d;
    MAXIMUS_RETURN_IF_ERROR(Gemm(dims, 1.0f, hidden, weight + v0 * d, 0.0f, scores.data()));
    for (int64_t r = 0; r < scouts; ++r) {
      Scored* heap = &survivors[(t * scouts + r) * kept];
      int64_t size = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const Scored entry{scores[r * cols + j], static_cast<int32_t>(v0 + j)};
        if (size < kept) {
          heap[size++] = entry;
          std::push_heap(heap, heap + size, Better);
        } else if (Better(entry, heap[0])) {
          std::pop_heap(heap, heap + size, Better);
          heap[size - 1] = entry;
          std::push_heap(heap, heap + size, Better);
        }
      }
      survivor_count[t * scouts + r] = size;
    }
    return absl::OkStatus();
  }));
  std::vector<std::vector<int32_t>> picks(scouts);
  MAXIMUS_RETURN_IF_ERROR(ParallelTasks(scouts, [&](int64_t r, std::vector<float>&) {
    std::vector<Scored> pool;
    for (int64_t t = 0; t < tiles; ++t) {
      const Scored* kept_of_tile = &survivors[(t * scouts + r) * kept];
      pool.insert(pool.end(), kept_of_tile, kept_of_tile + survivor_count[t * scouts + r]);
    }
    if (static_cast<int64_t>(pool.size()) > k) {
      std::nth_element(pool.begin(), pool.begin() + k, pool.end(), Better);
      pool.resize(k);
    }
    for (const Scored& entry : pool) picks[r].push_back(entry.id);
    return absl::OkStatus();
  }));
  std::vector<int32_t> candidates;
  candidates.reserve(scouts * k);
  for (const auto& ids : picks) candidates.insert(candidates.end(), ids.begin(), ids.end());
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  return candidates;
}

absl::StatusOr<MaxisResult> MaxisLossWithCandidates(const LinearHeadShape& shape,
                                                    const LinearHeadInputs& inputs,
                                                    const std::vector<int32_t>& candidates,
                                                    const MaxisConfig& config,
                                                    bool compute_gradients) {
  if (absl::Status status = ValidateLinearHeadInputs(shape, inputs); !status.ok()) return status;
  if (absl::Status status = ValidateMaxisConfig(shape, config); !status.ok()) return status;
  if (absl::Status status = ValidateCandidates(shape, config, candidates); !status.ok()) {
    return status;
  }
  const int64_t n = shape.tokens, d = shape.hidden;
  const int64_t c = static_cast<int64_t>(candidates.size());
  // Held across the parallel steps (see cpu_parallel.h).
  const SingleThreadedBlas single_threaded_blas;

  MaxisResult result;
  result.candidates = candidates;
  Work work;
  work.candidates = &candidates;
  int64_t unmasked = 0;
  for (int64_t i = 0; i < n; ++i) unmasked += Unmasked(inputs, i) ? 1 : 0;
  work.inv_count = 1.0 / static_cast<double>(std::max<int64_t>(1, unmasked));
  work.candidate_rows.resize(c * d);
  for (int64_t j = 0; j < c; ++j) {
    std::copy_n(inputs.weight + static_cast<int64_t>(candidates[j]) * d, d,
                &work.candidate_rows[j * d]);
  }
  work.logits.resize(n * c);
  float* grad_hidden = nullptr;
  if (compute_gradients) {
    result.grad_hidden.assign(n * d, 0.0f);
    grad_hidden = result.grad_hidden.data();
    work.grad_candidates.assign(c * d, 0.0f);
    work.grad_ids = candidates;
    for (int64_t i = 0; i < n; ++i) {
      if (Unmasked(inputs, i)) work.grad_ids.push_back(inputs.targets[i]);
    }
    std::sort(work.grad_ids.begin(), work.grad_ids.end());
    work.grad_ids.erase(std::unique(work.grad_ids.begin(), work.grad_ids.end()),
                        work.grad_ids.end());
    work.grad_rows.assign(work.grad_ids.size() * d, 0.0);
  }

  const double ghost_offset =
      config.use_ghost ? std::log(static_cast<double>(shape.vocab - c - 1)) : 0.0;
  double mean_norm = 0.0, mean_norm_low = 0.0;
  MAXIMUS_RETURN_IF_ERROR(
      MeanSquaredRowNorms(shape, inputs.weight, config.low_dim, &mean_norm, &mean_norm_low));
  const Part main{d, mean_norm, 1.0, ghost_offset};
  const Part aux{config.low_dim, mean_norm_low, config.aux_weight, ghost_offset};
  double main_sum = 0.0, aux_sum = 0.0;
  if (absl::Status status = AddPart(shape, inputs, config, main, work, &main_sum, grad_hidden);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = AddPart(shape, inputs, config, aux, work, &aux_sum, grad_hidden);
      !status.ok()) {
    return status;
  }
  result.main_loss = main_sum * work.inv_count;
  result.aux_loss = aux_sum * work.inv_count;
  result.loss = result.main_loss + config.aux_weight * result.aux_loss;
  if (!compute_gradients) return result;

  for (int64_t j = 0; j < c; ++j) {
    double* row = &work.grad_rows[IndexOf(work.grad_ids, candidates[j]) * d];
    for (int64_t p = 0; p < d; ++p) row[p] += work.grad_candidates[j * d + p];
  }
  result.grad_weight.ids = std::move(work.grad_ids);
  result.grad_weight.rows.assign(work.grad_rows.begin(), work.grad_rows.end());
  return result;
}

absl::StatusOr<MaxisResult> MaxisLoss(const LinearHeadShape& shape, const LinearHeadInputs& inputs,
                                      const MaxisConfig& config, bool compute_gradients) {
  if (absl::Status status = ValidateLinearHeadInputs(shape, inputs); !status.ok()) return status;
  absl::StatusOr<std::vector<int32_t>> candidates =
      MaxisCandidates(shape, inputs.hidden, inputs.weight, config);
  if (!candidates.ok()) return candidates.status();
  return MaxisLossWithCandidates(shape, inputs, *candidates, config, compute_gradients);
}

}  // namespace maximus::kernels
