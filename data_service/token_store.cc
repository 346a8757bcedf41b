#include "data_service/token_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "base/rocksdb_status.h"
#include "base/sha256.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "rocksdb/filter_policy.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/transaction_log.h"
#include "rocksdb/write_batch.h"

namespace maximus::data {
namespace {

using ::maximus::base::FromRocks;

constexpr char kStoreFile[] = "store.json";
constexpr char kMetaKey[] = "m/meta";
constexpr char kDocPrefix[] = "d/";
constexpr uint8_t kValueVersion = 1;
// version, token count, mask flag; the CRC follows the payload.
constexpr size_t kHeaderBytes = 1 + 4 + 1;
constexpr size_t kCrcBytes = 4;
constexpr int kMaxShards = 99999;
constexpr size_t kKeptInfoLogs = 2;

void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string TokenBytes(absl::Span<const int32_t> tokens) {
  std::string bytes;
  bytes.reserve(tokens.size() * 4);
  for (int32_t t : tokens) PutU32(static_cast<uint32_t>(t), &bytes);
  return bytes;
}

std::string EncodeValue(const Document& doc) {
  std::string value;
  value.reserve(kHeaderBytes + doc.tokens.size() * 5 + kCrcBytes);
  value.push_back(static_cast<char>(kValueVersion));
  PutU32(static_cast<uint32_t>(doc.tokens.size()), &value);
  value.push_back(doc.loss_mask.empty() ? 0 : 1);
  value += TokenBytes(doc.tokens);
  for (uint8_t m : doc.loss_mask) value.push_back(static_cast<char>(m));
  PutU32(base::Crc32c(value), &value);
  return value;
}

// Checks the value's framing (not its checksum); returns the token count.
absl::StatusOr<uint32_t> ValueTokenCount(absl::string_view id, absl::string_view value) {
  if (value.size() < kHeaderBytes + kCrcBytes) {
    return absl::DataLossError(
        absl::StrCat("document ", id, ": stored value is truncated (", value.size(), " bytes)"));
  }
  if (static_cast<uint8_t>(value[0]) != kValueVersion) {
    return absl::DataLossError(absl::StrCat("document ", id, ": unknown value format version ",
                                            static_cast<uint8_t>(value[0])));
  }
  const uint32_t n = GetU32(value.data() + 1);
  const uint8_t has_mask = static_cast<uint8_t>(value[5]);
  const uint64_t expected =
      kHeaderBytes + static_cast<uint64_t>(n) * (has_mask ? 5 : 4) + kCrcBytes;
  if (has_mask > 1 || value.size() != expected) {
    return absl::DataLossError(absl::StrCat("document ", id, ": stored value has ", value.size(),
                                            " bytes, its header implies ", expected));
  }
  return n;
}

absl::StatusOr<Document> DecodeValue(absl::string_view id, absl::string_view value) {
  MAXIMUS_ASSIGN_OR_RETURN(const uint32_t n, ValueTokenCount(id, value));
  const size_t body = value.size() - kCrcBytes;
  const uint32_t stored_crc = GetU32(value.data() + body);
  const uint32_t crc = base::Crc32c(value.substr(0, body));
  if (crc != stored_crc) {
    return absl::DataLossError(absl::StrFormat(
        "document %s: checksum mismatch (stored %08x, computed %08x)", id, stored_crc, crc));
  }
  Document doc;
  doc.tokens.resize(n);
  const char* p = value.data() + kHeaderBytes;
  for (uint32_t i = 0; i < n; ++i, p += 4) doc.tokens[i] = static_cast<int32_t>(GetU32(p));
  if (value[5] != 0) doc.loss_mask.assign(p, p + n);
  return doc;
}

nlohmann::json MetadataJson(const StoreMetadata& m) {
  return {{"format_version", m.format_version},
          {"num_shards", m.num_shards},
          {"tokenizer_fingerprint", m.tokenizer_fingerprint},
          {"vocab_size", m.vocab_size}};
}

absl::StatusOr<StoreMetadata> ParseMetadata(absl::string_view text, absl::string_view where) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("format_version") ||
      !j["format_version"].is_number_integer() || !j.contains("num_shards") ||
      !j["num_shards"].is_number_integer() || !j.contains("tokenizer_fingerprint") ||
      !j["tokenizer_fingerprint"].is_string() || !j.contains("vocab_size") ||
      !j["vocab_size"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(where, ": malformed store metadata"));
  }
  StoreMetadata m;
  m.format_version = j["format_version"].get<int>();
  m.num_shards = j["num_shards"].get<int>();
  m.tokenizer_fingerprint = j["tokenizer_fingerprint"].get<std::string>();
  m.vocab_size = j["vocab_size"].get<int32_t>();
  if (m.format_version != kStoreFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": store format version ",
                                                      m.format_version, ", this build reads ",
                                                      kStoreFormatVersion));
  }
  return m;
}

