// Large zero-initialised memory that asks the kernel for transparent huge
// pages: loading the 33 MB Gemma 3 tokenizer.json otherwise spends much of
// its time in page faults.

#ifndef MAXIMUS_BASE_HUGE_PAGE_BUFFER_H_
#define MAXIMUS_BASE_HUGE_PAGE_BUFFER_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace maximus::base {

class HugePageBuffer {
 public:
  // `size` usable bytes followed by at least `padding` zero bytes.
  static absl::StatusOr<HugePageBuffer> Allocate(size_t size, size_t padding);
  // The file's bytes, followed by `padding` zero bytes.
  static absl::StatusOr<HugePageBuffer> ReadFile(const std::string& path, size_t padding);

  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  ~HugePageBuffer();

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  HugePageBuffer(char* data, size_t size, size_t mapped)
      : data_(data), size_(size), mapped_(mapped) {}

  char* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
};

// Advises the kernel to back the whole 2 MiB pages inside [p, p + bytes) with
// huge pages; harmless where it cannot.
void AdviseHugePages(void* p, size_t bytes);

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_HUGE_PAGE_BUFFER_H_
