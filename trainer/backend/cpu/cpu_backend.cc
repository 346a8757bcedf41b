#include "trainer/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/cpu_parallel.h"
#include "kernels/gated_activation.h"
#include "kernels/importance_scorer.h"
#include "kernels/randnla_attention.h"
#include "kernels/random.h"

namespace maximus::trainer {
namespace {

class HostBuffer : public Buffer {
 public:
  HostBuffer(int64_t n, DType dtype)
      : dtype_(dtype), size_(n), bytes_(static_cast<size_t>(n * DTypeBytes(dtype)), 0) {}
  DType dtype() const override { return dtype_; }
  int64_t size() const override { return size_; }
  void* raw() override { return bytes_.data(); }
  const void* raw() const override { return bytes_.data(); }

 private:
  DType dtype_;
  int64_t size_;
  // 4-byte aligned by the allocator (operator new aligns to at least 16).
  std::vector<unsigned char> bytes_;
};

// The log-sum-exp of each query row, [batch, heads, queries]: all the
// backward needs besides the forward's inputs and output.
class CpuAttentionState : public AttentionState {
 public:
  explicit CpuAttentionState(int64_t n) : lse(n) {}
  std::vector<float> lse;
};

// What RandNLA attention's backward needs (kernels/randnla_attention.h).
class CpuRandnlaState : public AttentionState {
 public:
  kernels::RandnlaSaved<float> saved;
};

using kernels::ParallelRanges;

}  // namespace

std::unique_ptr<Buffer> CpuBackend::Allocate(int64_t n, DType dtype) {
  return std::make_unique<HostBuffer>(n, dtype);
}

absl::StatusOr<DeviceBatch> CpuBackend::UploadBatch(const TokenBatch& batch) {
  const int64_t n = batch.rows * batch.seq;
  if (batch.rows <= 0 || batch.seq <= 0 || static_cast<int64_t>(batch.inputs.size()) != n ||
      static_cast<int64_t>(batch.targets.size()) != n ||
      (!batch.loss_mask.empty() && static_cast<int64_t>(batch.loss_mask.size()) != n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed token batch: ", batch.rows, " x ", batch.seq, " with ", batch.inputs.size(),
        " inputs, ", batch.targets.size(), " targets, ", batch.loss_mask.size(), " mask values"));
  }
  inputs_.assign(batch.inputs.begin(), batch.inputs.end());
  targets_.assign(batch.targets.begin(), batch.targets.end());
  loss_mask_.assign(batch.loss_mask.begin(), batch.loss_mask.end());
  DeviceBatch device;
  device.rows = batch.rows;
  device.seq = batch.seq;
  device.inputs = inputs_.data();
  device.targets = targets_.data();
  device.loss_mask = loss_mask_.empty() ? nullptr : loss_mask_.data();
  return device;
}

void CpuBackend::CopyToHost(const float* src, int64_t n, float* host) {
  std::memcpy(host, src, n * sizeof(float));
}

void CpuBackend::CopyFromHost(const float* host, int64_t n, float* dst) {
  std::memcpy(dst, host, n * sizeof(float));
}

void CpuBackend::Fill(float* x, int64_t n, float value) {
  ParallelRanges(n, 1 << 16,
                 [&](int64_t begin, int64_t end) { std::fill(x + begin, x + end, value); });
}

void CpuBackend::Copy(const float* src, int64_t n, float* dst) {
  std::memcpy(dst, src, n * sizeof(float));
}

void CpuBackend::FillNormal(float* x, int64_t n, uint64_t seed, float stddev) {
  ParallelRanges(n, 1 << 16, [&](int64_t begin, int64_t end) {
    kernels::FillNormal(x + begin, end - begin, seed, stddev, static_cast<uint64_t>(begin));
  });
}

