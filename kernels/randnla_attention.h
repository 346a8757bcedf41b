// RandNLA attention on the CPU: causal by construction, with a key budget per
// query that does not grow with the sequence (kernels/randnla_attention.md
// has the construction and the proofs of both).
//
// The sequence is cut into blocks of `block` positions. A query in block b
// attends, under one softmax, to
//   1. its own block, exactly and causally;
//   2. the `detail` past tokens of highest importance score among blocks < b
//      (a running top-K), exactly: their rotated keys and their values;
//   3. `sketch` sketch tokens: the mean over blocks c < b of Φ · diag(w_c) ·
//      [K_c, V_c], Φ = time_outer ⊗ time_inner (sketch × block), times a
//      learnable scale; w_t = sigmoid(score_t + ImportancePressure()).
// Scores come from the importance scorer (importance_scorer.h). Gradients
// reach q, k, v, the scores (through w, on the sketch path; the top-K choice
// itself has none), both sketch factors and the sketch scale.
//
// The implementation is a template so that the tests can run it in float64
// for finite differences; the backends use float. Work is spread over the
// shared thread pool with one owner per output, so the bits do not depend on
// the number of threads.

#ifndef MAXIMUS_KERNELS_RANDNLA_ATTENTION_H_
#define MAXIMUS_KERNELS_RANDNLA_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention_shape.h"

namespace maximus::kernels {

struct RandnlaConfig {
  int64_t block = 64;   // L: positions per block.
  int64_t detail = 32;  // K: exact past tokens per query.
  int64_t sketch = 16;  // S: sketch tokens per query.
};

// The Kronecker factors' shapes: block = block_outer · block_inner and
// sketch = sketch_outer · sketch_inner, each outer the largest divisor not
// above the square root (64 = 8 · 8, 16 = 4 · 4). time_outer is
// [sketch_outer, block_outer], time_inner [sketch_inner, block_inner].
struct SketchFactorShape {
  int64_t block_outer = 0, block_inner = 0, sketch_outer = 0, sketch_inner = 0;
};
SketchFactorShape SketchFactorsOf(const RandnlaConfig& config);

// INVALID_ARGUMENT naming the field unless block, detail and sketch are
// positive (detail may be 0), sketch <= block, and each sketch factor has no
// more rows than its block factor has columns (a DCT basis of them exists).
absl::Status ValidateRandnlaConfig(const RandnlaConfig& config);

// The most keys one query weighs: block + detail + sketch, whatever the
// sequence length.
inline int64_t RandnlaKeyBudget(const RandnlaConfig& c) { return c.block + c.detail + c.sketch; }

// The constant added to every score before the sigmoid: −ln(block / sketch),
// the seed's −ln(T/S) pressure with the block standing for T, so that it
// never depends on the length of the sequence (nor on its future).
double ImportancePressure(const RandnlaConfig& config);

// `rows` × `cols` DCT-II basis (orthonormal rows: row r is cos(π (c + ½) r /
// cols) scaled) with each column's sign flipped at random by `seed`: the
// initial sketch factors.
void DctSketchFactor(int64_t rows, int64_t cols, uint64_t seed, float* out);

// A call's shape: `attention` as for CausalAttention, with window 0 (the
// own block replaces a sliding window); `config` the RandNLA sizes.
struct RandnlaShape {
  AttentionShape attention;
  RandnlaConfig config;
  // Blocks with queries: the last query's block + 1.
  int64_t Blocks() const;
};

absl::Status ValidateRandnlaShape(const RandnlaShape& shape);

template <typename T>
struct SketchFactors {
  const T* time_outer = nullptr;  // [sketch_outer, block_outer]
  const T* time_inner = nullptr;  // [sketch_inner, block_inner]
  const T* scale = nullptr;       // [1]
};

// Gradients of the sketch parameters, added (+=) to.
template <typename T>
struct SketchFactorGrads {
  T* time_outer = nullptr;
  T* time_inner = nullptr;
  T* scale = nullptr;
};

// What the forward keeps for the backward: O(T) memory.
template <typename T>
struct RandnlaSaved {
  std::vector<T> lse;  // [batch, heads, queries]: log-sum-exp over each query's keys
  // [batch, Blocks(), detail]: the detail positions of each block's queries,
  // ascending, −1 past the count (blocks before enough tokens exist).
  std::vector<int32_t> detail;
  // [batch, Blocks(), kv_heads, sketch, head_dim]: each block's sketch keys
  // and values, scale included (block 0 has none: zeros).
  std::vector<T> sketch_keys, sketch_values;
};

struct RandnlaStats {
  int64_t max_keys_per_query = 0;  // Over every query of the call.
};

// out = softmax over (own block, detail, sketch) of scale · q·key, times the
// values, layouts as in AttentionShape; scores [batch, KeyStride()] for the
// keys' positions (the first keys() of each row are read). `saved` (null when
// no backward follows) and `stats` (null: not counted) are filled in.
template <typename T>
absl::Status RandnlaAttention(const RandnlaShape& shape, const T* q, const T* k, const T* v,
                              const T* scores, const SketchFactors<T>& sketch, T* out,
                              RandnlaSaved<T>* saved, RandnlaStats* stats);

// The gradients given dout (like out), from the forward's `out` and `saved`.
// Needs query_offset 0. dq, dk, dv and dscores ([batch, queries]) are
// overwritten; `grads` are added to.
template <typename T>
absl::Status RandnlaAttentionBackward(const RandnlaShape& shape, const T* q, const T* k, const T* v,
                                      const T* scores, const SketchFactors<T>& sketch, const T* out,
                                      const RandnlaSaved<T>& saved, const T* dout, T* dq, T* dk,
                                      T* dv, T* dscores, const SketchFactorGrads<T>& grads);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_RANDNLA_ATTENTION_H_
