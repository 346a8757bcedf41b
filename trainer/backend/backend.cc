#include "trainer/backend/backend.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace maximus::trainer {

int64_t DTypeBytes(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

uint64_t Backend::MemoryBytes() const {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

const char* DTypeName(DType dtype) { return dtype == DType::kF32 ? "f32" : "bf16"; }

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
                               std::unique_ptr<Buffer> v, std::unique_ptr<Buffer> shadow)
    : segments_(std::move(segments)),
      values_(std::move(values)),
      grads_(std::move(grads)),
      m_(std::move(m)),
      v_(std::move(v)),
      shadow_(std::move(shadow)) {}

absl::StatusOr<std::unique_ptr<ParameterArena>> Backend::AllocateArena(
    std::vector<ParameterArena::Segment> segments) {
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
  std::unique_ptr<Buffer> shadow;
  if (WantsBf16Shadow()) shadow = Allocate(total, DType::kBF16);
  return std::make_unique<ParameterArena>(std::move(segments), Allocate(total), Allocate(total),
                                          Allocate(total), Allocate(total), std::move(shadow));
}

}  // namespace maximus::trainer