std::string ShardMetaValue(const StoreMetadata& m, int shard) {
  nlohmann::json j = MetadataJson(m);
  j["shard"] = shard;
  return j.dump();
}

absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return ErrnoStatus("open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync", path);
  return absl::OkStatus();
}

// Writes via a temporary file and rename, so readers see all or nothing.
absl::Status WriteFileDurably(const std::string& dir, const std::string& name,
                              const std::string& contents) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out) return ErrnoStatus("write", tmp);
  }
  MAXIMUS_RETURN_IF_ERROR(FsyncPath(tmp, O_RDONLY));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("rename", tmp);
  return FsyncPath(dir, O_RDONLY | O_DIRECTORY);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no store at ", path));
    return ErrnoStatus("reading", path);
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return ErrnoStatus("reading", path);
  return buffer.str();
}

// The names in `dir`, sorted.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// "shard-00000-of-00008, shard-00001-of-00008 and 6 more".
std::string DescribeNames(const std::vector<std::string>& names) {
  constexpr size_t kShown = 4;
  std::string text;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) {
    absl::StrAppend(&text, i == 0 ? "" : ", ", names[i]);
  }
  if (names.size() > kShown) absl::StrAppend(&text, " and ", names.size() - kShown, " more");
  return text;
}

bool IsShardDirName(absl::string_view name) {
  int shard = 0;
  int of = 0;
  char tail = 0;
  return name.size() == 20 &&
         std::sscanf(std::string(name).c_str(), "shard-%5d-of-%5d%c", &shard, &of, &tail) == 2;
}

// What a directory without store.json holds, for error messages.
std::string DescribeContents(const std::string& dir) {
  std::vector<std::string> shard_dirs;
  std::vector<std::string> others;
  for (std::string& name : ListDir(dir)) {
    (IsShardDirName(name) ? shard_dirs : others).push_back(std::move(name));
  }
  std::string text;
  if (!shard_dirs.empty()) {
    absl::StrAppend(&text, shard_dirs.size(), " shard director",
                    shard_dirs.size() == 1 ? "y" : "ies", " (", DescribeNames(shard_dirs), ")");
  }
  if (!others.empty()) {
    absl::StrAppend(&text, text.empty() ? "" : " and ", others.size(), " other entr",
                    others.size() == 1 ? "y" : "ies", " (", DescribeNames(others), ")");
  }
  return text.empty() ? "nothing" : text;
}

