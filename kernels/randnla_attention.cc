#include "kernels/randnla_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/cpu_parallel.h"

namespace maximus::kernels {
namespace {

// The largest divisor of n not above its square root.
int64_t OuterFactor(int64_t n) {
  int64_t best = 1;
  for (int64_t f = 1; f * f <= n; ++f) {
    if (n % f == 0) best = f;
  }
  return best;
}

template <typename T>
T Dot(const T* a, const T* b, int64_t n) {
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += alpha * x.
template <typename T>
void Axpy(T alpha, const T* x, int64_t n, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename T>
T Sigmoid(T x) {
  return T{1} / (T{1} + std::exp(-x));
}

// Φ = time_outer ⊗ time_inner as a dense [sketch, block] matrix: row
// s = s1 · sketch_inner + s2, column τ = l1 · block_inner + l2.
template <typename T>
std::vector<T> SketchMatrix(const RandnlaConfig& c, const SketchFactors<T>& f) {
  const SketchFactorShape fs = SketchFactorsOf(c);
  std::vector<T> phi(c.sketch * c.block);
  for (int64_t s1 = 0; s1 < fs.sketch_outer; ++s1) {
    for (int64_t s2 = 0; s2 < fs.sketch_inner; ++s2) {
      for (int64_t l1 = 0; l1 < fs.block_outer; ++l1) {
        for (int64_t l2 = 0; l2 < fs.block_inner; ++l2) {
          phi[(s1 * fs.sketch_inner + s2) * c.block + l1 * fs.block_inner + l2] =
              f.time_outer[s1 * fs.block_outer + l1] * f.time_inner[s2 * fs.block_inner + l2];
        }
      }
    }
  }
  return phi;
}

// Strides of the layouts of one call.
struct Layout {
  int64_t hd, group, q_row, kv_row, key_stride, blocks, block, detail, sketch;
  explicit Layout(const RandnlaShape& s)
      : hd(s.attention.head_dim),
        group(s.attention.heads / s.attention.kv_heads),
        q_row(s.attention.heads * s.attention.head_dim),
        kv_row(s.attention.kv_heads * s.attention.head_dim),
        key_stride(s.attention.KeyStride()),
        blocks(s.Blocks()),
        block(s.config.block),
        detail(s.config.detail),
        sketch(s.config.sketch) {}
  // [batch, blocks, detail]
  int64_t DetailAt(int64_t b, int64_t blk) const { return (b * blocks + blk) * detail; }
  // [batch, blocks, kv_heads, sketch, head_dim]
  int64_t SketchAt(const AttentionShape& a, int64_t b, int64_t blk, int64_t g) const {
    return ((b * blocks + blk) * a.kv_heads + g) * sketch * hd;
  }
};

// Calls fn(j) for every exact key of the query at `position` of sequence b:
// its own block up to itself, then the block's detail positions.
template <typename Fn>
void ForEachExactKey(const Layout& l, const int32_t* detail, int64_t b, int64_t position, Fn&& fn) {
  const int64_t blk = position / l.block;
  for (int64_t j = blk * l.block; j <= position; ++j) fn(j);
  const int32_t* chosen = detail + l.DetailAt(b, blk);
  for (int64_t d = 0; d < l.detail && chosen[d] >= 0; ++d) fn(int64_t{chosen[d]});
}

// The running top-`detail` by score among blocks before each block, into
// saved->detail. A token ranks above another by higher score, then by
// earlier position, so the choice is a function of the past alone.
template <typename T>
void ChooseDetail(const RandnlaShape& s, const Layout& l, const T* scores,
                  std::vector<int32_t>* detail) {
  detail->assign(s.attention.batch * l.blocks * l.detail, -1);
  if (l.detail == 0) return;
  ParallelRanges(s.attention.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<T, int32_t>> kept;
    auto better = [](const std::pair<T, int32_t>& x, const std::pair<T, int32_t>& y) {
      return x.first > y.first || (x.first == y.first && x.second < y.second);
    };
    for (int64_t b = begin; b < end; ++b) {
      const T* row = scores + b * l.key_stride;
      kept.clear();
      for (int64_t blk = 1; blk < l.blocks; ++blk) {
        for (int64_t t = (blk - 1) * l.block; t < blk * l.block; ++t) {
          kept.emplace_back(row[t], static_cast<int32_t>(t));
        }
        if (static_cast<int64_t>(kept.size()) > l.detail) {
          std::nth_element(kept.begin(), kept.begin() + l.detail, kept.end(), better);
          kept.resize(l.detail);
        }
        int32_t* out = detail->data() + l.DetailAt(b, blk);
        for (size_t d = 0; d < kept.size(); ++d) out[d] = kept[d].second;
        std::sort(out, out + kept.size());
      }
    }
  });
}

}  // namespace

SketchFactorShape SketchFactorsOf(const RandnlaConfig& c) {
  SketchFactorShape f;
  f.block_outer = OuterFactor(c.block);
  f.block_inner = c.block / f.block_outer;
  f.sketch_outer = OuterFactor(c.sketch);
  f.sketch_inner = c.sketch / f.sketch_outer;
  return f;
}

absl::Status ValidateRandnlaConfig(const RandnlaConfig& c) {
  if (c.block < 1 || c.detail < 0 || c.sketch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("RandNLA sizes must be positive: block ",
                                                   c.block, ", detail ", c.detail, ", sketch ",
                                                   c.sketch));
  }
  if (c.block > (int64_t{1} << 20) || c.detail > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandNLA block ", c.block, " or detail ", c.detail, " above 2^20"));
  }
  const SketchFactorShape f = SketchFactorsOf(c);
  if (c.sketch > c.block || f.sketch_outer > f.block_outer || f.sketch_inner > f.block_inner) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RandNLA sketch ", c.sketch, " (", f.sketch_outer, " x ", f.sketch_inner,
        ") does not fit the block ", c.block, " (", f.block_outer, " x ", f.block_inner,
        "): each sketch factor needs at most as many rows as its block factor"));
  }
  return absl::OkStatus();
}

