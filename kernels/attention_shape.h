// The shape of a causal attention call, shared by the CPU reference
// (trainer/backend/cpu) and the CUDA kernels (flash_attention_cuda.h).

#ifndef MAXIMUS_KERNELS_ATTENTION_SHAPE_H_
#define MAXIMUS_KERNELS_ATTENTION_SHAPE_H_

#include <cstdint>

namespace maximus::kernels {

// Causal attention of `batch` sequences. Query i of a sequence sits at
// position query_offset + i and sees keys j with j <= query_offset + i and,
// when window > 0, query_offset + i - j < window (a sliding window that
// includes the query's own position, as transformers' Gemma 3). Keys number
// query_offset + queries (query_offset > 0 when decoding with a KV cache).
// Head h of the queries reads key/value head h / (heads / kv_heads).
// q: [batch, queries, heads, head_dim]; k, v: [batch, keys, kv_heads,
// head_dim] (keys row stride key_stride rows, for a cache longer than used);
// out: like q.
struct AttentionShape {
  int64_t batch = 0;
  int64_t queries = 0;
  int64_t query_offset = 0;
  int64_t key_stride = 0;  // Rows per sequence in k and v; 0: query_offset + queries.
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t window = 0;  // 0: every earlier key.
  float scale = 1.0f;  // Multiplies q·k.

  int64_t keys() const { return query_offset + queries; }
  int64_t KeyStride() const { return key_stride != 0 ? key_stride : keys(); }
  // The first key position query position `position` sees.
  int64_t FirstVisibleKey(int64_t position) const {
    return window > 0 && position + 1 > window ? position + 1 - window : 0;
  }
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_ATTENTION_SHAPE_H_