absl::Status CpuBackend::Gemm(const kernels::GemmDims& dims, float alpha, const float* a,
                              const float* b, float beta, float* c) {
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateGemmDims(dims));
  // Tiles of C of a fixed size, one single-threaded BLAS call each on the
  // pool: every core busy (a 512 x 1024 product is 32 tiles) without
  // OpenBLAS's own threads competing with the pool's, and the same bits for
  // any thread count.
  constexpr int64_t kTileRows = 64, kTileColumns = 256;
  const int64_t row_tiles = (dims.m + kTileRows - 1) / kTileRows;
  const int64_t column_tiles = (dims.n + kTileColumns - 1) / kTileColumns;
  if (row_tiles * column_tiles < 2) return kernels::Gemm(dims, alpha, a, b, beta, c);
  const int64_t lda = dims.LeadingA(), ldb = dims.LeadingB(), ldc = dims.LeadingC();
  return kernels::ParallelTasks(row_tiles * column_tiles, [&](int64_t task, std::vector<float>&) {
    const int64_t row = task / column_tiles * kTileRows;
    const int64_t column = task % column_tiles * kTileColumns;
    kernels::GemmDims tile = dims;
    tile.m = std::min(kTileRows, dims.m - row);
    tile.n = std::min(kTileColumns, dims.n - column);
    tile.lda = lda;
    tile.ldb = ldb;
    tile.ldc = ldc;
    const float* tile_a = dims.transpose_a ? a + row : a + row * lda;
    const float* tile_b = dims.transpose_b ? b + column * ldb : b + column;
    return kernels::Gemm(tile, alpha, tile_a, tile_b, beta, c + row * ldc + column);
  });
}

void CpuBackend::Embed(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
                       float* out) {
  ParallelRanges(n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = table + static_cast<int64_t>(ids[i]) * d;
      for (int64_t j = 0; j < d; ++j) out[i * d + j] = scale * row[j];
    }
  });
}

void CpuBackend::EmbedBackward(const int32_t* ids, int64_t n, const float* dout, int64_t d,
                               float scale, float* dtable) {
  // Split by column ranges: each thread owns some columns of every row, so
  // repeated ids add into the same row in token order, without races.
  ParallelRanges(d, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < n; ++i) {
      float* row = dtable + static_cast<int64_t>(ids[i]) * d;
      for (int64_t j = begin; j < end; ++j) row[j] += scale * dout[i * d + j];
    }
  });
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int64_t rows, int64_t d, float eps,
                         float* out, float* rstd) {
  ParallelRanges(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * d;
      double sum = 0;
      for (int64_t j = 0; j < d; ++j) sum += double{xr[j]} * xr[j];
      const float s = static_cast<float>(1.0 / std::sqrt(sum / d + eps));
      rstd[r] = s;
      for (int64_t j = 0; j < d; ++j) out[r * d + j] = xr[j] * s * (1.0f + weight[j]);
    }
  });
}

void CpuBackend::RmsNormBackward(const float* x, const float* weight, const float* rstd,
                                 const float* dout, int64_t rows, int64_t d, float* dx,
                                 float* dweight) {
  ParallelRanges(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * d;
      const float* dy = dout + r * d;
      const float s = rstd[r];
      double dot = 0;  // Σ dy (1 + w) x
      for (int64_t j = 0; j < d; ++j) dot += double{dy[j]} * (1.0f + weight[j]) * xr[j];
      const float c = static_cast<float>(dot) * s * s * s / static_cast<float>(d);
      for (int64_t j = 0; j < d; ++j) dx[r * d + j] = s * (1.0f + weight[j]) * dy[j] - c * xr[j];
    }
  });
  // The weight gradient sums over rows: per-thread partial sums, added in a
  // fixed order, so the result does not depend on scheduling.
  base::ThreadPool& pool = base::ThreadPool::Shared();
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(pool.size(), rows / 64));
  std::vector<double> partial(blocks * d, 0.0);
  pool.ParallelFor(blocks, static_cast<int>(blocks), [&](size_t b) {
    const int64_t begin = rows * static_cast<int64_t>(b) / blocks;
    const int64_t end = rows * static_cast<int64_t>(b + 1) / blocks;
    double* acc = partial.data() + b * d;
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t j = 0; j < d; ++j) acc[j] += double{dout[r * d + j]} * x[r * d + j] * rstd[r];
    }
  });
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t j = 0; j < d; ++j) dweight[j] += static_cast<float>(partial[b * d + j]);
  }
}

void CpuBackend::Rope(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                      int64_t position_offset, float theta, bool inverse) {
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
  }
  const double sign = inverse ? -1.0 : 1.0;
  ParallelRanges(batch * seq, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_t(half), sin_t(half);
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t pos = position_offset + bt % seq;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = sign * pos * inv_freq[i];
        cos_t[i] = static_cast<float>(std::cos(angle));
        sin_t[i] = static_cast<float>(std::sin(angle));
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + (bt * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i];
          const float b = v[i + half];
          v[i] = a * cos_t[i] - b * sin_t[i];
          v[i + half] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  });
}