double ImportancePressure(const RandnlaConfig& c) {
  return -std::log(static_cast<double>(c.block) / static_cast<double>(c.sketch));
}

void DctSketchFactor(int64_t rows, int64_t cols, uint64_t seed, float* out) {
  std::mt19937_64 rng(seed);
  std::vector<float> sign(cols);
  for (float& s : sign) s = (rng() & 1) != 0 ? 1.0f : -1.0f;
  const double pi = std::acos(-1.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double norm = std::sqrt((r == 0 ? 1.0 : 2.0) / cols);
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = static_cast<float>(norm * std::cos(pi * (c + 0.5) * r / cols)) * sign[c];
    }
  }
}

int64_t RandnlaShape::Blocks() const {
  if (attention.queries == 0) return 0;
  return (attention.query_offset + attention.queries - 1) / config.block + 1;
}

absl::Status ValidateRandnlaShape(const RandnlaShape& s) {
  if (absl::Status status = ValidateAttentionShape(s.attention); !status.ok()) return status;
  if (s.attention.window != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandNLA attention has no sliding window (got ", s.attention.window, ")"));
  }
  if (s.attention.keys() > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandNLA attention over ", s.attention.keys(), " keys: above 2^31"));
  }
  return ValidateRandnlaConfig(s.config);
}

