// A RocksDB file system for tests that behaves like a disk with a fixed
// amount of free space: once that many bytes have been appended, every
// further append fails with IOError(NoSpace), as write(2) does with ENOSPC.

#ifndef MAXIMUS_DATA_SERVICE_LIMITED_SPACE_FILE_SYSTEM_H_
#define MAXIMUS_DATA_SERVICE_LIMITED_SPACE_FILE_SYSTEM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace maximus::data {

class LimitedSpaceFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // Over the default (POSIX) file system, with `free_bytes` of space.
  explicit LimitedSpaceFileSystem(int64_t free_bytes);

  static const char* kClassName() { return "LimitedSpaceFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // Sets the space left; negative means unlimited.
  void set_free_bytes(int64_t bytes) { free_bytes_->store(bytes); }
  int64_t free_bytes() const { return free_bytes_->load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& path, const std::string& old_path,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

 private:
  // Shared with the files, which may outlive a reset of the budget.
  std::shared_ptr<std::atomic<int64_t>> free_bytes_;
};

// An Env whose files live on `fs`, for StoreOptions::env.
std::unique_ptr<rocksdb::Env> NewEnvOn(const std::shared_ptr<rocksdb::FileSystem>& fs);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_LIMITED_SPACE_FILE_SYSTEM_H_