bool IsDocumentId(absl::string_view id) {
  if (id.size() != 64) return false;
  for (char c : id) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

rocksdb::Options ShardOptions(bool create, const StoreOptions& store_options) {
  rocksdb::Options options;
  options.create_if_missing = create;
  if (store_options.env != nullptr) options.env = store_options.env;
  // Every open starts a new info log and keeps the old one; keep a few, not
  // one per open.
  options.keep_log_file_num = kKeptInfoLogs;
  options.paranoid_checks = true;
  // Small default footprint: shards are many and the machines have few cores.
  options.max_background_jobs = 2;
  // Ingestion looks up every new document to count duplicates; almost all
  // are absent, which bloom filters answer without reading data blocks.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  options.memtable_whole_key_filtering = true;
  options.memtable_prefix_bloom_size_ratio = 0.02;
  return options;
}

// Looks up the documents ids[members[j]] of one shard in one batched call.
struct ShardLookup {
  std::vector<std::string> keys;
  std::vector<rocksdb::PinnableSlice> values;
  std::vector<rocksdb::Status> statuses;
};

ShardLookup LookUp(rocksdb::DB* db, absl::Span<const std::string> ids,
                   const std::vector<size_t>& members) {
  ShardLookup lookup;
  lookup.keys.reserve(members.size());
  std::vector<rocksdb::Slice> slices;
  slices.reserve(members.size());
  for (size_t index : members) {
    lookup.keys.push_back(kDocPrefix + ids[index]);
    slices.emplace_back(lookup.keys.back());
  }
  lookup.values.resize(members.size());
  lookup.statuses.resize(members.size());
  db->MultiGet(rocksdb::ReadOptions(), db->DefaultColumnFamily(), members.size(), slices.data(),
               lookup.values.data(), lookup.statuses.data());
  return lookup;
}

absl::Status ValidateDocument(const Document& doc, size_t index, int32_t vocab_size) {
  if (doc.tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("document ", index, " has no tokens"));
  }
  for (size_t pos = 0; pos < doc.tokens.size(); ++pos) {
    const int32_t t = doc.tokens[pos];
    if (t < 0 || t >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("document ", index, ", position ", pos, ": token id ", t,
                       " outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  if (!doc.loss_mask.empty() && doc.loss_mask.size() != doc.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("document ", index, ": loss mask has ",
                                                   doc.loss_mask.size(), " entries for ",
                                                   doc.tokens.size(), " tokens"));
  }
  for (size_t pos = 0; pos < doc.loss_mask.size(); ++pos) {
    if (doc.loss_mask[pos] > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("document ", index, ", position ", pos, ": loss mask value ",
                       static_cast<int>(doc.loss_mask[pos]), " is not 0 or 1"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string TokenStore::DocumentId(absl::Span<const int32_t> tokens) {
  return base::Sha256Hex(TokenBytes(tokens));
}

int TokenStore::ShardOf(absl::string_view id, int num_shards) {
  uint64_t h = 0;
  for (char c : id.substr(0, 16)) {
    h = (h << 4) | static_cast<uint64_t>(absl::ascii_isdigit(c) ? c - '0' : c - 'a' + 10);
  }
  return static_cast<int>(h % static_cast<uint64_t>(num_shards));
}

std::string TokenStore::ShardDirName(int shard, int num_shards) {
  return absl::StrFormat("shard-%05d-of-%05d", shard, num_shards);
}

TokenStore::TokenStore(std::string dir, StoreMetadata metadata,
                       std::vector<std::unique_ptr<rocksdb::DB>> shards,
                       std::string read_only_reason, bool disk_full)
    : dir_(std::move(dir)),
      metadata_(std::move(metadata)),
      shards_(std::move(shards)),
      write_failed_(shards_.size(), 0),
      read_only_reason_(std::move(read_only_reason)),
      disk_full_(disk_full) {
  for (size_t shard = 0; shard < shards_.size(); ++shard) {
    if (shards_[shard] != nullptr) open_shards_.push_back(static_cast<int>(shard));
  }
}

TokenStore::~TokenStore() {
  for (auto& db : shards_) {
    if (db == nullptr) continue;
    if (!read_only()) {
      // Flushing lets RocksDB delete the WAL now rather than leave it for
      // the next open to replay; a failure (a full disk) leaves the WAL,
      // which still holds every acknowledged write.
      rocksdb::FlushOptions flush;
      flush.allow_write_stall = true;
      db->Flush(flush).PermitUncheckedError();
    }
    const rocksdb::Status s = db->Close();
    if (!s.ok()) absl::FPrintF(stderr, "closing a shard of %s: %s\n", dir_, s.ToString());
  }
}

namespace {

// RocksDB starts a new WAL at every open and deletes a WAL only once its
// writes are flushed, so a session without writes would leave one empty WAL
// behind for good. Called with the shard open (and locked): WALs older than
// the current one were replayed at open, and an empty one holds nothing.
void DeleteEmptyOldWals(rocksdb::DB* db, const std::string& path) {
  std::unique_ptr<rocksdb::LogFile> current;
  if (!db->GetCurrentWalFile(&current).ok() || current == nullptr) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    uint64_t number = 0;
    if (!absl::EndsWith(name, ".log") ||
        !absl::SimpleAtoi(absl::string_view(name).substr(0, name.size() - 4), &number) ||
        number >= current->LogNumber()) {
      continue;
    }
    std::error_code size_ec;
    if (std::filesystem::file_size(entry.path(), size_ec) == 0 && !size_ec) {
      std::filesystem::remove(entry.path(), size_ec);
    }
  }
}

// Opens the shards marked in `wanted` and checks each one's metadata.
absl::Status OpenShards(const std::string& dir, const StoreMetadata& metadata,
                        const std::vector<bool>& wanted, const StoreOptions& options,
                        bool read_only, std::vector<std::unique_ptr<rocksdb::DB>>* shards) {
  const std::string store_file = dir + "/" + kStoreFile;
  shards->clear();
  shards->resize(metadata.num_shards);
  for (int shard = 0; shard < metadata.num_shards; ++shard) {
    if (!wanted[shard]) continue;
    const std::string path = dir + "/" + TokenStore::ShardDirName(shard, metadata.num_shards);
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) {
      return absl::DataLossError(
          absl::StrCat(store_file, " lists ", metadata.num_shards, " shards but ", path,
                       " is missing; the directory holds ", DescribeContents(dir)));
    }
    rocksdb::DB* db = nullptr;
    const rocksdb::Options db_options = ShardOptions(false, options);
    MAXIMUS_RETURN_IF_ERROR(FromRocks(read_only
                                          ? rocksdb::DB::OpenForReadOnly(db_options, path, &db)
                                          : rocksdb::DB::Open(db_options, path, &db),
                                      absl::StrCat("opening shard ", path)));
    (*shards)[shard].reset(db);
    if (!read_only) DeleteEmptyOldWals(db, path);
    std::string meta;
    MAXIMUS_RETURN_IF_ERROR(FromRocks(db->Get(rocksdb::ReadOptions(), kMetaKey, &meta),
                                      absl::StrCat(path, " metadata")));
    if (meta != ShardMetaValue(metadata, shard)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": shard metadata ", meta, " does not match ", store_file));
    }
  }
  return absl::OkStatus();
}

// Create may reuse only what an interrupted Create of the same store left:
// this store's shard directories (checked for documents once opened) and
// a temporary store.json.
absl::Status CheckCreatable(const std::string& dir, const StoreMetadata& metadata) {
  std::vector<std::string> foreign;
  for (const std::string& name : ListDir(dir)) {
    if (name == std::string(kStoreFile) + ".tmp") continue;
    bool ours = false;
    for (int shard = 0; shard < metadata.num_shards && !ours; ++shard) {
      ours = name == TokenStore::ShardDirName(shard, metadata.num_shards);
    }
    if (!ours) foreign.push_back(name);
  }
  if (foreign.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot create a store in ", dir, ": it has no ", kStoreFile, " but holds ",
      DescribeContents(dir),
      ". A store whose store.json is lost must be repaired, not recreated; otherwise choose an "
      "empty or new directory"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Create(const std::string& dir,
                                                               const StoreMetadata& metadata,
                                                               const StoreOptions& options) {
  if (metadata.format_version != kStoreFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("format version ", metadata.format_version,
                                                   ", this build writes ", kStoreFormatVersion));
  }
  if (metadata.num_shards < 1 || metadata.num_shards > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard count ", metadata.num_shards, " outside [1, ", kMaxShards, "]"));
  }
  if (metadata.tokenizer_fingerprint.empty() || metadata.vocab_size <= 0) {
    return absl::InvalidArgumentError(
        "a store needs a tokenizer fingerprint and a vocabulary size");
  }
  if (options.read_only) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a read-only store in ", dir));
  }
  std::error_code ec;
  if (std::filesystem::exists(dir + "/" + kStoreFile, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(dir, " already holds a store"));
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("creating ", dir, ": ", ec.message()));
  MAXIMUS_RETURN_IF_ERROR(CheckCreatable(dir, metadata));

  std::vector<std::unique_ptr<rocksdb::DB>> shards;
  for (int shard = 0; shard < metadata.num_shards; ++shard) {
    const std::string path = dir + "/" + ShardDirName(shard, metadata.num_shards);
    rocksdb::DB* db = nullptr;
    MAXIMUS_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(ShardOptions(true, options), path, &db),
                                      absl::StrCat("creating shard ", path)));
    shards.emplace_back(db);
    // A shard left by an interrupted Create is reused only if it matches
    // and holds no documents (a store that held some had its store.json).
    std::string existing;
    const rocksdb::Status get = db->Get(rocksdb::ReadOptions(), kMetaKey, &existing);
    const std::string meta = ShardMetaValue(metadata, shard);
    if (get.ok() && existing != meta) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " holds another store's shard: ", existing));
    }
    if (!get.ok() && !get.IsNotFound()) return FromRocks(get, path);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->Seek(kDocPrefix);
    if (it->Valid() && it->key().starts_with(kDocPrefix)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create a store in ", dir, ": ", path, " holds documents but ", dir,
                       " has no ", kStoreFile, "; repair the store instead"));
    }
    MAXIMUS_RETURN_IF_ERROR(FromRocks(it->status(), path));
    rocksdb::WriteOptions sync;
    sync.sync = true;
    MAXIMUS_RETURN_IF_ERROR(FromRocks(db->Put(sync, kMetaKey, meta), path));
  }
  // Last: store.json marks the store complete.
  MAXIMUS_RETURN_IF_ERROR(WriteFileDurably(dir, kStoreFile, MetadataJson(metadata).dump(2) + "\n"));
  return std::unique_ptr<TokenStore>(
      new TokenStore(dir, metadata, std::move(shards), "", /*disk_full=*/false));
}

