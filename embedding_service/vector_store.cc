#include "embedding_service/vector_store.h"

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/rocksdb_status.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace maximus::embedding {
namespace {

using ::maximus::base::FromRocks;

constexpr char kConfigKey[] = "config";
constexpr char kVectorPrefix[] = "v/";
// Old info logs kept: every open starts one.
constexpr size_t kKeptInfoLogs = 4;

std::string ConfigJson(const IndexConfig& config) {
  return nlohmann::json{{"dims", config.dims}, {"type", ElementTypeName(config.type)}}.dump();
}

absl::StatusOr<IndexConfig> ParseConfig(const std::string& json_text, const std::string& dir) {
  const nlohmann::json json = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("dims") || !json["dims"].is_number_integer() ||
      !json.contains("type") || !json["type"].is_string()) {
    return absl::DataLossError(
        absl::StrCat("the index in ", dir, " has a malformed config: ", json_text));
  }
  IndexConfig config;
  config.dims = json["dims"].get<int64_t>();
  absl::StatusOr<ElementType> type = ParseElementType(json["type"].get<std::string>(), "type");
  if (!type.ok() || config.dims < 1 || config.dims > kMaxDims) {
    return absl::DataLossError(
        absl::StrCat("the index in ", dir, " has a config out of range: ", json_text));
  }
  config.type = *type;
  return config;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VectorStore>> VectorStore::Open(const std::string& dir,
                                                               std::optional<IndexConfig> config) {
  if (config.has_value() && (config->dims < 1 || config->dims > kMaxDims)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dims: ", config->dims, " is not in [1, ", kMaxDims, "]"));
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat("creating ", dir, ": ", error.message()));
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  options.keep_log_file_num = kKeptInfoLogs;
  options.max_background_jobs = 2;
  rocksdb::DB* raw = nullptr;
  MAXIMUS_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(options, dir, &raw), absl::StrCat("opening the index in ", dir)));
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string stored;
  const rocksdb::Status read = db->Get(rocksdb::ReadOptions(), kConfigKey, &stored);
  if (read.IsNotFound()) {
    if (!config.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, " holds no index and no dimension was given to create one (--dim or a "
               "--checkpoint)"));
    }
    rocksdb::WriteOptions sync;
    sync.sync = true;
    MAXIMUS_RETURN_IF_ERROR(FromRocks(db->Put(sync, kConfigKey, ConfigJson(*config)),
                                      absl::StrCat("creating the index in ", dir)));
    return std::unique_ptr<VectorStore>(new VectorStore(std::move(db), dir, *config));
  }
  MAXIMUS_RETURN_IF_ERROR(FromRocks(read, absl::StrCat("reading the config of ", dir)));
  MAXIMUS_ASSIGN_OR_RETURN(const IndexConfig existing, ParseConfig(stored, dir));
  if (config.has_value() && (config->dims != existing.dims || config->type != existing.type)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the index in ", dir, " holds ", existing.dims, "-dimensional ",
        ElementTypeName(existing.type), " vectors, not ", config->dims, "-dimensional ",
        ElementTypeName(config->type), " ones (another model or --vector_type?)"));
  }
  return std::unique_ptr<VectorStore>(new VectorStore(std::move(db), dir, existing));
}

absl::Status VectorStore::Write(absl::Span<const VectorRecord> upserts,
                                absl::Span<const std::string> deletes) {
  rocksdb::WriteBatch batch;
  for (const std::string& id : deletes) {
    MAXIMUS_RETURN_IF_ERROR(FromRocks(batch.Delete(absl::StrCat(kVectorPrefix, id)), "delete"));
  }
  for (const VectorRecord& record : upserts) {
    MAXIMUS_RETURN_IF_ERROR(FromRocks(batch.Put(absl::StrCat(kVectorPrefix, record.id),
                                                EncodeVectorRecord(record, config_.type)),
                                      "upsert"));
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(db_->Write(sync, &batch), absl::StrCat("writing to the index in ", dir_));
}

absl::Status VectorStore::ForEach(const std::function<absl::Status(VectorRecord)>& fn) const {
  rocksdb::ReadOptions options;
  options.verify_checksums = true;
  // A full scan at start: keep it out of the block cache.
  options.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options));
  for (it->Seek(kVectorPrefix); it->Valid() && it->key().starts_with(kVectorPrefix); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    MAXIMUS_ASSIGN_OR_RETURN(
        VectorRecord record,
        DecodeVectorRecord(key.substr(sizeof(kVectorPrefix) - 1),
                           absl::string_view(it->value().data(), it->value().size()),
                           config_.type, config_.dims));
    MAXIMUS_RETURN_IF_ERROR(fn(std::move(record)));
  }
  return FromRocks(it->status(), absl::StrCat("reading the index in ", dir_));
}

}  // namespace maximus::embedding
