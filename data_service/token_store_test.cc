#include "data_service/token_store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace maximus::data {
namespace {

constexpr char kFingerprint[] = "5f1c0ffee0000000000000000000000000000000000000000000000000000001";
constexpr int32_t kVocab = 1000;

std::string FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

StoreMetadata Meta(int num_shards) {
  StoreMetadata m;
  m.num_shards = num_shards;
  m.tokenizer_fingerprint = kFingerprint;
  m.vocab_size = kVocab;
  return m;
}

// Distinct documents of varied lengths; odd ones carry a loss mask.
std::vector<Document> MakeDocs(int count, int seed) {
  std::vector<Document> docs(count);
  for (int i = 0; i < count; ++i) {
    const int length = 1 + (i * 7 + seed) % 50;
    for (int j = 0; j < length; ++j) docs[i].tokens.push_back((seed * 131 + i * 17 + j) % kVocab);
    docs[i].tokens.push_back(i % kVocab);  // keeps documents of one seed distinct
    docs[i].tokens.push_back(seed % kVocab);
    if (i % 2 == 1) {
      for (size_t j = 0; j < docs[i].tokens.size(); ++j) docs[i].loss_mask.push_back(j % 3 != 0);
    }
  }
  return docs;
}

std::unique_ptr<TokenStore> CreateOrDie(const std::string& dir, int num_shards) {
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Create(dir, Meta(num_shards));
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(base::Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(base::Crc32c(""), 0u);
}

TEST(TokenStoreTest, RoundTrip) {
  auto store = CreateOrDie(FreshDir("round_trip"), 4);
  ASSERT_NE(store, nullptr);
  const std::vector<Document> docs = MakeDocs(40, 1);
  absl::StatusOr<WriteResult> result = store->AddDocuments(docs);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->added, 40);
  EXPECT_EQ(result->duplicates, 0);
  ASSERT_EQ(result->ids.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    EXPECT_EQ(result->ids[i], TokenStore::DocumentId(docs[i].tokens));
    absl::StatusOr<Document> got = store->Get(result->ids[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->tokens, docs[i].tokens);
    EXPECT_EQ(got->loss_mask, docs[i].loss_mask);
  }
  int64_t documents = 0, tokens = 0, expected_tokens = 0;
  for (const Document& d : docs) expected_tokens += d.tokens.size();
  for (int shard = 0; shard < 4; ++shard) {
    absl::StatusOr<ShardStats> stats = store->GetShardStats(shard);
    ASSERT_TRUE(stats.ok()) << stats.status();
    documents += stats->documents;
    tokens += stats->tokens;
  }
  EXPECT_EQ(documents, 40);
  EXPECT_EQ(tokens, expected_tokens);
  EXPECT_EQ(store->Get(std::string(64, 'a')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Get("nothex").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->GetShardStats(4).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(TokenStoreTest, GetManyAndScansAgreeWithGet) {
  auto store = CreateOrDie(FreshDir("get_many"), 3);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(*store->HasDocuments());
  const std::vector<Document> docs = MakeDocs(30, 4);
  auto written = store->AddDocuments(docs);
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*store->HasDocuments());
  std::vector<std::string> ids = written->ids;
  ids.push_back(std::string(64, 'a'));  // absent
  ids.push_back("not-an-id");
  std::vector<absl::StatusOr<Document>> got = store->GetMany(ids);
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(got[i]->tokens, docs[i].tokens);
    EXPECT_EQ(got[i]->loss_mask, docs[i].loss_mask);
  }
  EXPECT_EQ(got[30].status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got[31].status().code(), absl::StatusCode::kInvalidArgument);
  std::map<std::string, Document> scanned;
  std::map<std::string, uint32_t> lengths;
  for (int shard = 0; shard < 3; ++shard) {
    ASSERT_TRUE(store
                    ->ForEachDecodedDocument(shard,
                                             [&](absl::string_view id, Document&& doc) {
                                               scanned[std::string(id)] = std::move(doc);
                                             })
                    .ok());
    ASSERT_TRUE(store
                    ->ForEachDocument(shard, [&](absl::string_view id,
                                                 uint32_t n) { lengths[std::string(id)] = n; })
                    .ok());
  }
  ASSERT_EQ(scanned.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    EXPECT_EQ(scanned[written->ids[i]].tokens, docs[i].tokens);
    EXPECT_EQ(lengths[written->ids[i]], docs[i].tokens.size());
  }
}

TEST(TokenStoreTest, SomeShardsOpen) {
  const std::string dir = FreshDir("some_shards");
  std::vector<std::string> ids;
  {
    auto store = CreateOrDie(dir, 4);
    ASSERT_NE(store, nullptr);
    auto written = store->AddDocuments(MakeDocs(40, 6));
    ASSERT_TRUE(written.ok());
    ids = written->ids;
  }
  auto low = TokenStore::Open(dir, kFingerprint, 4, {0, 1});
  ASSERT_TRUE(low.ok()) << low.status();
  EXPECT_EQ((*low)->open_shards(), (std::vector<int>{0, 1}));
  EXPECT_FALSE((*low)->owns_all_shards());
  // A second process-like opener can take the other shards at the same time.
  auto high = TokenStore::Open(dir, kFingerprint, 4, {2, 3});
  ASSERT_TRUE(high.ok()) << high.status();
  for (const std::string& id : ids) {
    const int shard = TokenStore::ShardOf(id, 4);
    TokenStore* owner = shard < 2 ? low->get() : high->get();
    TokenStore* other = shard < 2 ? high->get() : low->get();
    EXPECT_TRUE(owner->Get(id).ok());
    EXPECT_EQ(other->Get(id).status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ((*low)->GetShardStats(2).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TokenStore::Open(dir, kFingerprint, 4, {4}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenStoreTest, Layout) {
  const std::string dir = FreshDir("layout");
  auto store = CreateOrDie(dir, 4);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(std::filesystem::exists(dir + "/store.json"));
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/shard-00000-of-00004"));
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/shard-00003-of-00004"));
  // SHA-256 of the 4 bytes 01 00 00 00.
  EXPECT_EQ(TokenStore::DocumentId(std::vector<int32_t>{1}),
            "67abdd721024f0ff4e0b3f4c2fc13bc5bad42d0b7851d456d88d203d15aaa450");
  // 0x67abdd721024f0ff mod 4 == 3.
  EXPECT_EQ(TokenStore::ShardOf(TokenStore::DocumentId(std::vector<int32_t>{1}), 4), 3);
}

TEST(TokenStoreTest, Dedup) {
  auto store = CreateOrDie(FreshDir("dedup"), 3);
  ASSERT_NE(store, nullptr);
  std::vector<Document> docs = MakeDocs(10, 2);
  docs.push_back(docs[3]);  // repeated within the batch
  absl::StatusOr<WriteResult> first = store->AddDocuments(docs);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->added, 10);
  EXPECT_EQ(first->duplicates, 1);
  EXPECT_EQ(first->ids[10], first->ids[3]);
  absl::StatusOr<WriteResult> second = store->AddDocuments(docs);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->added, 0);
  EXPECT_EQ(second->duplicates, 11);
  EXPECT_EQ(second->ids, first->ids);
  int64_t documents = 0;
  for (int shard = 0; shard < 3; ++shard) documents += store->GetShardStats(shard)->documents;
  EXPECT_EQ(documents, 10);
}

TEST(TokenStoreTest, ShardingDeterministicAndSpread) {
  const std::vector<Document> docs = MakeDocs(400, 3);
  std::map<int, int> per_shard;
  for (const Document& d : docs) {
    const std::string id = TokenStore::DocumentId(d.tokens);
    const int shard = TokenStore::ShardOf(id, 8);
    EXPECT_EQ(shard, TokenStore::ShardOf(id, 8));
    ++per_shard[shard];
  }
  ASSERT_EQ(per_shard.size(), 8u);
  for (const auto& [shard, count] : per_shard) {
    EXPECT_GT(count, 20) << "shard " << shard;
    EXPECT_LT(count, 80) << "shard " << shard;
  }

  auto store = CreateOrDie(FreshDir("spread"), 8);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddDocuments(docs).ok());
  std::set<std::string> all;
  for (int shard = 0; shard < 8; ++shard) {
    absl::StatusOr<std::vector<std::string>> ids = store->DocumentIds(shard);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(static_cast<int>(ids->size()), per_shard[shard]);
    EXPECT_TRUE(std::is_sorted(ids->begin(), ids->end()));
    for (const std::string& id : *ids) {
      EXPECT_EQ(TokenStore::ShardOf(id, 8), shard);
      all.insert(id);
    }
  }
  EXPECT_EQ(all.size(), docs.size());
}

TEST(TokenStoreTest, ReopenKeepsEverything) {
  const std::string dir = FreshDir("reopen");
  const std::vector<Document> docs = MakeDocs(30, 4);
  std::vector<std::string> ids;
  {
    auto store = CreateOrDie(dir, 2);
    ASSERT_NE(store, nullptr);
    absl::StatusOr<WriteResult> result = store->AddDocuments(docs);
    ASSERT_TRUE(result.ok()) << result.status();
    ids = result->ids;
  }
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Open(dir, kFingerprint, 2);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->metadata().vocab_size, kVocab);
  for (size_t i = 0; i < docs.size(); ++i) {
    absl::StatusOr<Document> got = (*store)->Get(ids[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->tokens, docs[i].tokens);
    EXPECT_EQ(got->loss_mask, docs[i].loss_mask);
  }
  absl::StatusOr<WriteResult> again = (*store)->AddDocuments(docs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates, 30);
}

// Files in a directory, recursively.
int CountFiles(const std::string& dir) {
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) ++files;
  }
  return files;
}

// Every open used to leave one more empty WAL and one more old info log per
// shard (210 files after 100 opens). Now a shard holds CURRENT, IDENTITY,
// LOCK, a MANIFEST, two OPTIONS files, LOG and at most two old ones, one WAL,
// and a few table files (10 files after this test).
constexpr int kMaxFilesPerShard = 16;

TEST(TokenStoreTest, OpeningAndClosingLeaksNoFiles) {
  const std::string dir = FreshDir("no_leak");
  constexpr int kShards = 2;
  {
    auto store = CreateOrDie(dir, kShards);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->AddDocuments(MakeDocs(20, 1)).ok());
  }
  int64_t added = 20;
  for (int i = 0; i < 50; ++i) {
    auto store = TokenStore::Open(dir, kFingerprint, kShards);
    ASSERT_TRUE(store.ok()) << store.status();
    // The first 25 opens only read; then every other one writes.
    if (i >= 25 && i % 2 == 0) {
      ASSERT_TRUE((*store)->AddDocuments(MakeDocs(1, 100 + i)).ok());
      ++added;
    }
  }
  for (int shard = 0; shard < kShards; ++shard) {
    const std::string path = dir + "/" + TokenStore::ShardDirName(shard, kShards);
    EXPECT_LE(CountFiles(path), kMaxFilesPerShard) << path;
  }
  auto store = TokenStore::Open(dir, kFingerprint, kShards);
  ASSERT_TRUE(store.ok()) << store.status();
  int64_t documents = 0;
  for (int shard = 0; shard < kShards; ++shard)
    documents += (*store)->GetShardStats(shard)->documents;
  EXPECT_EQ(documents, added);
}

void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(TokenStoreTest, ShardsWithoutStoreJsonAreNotReplacedByANewStore) {
  const std::string dir = FreshDir("lost_store_json");
  {
    auto store = CreateOrDie(dir, 3);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->AddDocuments(MakeDocs(10, 2)).ok());
  }
  std::filesystem::remove(dir + "/store.json");
  EXPECT_EQ(TokenStore::ReadMetadata(dir).status().code(), absl::StatusCode::kNotFound);
  // Another shard count: the old shards are named, nothing is created.
  absl::StatusOr<std::unique_ptr<TokenStore>> other = TokenStore::Create(dir, Meta(4));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_TRUE(absl::StrContains(other.status().message(), "shard-00000-of-00003"))
      << other.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00000-of-00004"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/store.json"));
  // The same shard count: the shards hold documents, so this is no
  // interrupted Create to finish.
  absl::StatusOr<std::unique_ptr<TokenStore>> same = TokenStore::Create(dir, Meta(3));
  EXPECT_EQ(same.status().code(), absl::StatusCode::kFailedPrecondition) << same.status();
  EXPECT_TRUE(absl::StrContains(same.status().message(), "holds documents")) << same.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/store.json"));
}

