#include "trainer/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/random.h"
#include "base/thread_pool.h"

namespace maximus::trainer {
namespace {

class HostBuffer : public Buffer {
 public:
  explicit HostBuffer(int64_t n) : data_(static_cast<size_t>(n), 0.0f) {}
  float* data() override { return data_.data(); }
  const float* data() const override { return data_.data(); }
  int64_t size() const override { return static_cast<int64_t>(data_.size()); }

 private:
  std::vector<float> data_;
};

// Calls fn(begin, end) over [0, n) in contiguous blocks on the shared pool;
// the split depends only on n and the pool size.
template <typename Fn>
void ParallelRanges(int64_t n, int64_t min_block, Fn&& fn) {
  base::ThreadPool& pool = base::ThreadPool::Shared();
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(pool.size(), n / min_block));
  if (blocks == 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool.ParallelFor(blocks, static_cast<int>(blocks), [&](size_t b) {
    const int64_t begin = n * static_cast<int64_t>(b) / blocks;
    const int64_t end = n * static_cast<int64_t>(b + 1) / blocks;
    fn(begin, end);
  });
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

std::unique_ptr<Buffer> CpuBackend::Allocate(int64_t n) { return std::make_unique<HostBuffer>(n); }

void CpuBackend::CopyToHost(const float* src, int64_t n, float* host) {
  std::memcpy(host, src, n * sizeof(float));
}

void CpuBackend::CopyFromHost(const float* host, int64_t n, float* dst) {
  std::memcpy(dst, host, n * sizeof(float));
}

void CpuBackend::Fill(float* x, int64_t n, float value) { std::fill(x, x + n, value); }

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
  return kernels::Gemm(dims, alpha, a, b, beta, c);
}

void CpuBackend::Embed(absl::Span<const int32_t> ids, const float* table, int64_t d, float scale,
                       float* out) {
  const int64_t n = static_cast<int64_t>(ids.size());
  ParallelRanges(n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = table + static_cast<int64_t>(ids[i]) * d;
      for (int64_t j = 0; j < d; ++j) out[i * d + j] = scale * row[j];
    }
  });
}

void CpuBackend::EmbedBackward(absl::Span<const int32_t> ids, const float* dout, int64_t d,
                               float scale, float* dtable) {
  // Sequential: repeated ids add into the same row.
  for (size_t i = 0; i < ids.size(); ++i) {
    float* row = dtable + static_cast<int64_t>(ids[i]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += scale * dout[i * d + j];
  }
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

void CpuBackend::CausalAttention(const AttentionShape& s, const float* q, const float* k,
                                 const float* v, float* out, float* probs) {
  const int64_t keys = s.keys();
  const int64_t group = s.heads / s.kv_heads;
  std::vector<float> scratch;
  if (probs == nullptr) scratch.resize(s.queries * keys);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / group;
      const float* qh = q + (b * s.queries * s.heads + h) * s.head_dim;
      const float* kh = k + (b * s.KeyStride() * s.kv_heads + g) * s.head_dim;
      const float* vh = v + (b * s.KeyStride() * s.kv_heads + g) * s.head_dim;
      float* p = probs != nullptr ? probs + (b * s.heads + h) * s.queries * keys : scratch.data();
      kernels::GemmDims scores;  // P = scale · Q Kᵀ
      scores.m = s.queries;
      scores.n = keys;
      scores.k = s.head_dim;
      scores.transpose_b = true;
      scores.lda = s.heads * s.head_dim;
      scores.ldb = s.kv_heads * s.head_dim;
      kernels::Gemm(scores, s.scale, qh, kh, 0.0f, p).IgnoreError();
      ParallelRanges(s.queries, 8, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          float* row = p + i * keys;
          const int64_t visible = s.query_offset + i + 1;
          float max = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j < visible; ++j) max = std::max(max, row[j]);
          double sum = 0;
          for (int64_t j = 0; j < visible; ++j) {
            row[j] = std::exp(row[j] - max);
            sum += row[j];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
          for (int64_t j = visible; j < keys; ++j) row[j] = 0.0f;
        }
      });
      kernels::GemmDims mix;  // O = P V
      mix.m = s.queries;
      mix.n = s.head_dim;
      mix.k = keys;
      mix.ldb = s.kv_heads * s.head_dim;
      mix.ldc = s.heads * s.head_dim;
      kernels::Gemm(mix, 1.0f, p, vh, 0.0f, out + (b * s.queries * s.heads + h) * s.head_dim)
          .IgnoreError();
    }
  }
}

