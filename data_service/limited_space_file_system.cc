#include "data_service/limited_space_file_system.h"

#include <utility>

namespace maximus::data {
namespace {

// Takes `n` bytes from the budget, or fails leaving it unchanged.
bool Take(std::atomic<int64_t>& free_bytes, int64_t n) {
  int64_t left = free_bytes.load();
  while (true) {
    if (left < 0) return true;  // unlimited
    if (left < n) return false;
    if (free_bytes.compare_exchange_weak(left, left - n)) return true;
  }
}

class LimitedSpaceFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  LimitedSpaceFile(std::unique_ptr<rocksdb::FSWritableFile> file,
                   std::shared_ptr<std::atomic<int64_t>> free_bytes)
      : FSWritableFileOwnerWrapper(std::move(file)), free_bytes_(std::move(free_bytes)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (!Take(*free_bytes_, static_cast<int64_t>(data.size()))) return Full();
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (!Take(*free_bytes_, static_cast<int64_t>(data.size()))) return Full();
    return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (!Take(*free_bytes_, static_cast<int64_t>(data.size()))) return Full();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    if (!Take(*free_bytes_, static_cast<int64_t>(data.size()))) return Full();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
  }

 private:
  static rocksdb::IOStatus Full() { return rocksdb::IOStatus::NoSpace("simulated full disk"); }

  std::shared_ptr<std::atomic<int64_t>> free_bytes_;
};

}  // namespace

LimitedSpaceFileSystem::LimitedSpaceFileSystem(int64_t free_bytes)
    : FileSystemWrapper(rocksdb::FileSystem::Default()),
      free_bytes_(std::make_shared<std::atomic<int64_t>>(free_bytes)) {}

rocksdb::IOStatus LimitedSpaceFileSystem::NewWritableFile(
    const std::string& path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->NewWritableFile(path, options, &file, dbg);
  if (s.ok()) result->reset(new LimitedSpaceFile(std::move(file), free_bytes_));
  return s;
}

rocksdb::IOStatus LimitedSpaceFileSystem::ReopenWritableFile(
    const std::string& path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReopenWritableFile(path, options, &file, dbg);
  if (s.ok()) result->reset(new LimitedSpaceFile(std::move(file), free_bytes_));
  return s;
}

rocksdb::IOStatus LimitedSpaceFileSystem::ReuseWritableFile(
    const std::string& path, const std::string& old_path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReuseWritableFile(path, old_path, options, &file, dbg);
  if (s.ok()) result->reset(new LimitedSpaceFile(std::move(file), free_bytes_));
  return s;
}

std::unique_ptr<rocksdb::Env> NewEnvOn(const std::shared_ptr<rocksdb::FileSystem>& fs) {
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace maximus::data