TEST(TokenStoreTest, InterruptedCreateIsFinished) {
  const std::string dir = FreshDir("interrupted_create");
  { ASSERT_NE(CreateOrDie(dir, 2), nullptr); }
  std::filesystem::remove(dir + "/store.json");
  EXPECT_NE(CreateOrDie(dir, 2), nullptr);
}

TEST(TokenStoreTest, DamagedStoreJsonIsAnErrorNamingTheShards) {
  const std::string dir = FreshDir("damaged_store_json");
  { ASSERT_NE(CreateOrDie(dir, 2), nullptr); }
  for (const std::string& text :
       {std::string(""), std::string("{\"num_shards\": 2"), std::string("[1, 2]")}) {
    WriteText(dir + "/store.json", text);
    absl::StatusOr<StoreMetadata> meta = TokenStore::ReadMetadata(dir);
    EXPECT_EQ(meta.status().code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_TRUE(absl::StrContains(meta.status().message(), "store.json")) << meta.status();
    EXPECT_TRUE(absl::StrContains(meta.status().message(), "shard-00001-of-00002"))
        << meta.status();
    EXPECT_EQ(TokenStore::Open(dir, kFingerprint, 2).status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(TokenStore::Create(dir, Meta(2)).status().code(), absl::StatusCode::kAlreadyExists);
  }
}

TEST(TokenStoreTest, MissingShardDirectoryIsDataLoss) {
  const std::string dir = FreshDir("missing_shard");
  { ASSERT_NE(CreateOrDie(dir, 2), nullptr); }
  std::filesystem::remove_all(dir + "/shard-00001-of-00002");
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Open(dir, kFingerprint, 2);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "shard-00001-of-00002 is missing"))
      << store.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00001-of-00002"));
}