absl::StatusOr<StoreMetadata> TokenStore::ReadMetadata(const std::string& dir) {
  const std::string store_file = dir + "/" + kStoreFile;
  MAXIMUS_ASSIGN_OR_RETURN(const std::string text, ReadFile(store_file));
  absl::StatusOr<StoreMetadata> metadata = ParseMetadata(text, store_file);
  if (absl::IsDataLoss(metadata.status())) {
    return absl::DataLossError(absl::StrCat(metadata.status().message(), " (", text.size(),
                                            " bytes); ", dir, " holds ", DescribeContents(dir)));
  }
  return metadata;
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(
    const std::string& dir, absl::string_view tokenizer_fingerprint, int num_shards,
    absl::Span<const int> open_only, const StoreOptions& options) {
  const std::string store_file = dir + "/" + kStoreFile;
  MAXIMUS_ASSIGN_OR_RETURN(StoreMetadata metadata, ReadMetadata(dir));
  if (metadata.tokenizer_fingerprint != tokenizer_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", dir, " was built with tokenizer fingerprint ",
                     metadata.tokenizer_fingerprint, ", not ", tokenizer_fingerprint));
  }
  if (metadata.num_shards != num_shards) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", dir, " has ", metadata.num_shards, " shards, not ", num_shards));
  }
  if (metadata.num_shards < 1 || metadata.num_shards > kMaxShards) {
    return absl::DataLossError(absl::StrCat(store_file, ": shard count ", metadata.num_shards));
  }
  std::vector<bool> wanted(metadata.num_shards, open_only.empty());
  for (int shard : open_only) {
    if (shard < 0 || shard >= metadata.num_shards) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard ", shard, " outside [0, ", metadata.num_shards, ") of store ", dir));
    }
    wanted[shard] = true;
  }
  std::vector<std::unique_ptr<rocksdb::DB>> shards;
  const absl::Status opened =
      OpenShards(dir, metadata, wanted, options, options.read_only, &shards);
  if (opened.ok()) {
    return std::unique_ptr<TokenStore>(new TokenStore(dir, std::move(metadata), std::move(shards),
                                                      options.read_only ? "opened read-only" : "",
                                                      /*disk_full=*/false));
  }
  if (!absl::IsResourceExhausted(opened) || options.read_only || !options.read_only_if_disk_full) {
    return opened;
  }
  // Opening for writing writes (a manifest, a WAL); reading needs neither.
  MAXIMUS_RETURN_IF_ERROR(OpenShards(dir, metadata, wanted, options, /*read_only=*/true, &shards));
  absl::FPrintF(stderr, "store %s: %s; opened read-only: documents can be read, not added\n", dir,
                opened.message());
  return std::unique_ptr<TokenStore>(new TokenStore(dir, std::move(metadata), std::move(shards),
                                                    std::string(opened.message()),
                                                    /*disk_full=*/true));
}

