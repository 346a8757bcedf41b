#include "trainer/backend/backend.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace maximus::trainer {

int64_t DTypeBytes(DType dtype) { return dtype == DType::kBF16 ? 2 : 4; }

absl::StatusOr<UpdateRange> UpdateRangeOf(const OptimizerStep& step, const ParameterArena& arena) {
  UpdateRange range{step.update_begin, step.update_end < 0 ? arena.size() : step.update_end};
  if (range.begin < arena.moment_begin() || range.end > arena.moment_end() ||
      range.begin > range.end) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer update range [", range.begin, ", ", range.end,
                     ") is outside the moments' [", arena.moment_begin(), ", ", arena.moment_end(),
                     ")"));
  }
  return range;
}

std::vector<std::unique_ptr<Buffer>> SegmentViews(const ParameterArena& arena, float* base) {
  std::vector<std::unique_ptr<Buffer>> views;
  for (const ParameterArena::Segment& s : arena.segments()) {
    views.push_back(std::make_unique<BufferView>(base + s.offset, s.size, DType::kF32));
  }
  return views;
}

UpdateRange ShardOf(int64_t total, int shards, int index) {
  constexpr int64_t kAlign = 64;
  const int64_t per = (total + shards - 1) / shards;
  const int64_t length = (per + kAlign - 1) / kAlign * kAlign;
  const int64_t begin = std::min(total, length * index);
  return {begin, std::min(total, begin + length)};
}

uint64_t Backend::MemoryBytes() const {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
  }
  return "?";
}

void Backend::CopyIdsFromHost(const int32_t* host, int64_t n, Buffer* dst) {
  if (dst->dtype() != DType::kI32 || dst->size() < n) {
    std::fprintf(stderr, "CopyIdsFromHost: %lld ids into a %s buffer of %lld\n",
                 static_cast<long long>(n), DTypeName(dst->dtype()),
                 static_cast<long long>(dst->size()));
    std::abort();
  }
  static_assert(sizeof(int32_t) == sizeof(float));
  CopyFromHost(reinterpret_cast<const float*>(host), n, static_cast<float*>(dst->raw()));
}

float* Buffer::data() {
  if (dtype() != DType::kF32) {
    std::fprintf(stderr, "Buffer::data() on a %s buffer\n", DTypeName(dtype()));
    std::abort();
  }
  return static_cast<float*>(raw());
}

const float* Buffer::data() const { return const_cast<Buffer*>(this)->data(); }

ParameterArena::ParameterArena(std::vector<Segment> segments, std::unique_ptr<Buffer> values,
                               std::unique_ptr<Buffer> grads, std::unique_ptr<Buffer> m,
                               std::unique_ptr<Buffer> v, std::unique_ptr<Buffer> shadow,
                               int64_t moment_begin)
    : segments_(std::move(segments)),
      values_(std::move(values)),
      grads_(std::move(grads)),
      m_(std::move(m)),
      v_(std::move(v)),
      shadow_(std::move(shadow)),
      moment_begin_(moment_begin) {}

absl::StatusOr<std::unique_ptr<ParameterArena>> Backend::AllocateArena(
    std::vector<ParameterArena::Segment> segments, int moment_shards, int moment_shard) {
  int64_t total = 0;
  for (ParameterArena::Segment& s : segments) {
    int64_t size = 1;
    for (int64_t dim : s.shape) {
      if (dim <= 0 || size > std::numeric_limits<int64_t>::max() / 4 / dim) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter ", s.name, " has a bad or too large shape"));
      }
      size *= dim;
    }
    s.offset = total;
    s.size = size;
    total += size;
  }
  if (moment_shards < 1 || moment_shard < 0 || moment_shard >= moment_shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer shard ", moment_shard, " of ", moment_shards));
  }
  const UpdateRange moments_range = ShardOf(total, moment_shards, moment_shard);
  std::unique_ptr<Buffer> shadow;
  if (WantsBf16Shadow()) shadow = Allocate(total, DType::kBF16);
  const int64_t moments = moments_range.end - moments_range.begin;
  return std::make_unique<ParameterArena>(std::move(segments), Allocate(total), Allocate(total),
                                          Allocate(moments), Allocate(moments), std::move(shadow),
                                          moments_range.begin);
}

}  // namespace maximus::trainer