void CpuBackend::CausalAttentionBackward(const AttentionShape& s, const float* q, const float* k,
                                         const float* v, const float* probs, const float* dout,
                                         float* dq, float* dk, float* dv) {
  const int64_t keys = s.keys();
  const int64_t group = s.heads / s.kv_heads;
  std::fill(dk, dk + s.batch * s.KeyStride() * s.kv_heads * s.head_dim, 0.0f);
  std::fill(dv, dv + s.batch * s.KeyStride() * s.kv_heads * s.head_dim, 0.0f);
  std::vector<float> ds(s.queries * keys);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / group;
      const int64_t q_offset = (b * s.queries * s.heads + h) * s.head_dim;
      const int64_t kv_offset = (b * s.KeyStride() * s.kv_heads + g) * s.head_dim;
      const float* p = probs + (b * s.heads + h) * s.queries * keys;
      kernels::GemmDims dp;  // dP = dO Vᵀ
      dp.m = s.queries;
      dp.n = keys;
      dp.k = s.head_dim;
      dp.transpose_b = true;
      dp.lda = s.heads * s.head_dim;
      dp.ldb = s.kv_heads * s.head_dim;
      kernels::Gemm(dp, 1.0f, dout + q_offset, v + kv_offset, 0.0f, ds.data()).IgnoreError();
      // dS = scale · P ⊙ (dP − Σ_j P dP), row by row.
      ParallelRanges(s.queries, 8, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          float* row = ds.data() + i * keys;
          const float* prow = p + i * keys;
          double dot = 0;
          for (int64_t j = 0; j < keys; ++j) dot += double{prow[j]} * row[j];
          for (int64_t j = 0; j < keys; ++j) {
            row[j] = s.scale * prow[j] * (row[j] - static_cast<float>(dot));
          }
        }
      });
      kernels::GemmDims dq_dims;  // dQ = dS K
      dq_dims.m = s.queries;
      dq_dims.n = s.head_dim;
      dq_dims.k = keys;
      dq_dims.ldb = s.kv_heads * s.head_dim;
      dq_dims.ldc = s.heads * s.head_dim;
      kernels::Gemm(dq_dims, 1.0f, ds.data(), k + kv_offset, 0.0f, dq + q_offset).IgnoreError();
      // dK += dSᵀ Q and dV += Pᵀ dO: the same shapes.
      kernels::GemmDims dkv;
      dkv.m = keys;
      dkv.n = s.head_dim;
      dkv.k = s.queries;
      dkv.transpose_a = true;
      dkv.lda = keys;
      dkv.ldb = s.heads * s.head_dim;
      dkv.ldc = s.kv_heads * s.head_dim;
      kernels::Gemm(dkv, 1.0f, ds.data(), q + q_offset, 1.0f, dk + kv_offset).IgnoreError();
      kernels::Gemm(dkv, 1.0f, p, dout + q_offset, 1.0f, dv + kv_offset).IgnoreError();
    }
  }
}

void CpuBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  ParallelRanges(n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = gate[i] * Sigmoid(gate[i]) * up[i];
  });
}

void CpuBackend::SwiGluBackward(const float* gate, const float* up, const float* dout, int64_t n,
                                float* dgate, float* dup) {
  ParallelRanges(n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float sig = Sigmoid(gate[i]);
      const float silu = gate[i] * sig;
      dup[i] = dout[i] * silu;
      dgate[i] = dout[i] * up[i] * sig * (1.0f + gate[i] * (1.0f - sig));
    }
  });
}

void CpuBackend::Add(const float* a, const float* b, int64_t n, float* out) {
  ParallelRanges(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
  });
}

absl::StatusOr<LossOutput> CpuBackend::Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                            const float* hidden, const float* weight,
                                            absl::Span<const int32_t> targets,
                                            absl::Span<const uint8_t> loss_mask,
                                            const kernels::MaxisConfig& maxis, bool gradients,
                                            float* grad_hidden, float* grad_weight) {
  kernels::LinearHeadInputs inputs;
  inputs.hidden = hidden;
  inputs.weight = weight;
  inputs.targets = targets.data();
  inputs.loss_mask = loss_mask.empty() ? nullptr : loss_mask.data();
  LossOutput output;
  for (int64_t i = 0; i < shape.tokens; ++i)
    output.counted_tokens += loss_mask.empty() || loss_mask[i];
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
  }
  return output;
}

absl::StatusOr<std::vector<float>> CpuBackend::TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                             const float* hidden,
                                                             const float* weight,
                                                             absl::Span<const int32_t> targets) {
  kernels::LinearHeadInputs inputs;
  inputs.hidden = hidden;
  inputs.weight = weight;
  inputs.targets = targets.data();
  absl::StatusOr<kernels::CrossEntropyResult> result =
      kernels::LinearCrossEntropy(shape, inputs, /*compute_gradients=*/false);
  if (!result.ok()) return result.status();
  std::vector<float> logprobs(result->token_loss.size());
  for (size_t i = 0; i < logprobs.size(); ++i) logprobs[i] = -result->token_loss[i];
  return logprobs;
}

absl::StatusOr<std::vector<float>> CpuBackend::Logits(int64_t rows, int64_t d, int64_t vocab,
                                                      const float* hidden, const float* weight) {
  std::vector<float> logits(rows * vocab);
  kernels::GemmDims dims;
  dims.m = rows;
  dims.n = vocab;
  dims.k = d;
  dims.transpose_b = true;
  if (absl::Status s = kernels::Gemm(dims, 1.0f, hidden, weight, 0.0f, logits.data()); !s.ok()) {
    return s;
  }
  return logits;
}

double CpuBackend::SquaredNorm(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double{x[i]} * x[i];
  return sum;
}

void CpuBackend::Scale(float* x, int64_t n, float factor) {
  ParallelRanges(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] *= factor;
  });
}

void CpuBackend::AdamW(const AdamWConfig& config, int64_t step, float lr, float weight_decay_scale,
                       int64_t n, float* param, const float* grad, float* m, float* v) {
  AdamWUpdate(config, step, lr, weight_decay_scale, n, param, grad, m, v);
}

}  // namespace maximus::trainer