absl::StatusOr<WriteResult> TokenStore::AddDocuments(absl::Span<const Document> batch) {
  std::vector<std::string> ids(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    MAXIMUS_RETURN_IF_ERROR(ValidateDocument(batch[i], i, metadata_.vocab_size));
    ids[i] = DocumentId(batch[i].tokens);
    const int shard = ShardOf(ids[i], num_shards());
    if (shards_[shard] == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document ", i, " (", ids[i], ") belongs to shard ", shard, ", which is not open here"));
    }
  }
  if (disk_full_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("store ", dir_,
                     " is read-only, the disk was full when it was opened: ", read_only_reason_));
  }
  if (read_only()) {
    return absl::FailedPreconditionError(absl::StrCat("store ", dir_, " was opened read-only"));
  }
  absl::MutexLock lock(&write_mu_);
  WriteResult result;
  result.ids = ids;
  // First occurrence of each id in the batch, grouped by shard.
  std::vector<std::vector<size_t>> firsts(shards_.size());
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!seen.insert(ids[i]).second) {
      ++result.duplicates;
      continue;
    }
    firsts[ShardOf(ids[i], num_shards())].push_back(i);
  }
  std::vector<rocksdb::WriteBatch> writes(shards_.size());
  for (size_t shard = 0; shard < shards_.size(); ++shard) {
    const std::vector<size_t>& members = firsts[shard];
    if (members.empty()) continue;
    ShardLookup lookup = LookUp(shards_[shard].get(), ids, members);
    for (size_t j = 0; j < members.size(); ++j) {
      if (lookup.statuses[j].ok()) {
        ++result.duplicates;
        continue;
      }
      if (!lookup.statuses[j].IsNotFound()) {
        return FromRocks(lookup.statuses[j], absl::StrCat("looking up document ", ids[members[j]]));
      }
      writes[shard].Put(lookup.keys[j], EncodeValue(batch[members[j]]));
      ++result.added;
    }
  }
  // Shards sync in parallel: each fsync waits on the disk, not the CPU.
  std::vector<absl::Status> outcomes(shards_.size());
  std::vector<std::thread> writers;
  for (size_t shard = 0; shard < shards_.size(); ++shard) {
    if (writes[shard].Count() == 0 || !write_failed_[shard]) continue;
    // A failed write (a full disk) stops the shard's writes until resumed.
    // Busy: RocksDB is already recovering by itself; the write tells
    // whether it has.
    const rocksdb::Status resumed = shards_[shard]->Resume();
    if (!resumed.ok() && !resumed.IsBusy()) {
      return FromRocks(resumed, absl::StrCat("resuming shard ", ShardPath(shard)));
    }
  }
  for (size_t shard = 0; shard < shards_.size(); ++shard) {
    if (writes[shard].Count() == 0) continue;
    writers.emplace_back([this, shard, &writes, &outcomes] {
      rocksdb::WriteOptions sync;
      sync.sync = true;
      outcomes[shard] = FromRocks(shards_[shard]->Write(sync, &writes[shard]),
                                  absl::StrCat("writing shard ", ShardPath(shard)));
      write_failed_[shard] = outcomes[shard].ok() ? 0 : 1;
    });
  }
  for (std::thread& t : writers) t.join();
  for (const absl::Status& s : outcomes) {
    MAXIMUS_RETURN_IF_ERROR(s);
  }
  return result;
}