std::unique_ptr<AttentionState> CpuBackend::NewAttentionState(const AttentionShape& s) {
  return std::make_unique<CpuAttentionState>(s.batch * s.heads * s.queries);
}

absl::Status CpuBackend::CausalAttention(const AttentionShape& s, const float* q, const float* k,
                                         const float* v, float* out, AttentionState* state) {
  float* lse = state != nullptr ? static_cast<CpuAttentionState*>(state)->lse.data() : nullptr;
  return kernels::CausalAttention(s, q, k, v, out, lse);
}

absl::Status CpuBackend::CausalAttentionBackward(const AttentionShape& s, const float* q,
                                                 const float* k, const float* v, const float* out,
                                                 const AttentionState& state, const float* dout,
                                                 float* dq, float* dk, float* dv) {
  const float* lse = static_cast<const CpuAttentionState&>(state).lse.data();
  return kernels::CausalAttentionBackward(s, q, k, v, out, lse, dout, dq, dk, dv);
}

absl::Status CpuBackend::ImportanceScores(const kernels::ImportanceScorerWeights<float>& weights,
                                          int64_t rows, const float* x, float* scores) {
  return kernels::ImportanceScores(weights, rows, x, scores);
}

absl::Status CpuBackend::ImportanceScoresBackward(
    const kernels::ImportanceScorerWeights<float>& weights, int64_t rows, const float* x,
    const float* dscores, float* dx, const kernels::ImportanceScorerGrads<float>& grads) {
  return kernels::ImportanceScoresBackward(weights, rows, x, dscores, dx, grads);
}

std::unique_ptr<AttentionState> CpuBackend::NewRandnlaAttentionState(const RandnlaShape&) {
  return std::make_unique<CpuRandnlaState>();  // sized by each forward
}

absl::Status CpuBackend::RandnlaAttention(const RandnlaShape& shape, const float* q, const float* k,
                                          const float* v, const float* scores,
                                          const kernels::SketchFactors<float>& sketch, float* out,
                                          AttentionState* state) {
  kernels::RandnlaSaved<float>* saved =
      state != nullptr ? &static_cast<CpuRandnlaState*>(state)->saved : nullptr;
  return kernels::RandnlaAttention(shape, q, k, v, scores, sketch, out, saved, nullptr);
}

absl::Status CpuBackend::RandnlaAttentionBackward(
    const RandnlaShape& shape, const float* q, const float* k, const float* v, const float* scores,
    const kernels::SketchFactors<float>& sketch, const float* out, const AttentionState& state,
    const float* dout, float* dq, float* dk, float* dv, float* dscores,
    const kernels::SketchFactorGrads<float>& grads) {
  return kernels::RandnlaAttentionBackward(shape, q, k, v, scores, sketch, out,
                                           static_cast<const CpuRandnlaState&>(state).saved, dout,
                                           dq, dk, dv, dscores, grads);
}

void CpuBackend::GatedActivation(kernels::Activation activation, const float* gate, const float* up,
                                 int64_t n, float* out) {
  ParallelRanges(n, 4096, [&](int64_t begin, int64_t end) {
    kernels::GatedActivation(activation, gate, up, begin, end, out);
  });
}

void CpuBackend::GatedActivationBackward(kernels::Activation activation, const float* gate,
                                         const float* up, const float* dout, int64_t n,
                                         float* dgate, float* dup) {
  ParallelRanges(n, 4096, [&](int64_t begin, int64_t end) {
    kernels::GatedActivationBackward(activation, gate, up, dout, begin, end, dgate, dup);
  });
}

void CpuBackend::Add(const float* a, const float* b, int64_t n, float* out) {
  ParallelRanges(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  });
}