template <typename T>
absl::Status RandnlaAttention(const RandnlaShape& s, const T* q, const T* k, const T* v,
                              const T* scores, const SketchFactors<T>& sketch, T* out,
                              RandnlaSaved<T>* saved, RandnlaStats* stats) {
  if (absl::Status status = ValidateRandnlaShape(s); !status.ok()) return status;
  const AttentionShape& a = s.attention;
  const Layout l(s);
  RandnlaSaved<T> local;
  RandnlaSaved<T>& keep = saved != nullptr ? *saved : local;
  ChooseDetail(s, l, scores, &keep.detail);

  // Sketch tokens: for each block b >= 1, scale / b · Σ_{c<b} Φ diag(w_c) [K_c, V_c],
  // a running sum over the complete blocks before b.
  const std::vector<T> phi = SketchMatrix(s.config, sketch);
  const T gamma = *sketch.scale;
  const T pressure = static_cast<T>(ImportancePressure(s.config));
  const int64_t sketch_size = a.batch * l.blocks * a.kv_heads * l.sketch * l.hd;
  keep.sketch_keys.assign(sketch_size, T{0});
  keep.sketch_values.assign(sketch_size, T{0});
  ParallelRanges(a.batch * a.kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> sum_k(l.sketch * l.hd), sum_v(l.sketch * l.hd);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / a.kv_heads, g = task % a.kv_heads;
      std::fill(sum_k.begin(), sum_k.end(), T{0});
      std::fill(sum_v.begin(), sum_v.end(), T{0});
      for (int64_t blk = 1; blk < l.blocks; ++blk) {
        for (int64_t tau = 0; tau < l.block; ++tau) {
          const int64_t t = (blk - 1) * l.block + tau;
          const T w = Sigmoid(scores[b * l.key_stride + t] + pressure);
          const T* kt = k + (b * l.key_stride + t) * l.kv_row + g * l.hd;
          const T* vt = v + (b * l.key_stride + t) * l.kv_row + g * l.hd;
          for (int64_t r = 0; r < l.sketch; ++r) {
            Axpy(phi[r * l.block + tau] * w, kt, l.hd, &sum_k[r * l.hd]);
            Axpy(phi[r * l.block + tau] * w, vt, l.hd, &sum_v[r * l.hd]);
          }
        }
        const T mean = gamma / static_cast<T>(blk);
        T* sk = keep.sketch_keys.data() + l.SketchAt(a, b, blk, g);
        T* sv = keep.sketch_values.data() + l.SketchAt(a, b, blk, g);
        for (int64_t i = 0; i < l.sketch * l.hd; ++i) {
          sk[i] = mean * sum_k[i];
          sv[i] = mean * sum_v[i];
        }
      }
    }
  });

  // One softmax per query over its exact keys and its block's sketch tokens.
  const int64_t rows = a.batch * a.heads * a.queries;
  keep.lse.resize(rows);
  std::vector<int32_t> key_counts(stats != nullptr ? rows : 0);
  ParallelRanges(rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<T> logits;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task % a.queries, h = (task / a.queries) % a.heads,
                    b = task / (a.queries * a.heads), g = h / l.group;
      const int64_t position = a.query_offset + i, blk = position / l.block;
      const T* qi = q + (b * a.queries + i) * l.q_row + h * l.hd;
      const T* kb = k + b * l.key_stride * l.kv_row + g * l.hd;
      const T* vb = v + b * l.key_stride * l.kv_row + g * l.hd;
      const T* sk = keep.sketch_keys.data() + l.SketchAt(a, b, blk, g);
      const T* sv = keep.sketch_values.data() + l.SketchAt(a, b, blk, g);
      const int64_t sketch_keys = blk > 0 ? l.sketch : 0;
      logits.clear();
      ForEachExactKey(l, keep.detail.data(), b, position, [&](int64_t j) {
        logits.push_back(a.scale * Dot(qi, kb + j * l.kv_row, l.hd));
      });
      const int64_t exact = static_cast<int64_t>(logits.size());
      for (int64_t r = 0; r < sketch_keys; ++r) {
        logits.push_back(a.scale * Dot(qi, sk + r * l.hd, l.hd));
      }
      const T max = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (T& z : logits) {
        z = std::exp(z - max);
        sum += z;
      }
      const T inv = static_cast<T>(1.0 / sum);
      T* o = out + (b * a.queries + i) * l.q_row + h * l.hd;
      std::fill(o, o + l.hd, T{0});
      int64_t n = 0;
      ForEachExactKey(l, keep.detail.data(), b, position,
                      [&](int64_t j) { Axpy(logits[n++] * inv, vb + j * l.kv_row, l.hd, o); });
      for (int64_t r = 0; r < sketch_keys; ++r) {
        Axpy(logits[exact + r] * inv, sv + r * l.hd, l.hd, o);
      }
      keep.lse[task] = max + static_cast<T>(std::log(sum));
      if (stats != nullptr) key_counts[task] = static_cast<int32_t>(logits.size());
    }
  });
  if (stats != nullptr) {
    stats->max_keys_per_query =
        key_counts.empty() ? 0 : *std::max_element(key_counts.begin(), key_counts.end());
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status RandnlaAttentionBackward(const RandnlaShape& s, const T* q, const T* k, const T* v,
                                      const T* scores, const SketchFactors<T>& sketch, const T* out,
                                      const RandnlaSaved<T>& saved, const T* dout, T* dq, T* dk,
                                      T* dv, T* dscores, const SketchFactorGrads<T>& grads) {
  if (absl::Status status = ValidateRandnlaShape(s); !status.ok()) return status;
  const AttentionShape& a = s.attention;
  if (a.query_offset != 0 || a.KeyStride() != a.queries) {
    return absl::InvalidArgumentError(
        "RandNLA attention backward needs query_offset 0 and key_stride = queries");
  }
  const Layout l(s);
  const int64_t sketch_size = a.batch * l.blocks * a.kv_heads * l.sketch * l.hd;
  if (static_cast<int64_t>(saved.lse.size()) != a.batch * a.heads * a.queries ||
      static_cast<int64_t>(saved.detail.size()) != a.batch * l.blocks * l.detail ||
      static_cast<int64_t>(saved.sketch_keys.size()) != sketch_size) {
    return absl::InvalidArgumentError("RandNLA attention backward: state of another shape");
  }
  const std::vector<T> phi = SketchMatrix(s.config, sketch);
  const T gamma = *sketch.scale;
  const T pressure = static_cast<T>(ImportancePressure(s.config));
  const int64_t tasks = a.batch * a.kv_heads, seq = a.queries;
  // Per (sequence, KV head): d(score weight) of each position, dΦ and dscale,
  // combined in task order below.
  std::vector<T> dweight(tasks * seq, T{0}), dphi(tasks * l.sketch * l.block, T{0}),
      dgamma(tasks, T{0});
  // One task per (sequence, KV head) owns the dk, dv rows of that head and
  // the dq rows of its query heads.
  ParallelRanges(tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dsk(l.blocks * l.sketch * l.hd), dsv(l.blocks * l.sketch * l.hd);
    std::vector<T> acc_k(l.sketch * l.hd), acc_v(l.sketch * l.hd), u_k(l.hd), u_v(l.hd);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / a.kv_heads, g = task % a.kv_heads;
      const T* kb = k + b * l.key_stride * l.kv_row + g * l.hd;
      const T* vb = v + b * l.key_stride * l.kv_row + g * l.hd;
      T* dkb = dk + b * l.key_stride * l.kv_row + g * l.hd;
      T* dvb = dv + b * l.key_stride * l.kv_row + g * l.hd;
      for (int64_t j = 0; j < seq; ++j) {
        std::fill(dkb + j * l.kv_row, dkb + j * l.kv_row + l.hd, T{0});
        std::fill(dvb + j * l.kv_row, dvb + j * l.kv_row + l.hd, T{0});
      }
      std::fill(dsk.begin(), dsk.end(), T{0});
      std::fill(dsv.begin(), dsv.end(), T{0});
      // With P = softmax and dP = dO·value: dZ = P ⊙ (dP − dO·O).
      for (int64_t h = g * l.group; h < (g + 1) * l.group; ++h) {
        for (int64_t i = 0; i < a.queries; ++i) {
          const int64_t at = (b * a.queries + i) * l.q_row + h * l.hd;
          const int64_t blk = i / l.block;
          const T lse = saved.lse[(b * a.heads + h) * a.queries + i];
          const T* qi = q + at;
          const T* doi = dout + at;
          const T delta = Dot(doi, out + at, l.hd);
          T* dqi = dq + at;
          std::fill(dqi, dqi + l.hd, T{0});
          ForEachExactKey(l, saved.detail.data(), b, i, [&](int64_t j) {
            const T p = std::exp(a.scale * Dot(qi, kb + j * l.kv_row, l.hd) - lse);
            const T dz = p * (Dot(doi, vb + j * l.kv_row, l.hd) - delta);
            Axpy(a.scale * dz, kb + j * l.kv_row, l.hd, dqi);
            Axpy(a.scale * dz, qi, l.hd, dkb + j * l.kv_row);
            Axpy(p, doi, l.hd, dvb + j * l.kv_row);
          });
          if (blk == 0) continue;
          const T* sk = saved.sketch_keys.data() + l.SketchAt(a, b, blk, g);
          const T* sv = saved.sketch_values.data() + l.SketchAt(a, b, blk, g);
          for (int64_t r = 0; r < l.sketch; ++r) {
            const T p = std::exp(a.scale * Dot(qi, sk + r * l.hd, l.hd) - lse);
            const T dz = p * (Dot(doi, sv + r * l.hd, l.hd) - delta);
            Axpy(a.scale * dz, sk + r * l.hd, l.hd, dqi);
            Axpy(a.scale * dz, qi, l.hd, &dsk[(blk * l.sketch + r) * l.hd]);
            Axpy(p, doi, l.hd, &dsv[(blk * l.sketch + r) * l.hd]);
          }
        }
      }
      // Sketch tokens of block b = γ/b Σ_{c<b} Φ diag(w_c) [K_c, V_c], so block
      // c's tokens receive acc_c = Σ_{b>c} d(sketch_b) / b through γ Φᵀ, a
      // suffix sum taken from the last block down.
      std::fill(acc_k.begin(), acc_k.end(), T{0});
      std::fill(acc_v.begin(), acc_v.end(), T{0});
      T* dphi_task = dphi.data() + task * l.sketch * l.block;
      for (int64_t c = l.blocks - 2; c >= 0; --c) {
        const T inv = T{1} / static_cast<T>(c + 1);
        Axpy(inv, &dsk[(c + 1) * l.sketch * l.hd], l.sketch * l.hd, acc_k.data());
        Axpy(inv, &dsv[(c + 1) * l.sketch * l.hd], l.sketch * l.hd, acc_v.data());
        for (int64_t tau = 0; tau < l.block; ++tau) {
          const int64_t t = c * l.block + tau;
          const T w = Sigmoid(scores[b * l.key_stride + t] + pressure);
          const T* kt = kb + t * l.kv_row;
          const T* vt = vb + t * l.kv_row;
          std::fill(u_k.begin(), u_k.end(), T{0});
          std::fill(u_v.begin(), u_v.end(), T{0});
          for (int64_t r = 0; r < l.sketch; ++r) {
            const T f = phi[r * l.block + tau];
            Axpy(f, &acc_k[r * l.hd], l.hd, u_k.data());
            Axpy(f, &acc_v[r * l.hd], l.hd, u_v.data());
            dphi_task[r * l.block + tau] +=
                gamma * w * (Dot(&acc_k[r * l.hd], kt, l.hd) + Dot(&acc_v[r * l.hd], vt, l.hd));
          }
          Axpy(gamma * w, u_k.data(), l.hd, dkb + t * l.kv_row);
          Axpy(gamma * w, u_v.data(), l.hd, dvb + t * l.kv_row);
          const T through = Dot(u_k.data(), kt, l.hd) + Dot(u_v.data(), vt, l.hd);
          dweight[task * seq + t] = gamma * through;
          dgamma[task] += w * through;
        }
      }
    }
  });
  // dscore = dw · w (1 − w), summed over the KV heads in order.
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      T sum = 0;
      for (int64_t g = 0; g < a.kv_heads; ++g) sum += dweight[(b * a.kv_heads + g) * seq + t];
      const T w = Sigmoid(scores[b * l.key_stride + t] + pressure);
      dscores[b * seq + t] = sum * w * (T{1} - w);
    }
  }
  // dΦ to the factors: Φ[(s1,s2),(l1,l2)] = A[s1,l1] B[s2,l2].
  const SketchFactorShape fs = SketchFactorsOf(s.config);
  std::vector<T> dphi_total(l.sketch * l.block, T{0});
  for (int64_t task = 0; task < tasks; ++task) {
    Axpy(T{1}, dphi.data() + task * l.sketch * l.block, l.sketch * l.block, dphi_total.data());
    *grads.scale += dgamma[task];
  }
  for (int64_t s1 = 0; s1 < fs.sketch_outer; ++s1) {
    for (int64_t s2 = 0; s2 < fs.sketch_inner; ++s2) {
      for (int64_t l1 = 0; l1 < fs.block_outer; ++l1) {
        for (int64_t l2 = 0; l2 < fs.block_inner; ++l2) {
          const T d = dphi_total[(s1 * fs.sketch_inner + s2) * l.block + l1 * fs.block_inner + l2];
          grads.time_outer[s1 * fs.block_outer + l1] +=
              d * sketch.time_inner[s2 * fs.block_inner + l2];
          grads.time_inner[s2 * fs.block_inner + l2] +=
              d * sketch.time_outer[s1 * fs.block_outer + l1];
        }
      }
    }
  }
  return absl::OkStatus();
}

template absl::Status RandnlaAttention<float>(const RandnlaShape&, const float*, const float*,
                                              const float*, const float*,
                                              const SketchFactors<float>&, float*,
                                              RandnlaSaved<float>*, RandnlaStats*);
template absl::Status RandnlaAttention<double>(const RandnlaShape&, const double*, const double*,
                                               const double*, const double*,
                                               const SketchFactors<double>&, double*,
                                               RandnlaSaved<double>*, RandnlaStats*);
template absl::Status RandnlaAttentionBackward<float>(const RandnlaShape&, const float*,
                                                      const float*, const float*, const float*,
                                                      const SketchFactors<float>&, const float*,
                                                      const RandnlaSaved<float>&, const float*,
                                                      float*, float*, float*, float*,
                                                      const SketchFactorGrads<float>&);
template absl::Status RandnlaAttentionBackward<double>(const RandnlaShape&, const double*,
                                                       const double*, const double*, const double*,
                                                       const SketchFactors<double>&, const double*,
                                                       const RandnlaSaved<double>&, const double*,
                                                       double*, double*, double*, double*,
                                                       const SketchFactorGrads<double>&);

}  // namespace maximus::kernels