absl::StatusOr<Document> TokenStore::Get(absl::string_view id) const {
  if (!IsDocumentId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("document id \"", id, "\" is not 64 lowercase hex digits"));
  }
  const int shard = ShardOf(id, num_shards());
  MAXIMUS_RETURN_IF_ERROR(CheckShard(shard));
  rocksdb::PinnableSlice value;
  const rocksdb::Status s =
      shards_[shard]->Get(rocksdb::ReadOptions(), shards_[shard]->DefaultColumnFamily(),
                          absl::StrCat(kDocPrefix, id), &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("no document ", id));
  if (!s.ok()) return FromRocks(s, absl::StrCat("reading document ", id));
  return DecodeValue(id, absl::string_view(value.data(), value.size()));
}

std::vector<absl::StatusOr<Document>> TokenStore::GetMany(absl::Span<const std::string> ids) const {
  std::vector<absl::StatusOr<Document>> results(ids.size(), absl::UnknownError("unset"));
  std::vector<std::vector<size_t>> by_shard(shards_.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!IsDocumentId(ids[i])) {
      results[i] = absl::InvalidArgumentError(
          absl::StrCat("document id \"", ids[i], "\" is not 64 lowercase hex digits"));
      continue;
    }
    const int shard = ShardOf(ids[i], num_shards());
    if (absl::Status s = CheckShard(shard); !s.ok()) {
      results[i] = s;
      continue;
    }
    by_shard[shard].push_back(i);
  }
  for (size_t shard = 0; shard < shards_.size(); ++shard) {
    const std::vector<size_t>& members = by_shard[shard];
    if (members.empty()) continue;
    ShardLookup lookup = LookUp(shards_[shard].get(), ids, members);
    for (size_t j = 0; j < members.size(); ++j) {
      const std::string& id = ids[members[j]];
      const rocksdb::Status& status = lookup.statuses[j];
      if (status.IsNotFound()) {
        results[members[j]] = absl::NotFoundError(absl::StrCat("no document ", id));
      } else if (!status.ok()) {
        results[members[j]] = FromRocks(status, absl::StrCat("reading document ", id));
      } else {
        results[members[j]] =
            DecodeValue(id, absl::string_view(lookup.values[j].data(), lookup.values[j].size()));
      }
    }
  }
  return results;
}