absl::StatusOr<LossOutput> CpuBackend::Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                            const float* hidden, const float* weight,
                                            const DeviceBatch& batch,
                                            const kernels::MaxisConfig& maxis, bool gradients,
                                            float* grad_hidden, float* grad_weight) {
  kernels::LinearHeadInputs inputs;
  inputs.hidden = hidden;
  inputs.weight = weight;
  inputs.targets = batch.targets;
  inputs.loss_mask = batch.loss_mask;
  LossOutput output;
  for (int64_t i = 0; i < shape.tokens; ++i)
    output.counted_tokens += batch.loss_mask == nullptr || batch.loss_mask[i];
  const int64_t d = shape.hidden;
  if (kind == LossKind::kMaxis) {
    absl::StatusOr<kernels::MaxisResult> result =
        kernels::MaxisLoss(shape, inputs, maxis, gradients);
    if (!result.ok()) return result.status();
    output.loss = result->loss;
    output.main_loss = result->main_loss;
    if (gradients) {
      std::memcpy(grad_hidden, result->grad_hidden.data(), shape.tokens * d * sizeof(float));
      const kernels::SparseRows& rows = result->grad_weight;
      for (size_t r = 0; r < rows.ids.size(); ++r) {
        float* dst = grad_weight + static_cast<int64_t>(rows.ids[r]) * d;
        const float* src = rows.rows.data() + r * d;
        for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
      }
      output.embedding_grad_rows = rows.ids;
    }
    return output;
  }
  absl::StatusOr<kernels::CrossEntropyResult> result =
      kernels::LinearCrossEntropy(shape, inputs, gradients);
  if (!result.ok()) return result.status();
  output.loss = result->loss;
  output.main_loss = result->loss;
  if (gradients) {
    std::memcpy(grad_hidden, result->grad_hidden.data(), shape.tokens * d * sizeof(float));
    Add(grad_weight, result->grad_weight.data(), shape.vocab * d, grad_weight);
    output.embedding_grad_dense = true;
  }
  return output;
}

absl::StatusOr<std::vector<float>> CpuBackend::TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                             const float* hidden,
                                                             const float* weight,
                                                             const DeviceBatch& batch) {
  kernels::LinearHeadInputs inputs;
  inputs.hidden = hidden;
  inputs.weight = weight;
  inputs.targets = batch.targets;
  absl::StatusOr<kernels::CrossEntropyResult> result =
      kernels::LinearCrossEntropy(shape, inputs, /*compute_gradients=*/false);
  if (!result.ok()) return result.status();
  std::vector<float> logprobs(result->token_loss.size());
  for (size_t i = 0; i < logprobs.size(); ++i) logprobs[i] = -result->token_loss[i];
  return logprobs;
}

absl::Status CpuBackend::Logits(int64_t rows, int64_t d, int64_t vocab, const float* hidden,
                                const float* weight, float* host) {
  kernels::GemmDims dims;
  dims.m = rows;
  dims.n = vocab;
  dims.k = d;
  dims.transpose_b = true;
  return kernels::Gemm(dims, 1.0f, hidden, weight, 0.0f, host);
}

absl::StatusOr<double> CpuBackend::OptimizerUpdate(const OptimizerStep& step,
                                                   ParameterArena& arena) {
  float* grads = arena.grads().data();
  const int64_t n = arena.size();
  if (step.grad_scale != 1.0f) {
    ParallelRanges(n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) grads[i] *= step.grad_scale;
    });
  }
  const std::pair<float*, int64_t> all[] = {{grads, n}};
  const double norm = ClipGradientNorm(all, step.clip_norm);
  if (!std::isfinite(norm)) return norm;
  MAXIMUS_ASSIGN_OR_RETURN(const UpdateRange range, UpdateRangeOf(step, arena));
  float* values = arena.values().data();
  // The moments start at the arena's moment_begin().
  float* m = arena.m().data() - arena.moment_begin();
  float* v = arena.v().data() - arena.moment_begin();
  // Runs of segments that share a weight-decay setting, one update each,
  // cut to the range.
  const std::vector<ParameterArena::Segment>& segments = arena.segments();
  for (size_t first = 0; first < segments.size();) {
    size_t last = first;
    while (last + 1 < segments.size() && segments[last + 1].decay == segments[first].decay) ++last;
    const int64_t begin = std::max(segments[first].offset, range.begin);
    const int64_t end = std::min(segments[last].offset + segments[last].size, range.end);
    if (begin < end) {
      AdamWUpdate(step.adamw, step.step, step.lr, segments[first].decay ? 1.0f : 0.0f, end - begin,
                  values + begin, grads + begin, m + begin, v + begin);
    }
    first = last + 1;
  }
  return norm;
}

}  // namespace maximus::trainer