TEST(TokenStoreTest, DirectoryOfOtherFilesIsRefused) {
  const std::string dir = FreshDir("not_a_store");
  WriteText(dir + "/passwd", "root:x:0:0\n");
  WriteText(dir + "/conf.d/x.conf", "x\n");
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Create(dir, Meta(2));
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "passwd")) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "conf.d")) << store.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/store.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/shard-00000-of-00002"));
  // An empty directory is fine.
  const std::string empty = FreshDir("empty_dir");
  std::filesystem::create_directories(empty);
  EXPECT_NE(CreateOrDie(empty, 2), nullptr);
}

TEST(TokenStoreTest, CreateAndOpenAreExplicit) {
  const std::string dir = FreshDir("explicit");
  EXPECT_EQ(TokenStore::Open(dir, kFingerprint, 2).status().code(), absl::StatusCode::kNotFound);
  { ASSERT_NE(CreateOrDie(dir, 2), nullptr); }
  EXPECT_EQ(TokenStore::Create(dir, Meta(2)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(TokenStore::Create(FreshDir("zero"), Meta(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenStoreTest, WrongFingerprintOrShardCountRefused) {
  const std::string dir = FreshDir("mismatch");
  { ASSERT_NE(CreateOrDie(dir, 4), nullptr); }
  const std::string other(64, 'e');
  absl::Status s = TokenStore::Open(dir, other, 4).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(kFingerprint), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find(other), absl::string_view::npos) << s;

  s = TokenStore::Open(dir, kFingerprint, 8).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("4 shards, not 8"), absl::string_view::npos) << s;
}

TEST(TokenStoreTest, CorruptValueIsDataLoss) {
  const std::string dir = FreshDir("corrupt");
  const std::vector<Document> docs = MakeDocs(6, 5);
  std::vector<std::string> ids;
  {
    auto store = CreateOrDie(dir, 2);
    ASSERT_NE(store, nullptr);
    absl::StatusOr<WriteResult> result = store->AddDocuments(docs);
    ASSERT_TRUE(result.ok());
    ids = result->ids;
  }
  // Flip one token byte of document 0 and truncate document 1, behind the
  // store's back.
  for (int which = 0; which < 2; ++which) {
    const int shard = TokenStore::ShardOf(ids[which], 2);
    const std::string path = dir + "/" + TokenStore::ShardDirName(shard, 2);
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    const std::string key = "d/" + ids[which];
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    if (which == 0) {
      value[6] ^= 0x01;
    } else {
      value.resize(value.size() - 3);
    }
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
    ASSERT_TRUE(db->Close().ok());
  }
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Open(dir, kFingerprint, 2);
  ASSERT_TRUE(store.ok()) << store.status();
  for (int which = 0; which < 2; ++which) {
    absl::Status s = (*store)->Get(ids[which]).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_NE(s.message().find(ids[which]), absl::string_view::npos) << s;
  }
  for (size_t i = 2; i < ids.size(); ++i) EXPECT_TRUE((*store)->Get(ids[i]).ok());
}

TEST(TokenStoreTest, InvalidBatchWritesNothing) {
  auto store = CreateOrDie(FreshDir("atomic"), 2);
  ASSERT_NE(store, nullptr);
  std::vector<Document> docs = MakeDocs(8, 6);
  docs[5].tokens[2] = kVocab;
  absl::Status s = store->AddDocuments(docs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("document 5, position 2"), absl::string_view::npos) << s;
  for (int shard = 0; shard < 2; ++shard) EXPECT_EQ(store->GetShardStats(shard)->documents, 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(store->Get(TokenStore::DocumentId(docs[i].tokens)).status().code(),
              absl::StatusCode::kNotFound);
  }
}

TEST(TokenStoreTest, BadInputRejected) {
  auto store = CreateOrDie(FreshDir("bad_input"), 2);
  ASSERT_NE(store, nullptr);
  std::vector<Document> docs = MakeDocs(3, 7);

  docs[1].tokens[4] = -3;
  absl::Status s = store->AddDocuments(docs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("document 1, position 4"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("-3"), absl::string_view::npos) << s;

  docs = MakeDocs(3, 7);
  docs[1].loss_mask.pop_back();
  s = store->AddDocuments(docs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("document 1: loss mask has"), absl::string_view::npos) << s;

  docs = MakeDocs(3, 7);
  docs[2].loss_mask.assign(docs[2].tokens.size(), 2);
  EXPECT_EQ(store->AddDocuments(docs).status().code(), absl::StatusCode::kInvalidArgument);

  docs = MakeDocs(3, 7);
  docs[0].tokens.clear();
  EXPECT_EQ(store->AddDocuments(docs).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store->GetShardStats(0)->documents + store->GetShardStats(1)->documents, 0);
}

}  // namespace
}  // namespace maximus::data
