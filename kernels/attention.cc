#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu_parallel.h"

namespace maximus::kernels {
namespace {

float Dot(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += alpha * x.
void Axpy(float alpha, const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

absl::Status ValidateAttentionShape(const AttentionShape& s) {
  if (s.batch < 0 || s.queries < 0 || s.query_offset < 0 || s.heads <= 0 || s.kv_heads <= 0 ||
      s.head_dim <= 0 || s.window < 0 || s.key_stride < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention shape has a bad size: batch ", s.batch, ", queries ", s.queries,
        ", query_offset ", s.query_offset, ", heads ", s.heads, ", kv_heads ", s.kv_heads,
        ", head_dim ", s.head_dim, ", window ", s.window, ", key_stride ", s.key_stride));
  }
  if (s.heads % s.kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention heads ", s.heads, " not a multiple of kv_heads ", s.kv_heads));
  }
  if (s.KeyStride() < s.keys()) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention key_stride ", s.KeyStride(), " < keys ", s.keys()));
  }
  return absl::OkStatus();
}

absl::Status CausalAttention(const AttentionShape& s, const float* q, const float* k,
                             const float* v, float* out, float* lse) {
  if (absl::Status status = ValidateAttentionShape(s); !status.ok()) return status;
  const int64_t keys = s.keys(), hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_row = s.heads * hd, kv_row = s.kv_heads * hd;
  // One task per (sequence, head, query): every row is independent.
  ParallelRanges(s.batch * s.heads * s.queries, 4, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // Grows once; decoding allocates nothing.
    if (static_cast<int64_t>(scores.size()) < keys) scores.resize(keys);
    float* row = scores.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task % s.queries, h = (task / s.queries) % s.heads,
                    b = task / (s.queries * s.heads), g = h / group;
      const float* qi = q + (b * s.queries + i) * q_row + h * hd;
      const float* kb = k + b * s.KeyStride() * kv_row + g * hd;
      const float* vb = v + b * s.KeyStride() * kv_row + g * hd;
      const int64_t position = s.query_offset + i;
      const int64_t first = s.FirstVisibleKey(position);
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t j = first; j <= position; ++j) {
        row[j] = s.scale * Dot(qi, kb + j * kv_row, hd);
        max = std::max(max, row[j]);
      }
      double sum = 0;
      for (int64_t j = first; j <= position; ++j) {
        row[j] = std::exp(row[j] - max);
        sum += row[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + (b * s.queries + i) * q_row + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = first; j <= position; ++j) Axpy(row[j] * inv, vb + j * kv_row, hd, o);
      // task is (b * heads + h) * queries + i: lse's layout.
      if (lse != nullptr) lse[task] = max + static_cast<float>(std::log(sum));
    }
  });
  return absl::OkStatus();
}

absl::Status CausalAttentionBackward(const AttentionShape& s, const float* q, const float* k,
                                     const float* v, const float* out, const float* lse,
                                     const float* dout, float* dq, float* dk, float* dv) {
  if (absl::Status status = ValidateAttentionShape(s); !status.ok()) return status;
  if (s.query_offset != 0) {
    return absl::InvalidArgumentError("attention backward needs query_offset 0");
  }
  const int64_t keys = s.keys(), hd = s.head_dim, group = s.heads / s.kv_heads;
  const int64_t q_row = s.heads * hd, kv_row = s.kv_heads * hd,
                rows = s.batch * s.heads * s.queries;
  // With P = softmax row by row and dP = dO Vᵀ: dS = scale · P ⊙ (dP − delta),
  // delta_i = Σ_j P_ij dP_ij = dO_i · O_i; dQ = dS K, dK = dSᵀ Q, dV = Pᵀ dO.
  std::vector<float> delta(rows);
  ParallelRanges(rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task % s.queries, h = (task / s.queries) % s.heads,
                    b = task / (s.queries * s.heads);
      const int64_t at = (b * s.queries + i) * q_row + h * hd;
      double sum = 0;
      for (int64_t c = 0; c < hd; ++c) sum += double{dout[at + c]} * out[at + c];
      delta[task] = static_cast<float>(sum);
    }
  });
  // P_ij and dS_ij, recomputed from lse wherever they are needed.
  auto p_and_ds = [&](const float* qi, const float* doi, const float* kj, const float* vj,
                      int64_t row, float* ds) {
    const float p = std::exp(s.scale * Dot(qi, kj, hd) - lse[row]);
    *ds = s.scale * p * (Dot(doi, vj, hd) - delta[row]);
    return p;
  };
  // dQ, one task per (sequence, head, query).
  ParallelRanges(rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task % s.queries, h = (task / s.queries) % s.heads,
                    b = task / (s.queries * s.heads), g = h / group;
      const int64_t at = (b * s.queries + i) * q_row + h * hd;
      const float* kb = k + b * s.KeyStride() * kv_row + g * hd;
      const float* vb = v + b * s.KeyStride() * kv_row + g * hd;
      float* dqi = dq + at;
      std::fill(dqi, dqi + hd, 0.0f);
      for (int64_t j = s.FirstVisibleKey(i); j <= i; ++j) {
        float ds;
        p_and_ds(q + at, dout + at, kb + j * kv_row, vb + j * kv_row, task, &ds);
        Axpy(ds, kb + j * kv_row, hd, dqi);
      }
    }
  });
  // dK[j] = Σ_h Σ_i dS[h, i, j] q[i, h] and dV[j] = Σ_h Σ_i P[h, i, j] dO[i, h]
  // over the heads h of j's group, one task per (sequence, KV head, key).
  ParallelRanges(s.batch * s.kv_heads * keys, 4, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t j = task % keys, g = (task / keys) % s.kv_heads, b = task / (keys * s.kv_heads);
      const int64_t kv_at = (b * s.KeyStride() + j) * kv_row + g * hd;
      float* dkj = dk + kv_at;
      float* dvj = dv + kv_at;
      std::fill(dkj, dkj + hd, 0.0f);
      std::fill(dvj, dvj + hd, 0.0f);
      const int64_t last = s.window > 0 ? std::min(s.queries, j + s.window) : s.queries;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const int64_t head_rows = (b * s.heads + h) * s.queries;
        for (int64_t i = j; i < last; ++i) {
          const int64_t at = (b * s.queries + i) * q_row + h * hd;
          float ds;
          const float p = p_and_ds(q + at, dout + at, k + kv_at, v + kv_at, head_rows + i, &ds);
          Axpy(ds, q + at, hd, dkj);
          Axpy(p, dout + at, hd, dvj);
        }
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace maximus::kernels
