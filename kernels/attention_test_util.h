// Test helpers for the attention kernels: a shape with the usual
// 1/sqrt(head_dim) scale, and a label naming every field for SCOPED_TRACE.

#ifndef MAXIMUS_KERNELS_ATTENTION_TEST_UTIL_H_
#define MAXIMUS_KERNELS_ATTENTION_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/attention_shape.h"

namespace maximus::kernels::testing {

inline AttentionShape TestAttentionShape(int64_t batch, int64_t queries, int64_t heads,
                                         int64_t kv_heads, int64_t head_dim, int64_t window) {
  AttentionShape s;
  s.batch = batch;
  s.queries = queries;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.window = window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  return s;
}

inline std::string AttentionShapeLabel(const AttentionShape& s) {
  return absl::StrCat("batch ", s.batch, " queries ", s.queries, " offset ", s.query_offset,
                      " stride ", s.key_stride, " heads ", s.heads, "/", s.kv_heads, " hd ",
                      s.head_dim, " window ", s.window);
}

}  // namespace maximus::kernels::testing

#endif  // MAXIMUS_KERNELS_ATTENTION_TEST_UTIL_H_