absl::Status TokenStore::ForEachDecodedDocument(
    int shard, const std::function<void(absl::string_view id, Document&& doc)>& fn) const {
  MAXIMUS_RETURN_IF_ERROR(CheckShard(shard));
  std::unique_ptr<rocksdb::Iterator> it(shards_[shard]->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kDocPrefix); it->Valid() && it->key().starts_with(kDocPrefix); it->Next()) {
    const absl::string_view id(it->key().data() + sizeof(kDocPrefix) - 1,
                               it->key().size() - (sizeof(kDocPrefix) - 1));
    MAXIMUS_ASSIGN_OR_RETURN(
        Document doc, DecodeValue(id, absl::string_view(it->value().data(), it->value().size())));
    fn(id, std::move(doc));
  }
  return FromRocks(it->status(), absl::StrCat("iterating shard ", shard));
}

std::string TokenStore::ShardPath(int shard) const {
  return absl::StrCat(dir_, "/", ShardDirName(shard, num_shards()));
}

absl::Status TokenStore::CheckShard(int shard) const {
  if (shard < 0 || shard >= num_shards()) {
    return absl::OutOfRangeError(absl::StrCat("shard ", shard, " outside [0, ", num_shards(), ")"));
  }
  if (shards_[shard] == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("shard ", shard, " is not open here"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> TokenStore::DocumentIds(int shard) const {
  MAXIMUS_RETURN_IF_ERROR(CheckShard(shard));
  std::vector<std::string> ids;
  std::unique_ptr<rocksdb::Iterator> it(shards_[shard]->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kDocPrefix); it->Valid() && it->key().starts_with(kDocPrefix); it->Next()) {
    ids.push_back(it->key().ToString().substr(sizeof(kDocPrefix) - 1));
  }
  MAXIMUS_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("iterating shard ", shard)));
  return ids;
}

absl::Status TokenStore::ForEachDocument(
    int shard, const std::function<void(absl::string_view id, uint32_t tokens)>& fn) const {
  MAXIMUS_RETURN_IF_ERROR(CheckShard(shard));
  std::unique_ptr<rocksdb::Iterator> it(shards_[shard]->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kDocPrefix); it->Valid() && it->key().starts_with(kDocPrefix); it->Next()) {
    const absl::string_view id(it->key().data() + sizeof(kDocPrefix) - 1,
                               it->key().size() - (sizeof(kDocPrefix) - 1));
    MAXIMUS_ASSIGN_OR_RETURN(
        const uint32_t n,
        ValueTokenCount(id, absl::string_view(it->value().data(), it->value().size())));
    fn(id, n);
  }
  return FromRocks(it->status(), absl::StrCat("iterating shard ", shard));
}

absl::StatusOr<bool> TokenStore::HasDocuments() const {
  for (int shard : open_shards_) {
    std::unique_ptr<rocksdb::Iterator> it(shards_[shard]->NewIterator(rocksdb::ReadOptions()));
    it->Seek(kDocPrefix);
    if (it->Valid() && it->key().starts_with(kDocPrefix)) return true;
    MAXIMUS_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("iterating shard ", shard)));
  }
  return false;
}

absl::StatusOr<ShardStats> TokenStore::GetShardStats(int shard) const {
  ShardStats stats;
  MAXIMUS_RETURN_IF_ERROR(ForEachDocument(shard, [&stats](absl::string_view, uint32_t tokens) {
    ++stats.documents;
    stats.tokens += tokens;
  }));
  return stats;
}

}  // namespace maximus::data
