// The store on a disk that fills up: writes fail with RESOURCE_EXHAUSTED
// naming the shard, acknowledged documents survive, and a store whose disk
// stays full opens read-only.

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "data_service/limited_space_file_system.h"
#include "data_service/store_check.h"
#include "data_service/token_store.h"
#include "gtest/gtest.h"

namespace maximus::data {
namespace {

constexpr char kFingerprint[] = "d15cf0110000000000000000000000000000000000000000000000000000000a";
constexpr int32_t kVocab = 1000;
constexpr int kShards = 2;

class StoreDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    fs_ = std::make_shared<LimitedSpaceFileSystem>(-1);
    env_ = NewEnvOn(fs_);
    options_.env = env_.get();
  }

  std::unique_ptr<TokenStore> Create() {
    StoreMetadata meta;
    meta.num_shards = kShards;
    meta.tokenizer_fingerprint = kFingerprint;
    meta.vocab_size = kVocab;
    auto store = TokenStore::Create(dir_, meta, options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Distinct documents of 200 tokens, batch `b`.
  static std::vector<Document> Batch(int b) {
    std::vector<Document> docs(10);
    for (int i = 0; i < 10; ++i) {
      docs[i].tokens = {b % kVocab, b / kVocab, i};
      for (int j = 0; j < 197; ++j) docs[i].tokens.push_back((b * 31 + i * 7 + j) % kVocab);
    }
    return docs;
  }

  // Adds batches until one fails; returns its status, the ids of the OK
  // ones in `acknowledged`.
  absl::Status FillUp(TokenStore& store, std::set<std::string>* acknowledged) {
    for (int b = 0; b < 2000; ++b) {
      absl::StatusOr<WriteResult> written = store.AddDocuments(Batch(b));
      if (!written.ok()) return written.status();
      acknowledged->insert(written->ids.begin(), written->ids.end());
    }
    return absl::OkStatus();
  }

  std::string dir_;
  std::shared_ptr<LimitedSpaceFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  StoreOptions options_;
};

TEST_F(StoreDiskFullTest, FullDiskIsResourceExhaustedAndAcknowledgedDocumentsSurvive) {
  std::set<std::string> acknowledged;
  {
    std::unique_ptr<TokenStore> store = Create();
    ASSERT_NE(store, nullptr);
    fs_->set_free_bytes(256 << 10);
    const absl::Status full = FillUp(*store, &acknowledged);
    EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
    EXPECT_TRUE(absl::StrContains(full.message(), "no space left")) << full;
    EXPECT_TRUE(absl::StrContains(full.message(), dir_ + "/shard-0000")) << full;
    EXPECT_GT(acknowledged.size(), 0u);
    // Still full: still refused, and what was acknowledged is readable.
    absl::StatusOr<WriteResult> again = store->AddDocuments(Batch(5000));
    EXPECT_TRUE(absl::IsResourceExhausted(again.status())) << again.status();
    for (const std::string& id : acknowledged) {
      ASSERT_TRUE(store->Get(id).ok()) << id;
    }
    // Closing on a full disk must not abort.
  }
  fs_->set_free_bytes(-1);
  EXPECT_GE(ExpectStoreIntact(dir_, acknowledged), static_cast<int64_t>(acknowledged.size()));

  // With space again, the store opens for writing and takes documents.
  auto reopened = TokenStore::Open(dir_, kFingerprint, kShards, {}, options_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_FALSE((*reopened)->read_only());
  absl::StatusOr<WriteResult> written = (*reopened)->AddDocuments(Batch(6000));
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->added, 10);
}

TEST_F(StoreDiskFullTest, WritesResumeOnceSpaceIsFreed) {
  std::unique_ptr<TokenStore> store = Create();
  ASSERT_NE(store, nullptr);
  std::set<std::string> acknowledged;
  fs_->set_free_bytes(128 << 10);
  ASSERT_TRUE(absl::IsResourceExhausted(FillUp(*store, &acknowledged)));
  fs_->set_free_bytes(-1);
  // RocksDB retries its recovery every few seconds; until then writes are
  // refused as before.
  absl::StatusOr<WriteResult> written = store->AddDocuments(Batch(7000));
  for (int attempt = 0; attempt < 200 && !written.ok(); ++attempt) {
    EXPECT_TRUE(absl::IsResourceExhausted(written.status())) << written.status();
    absl::SleepFor(absl::Milliseconds(100));
    written = store->AddDocuments(Batch(7000));
  }
  ASSERT_TRUE(written.ok()) << written.status();
  acknowledged.insert(written->ids.begin(), written->ids.end());
  store.reset();
  ExpectStoreIntact(dir_, acknowledged);
}

TEST_F(StoreDiskFullTest, OpensReadOnlyWhileTheDiskStaysFull) {
  std::set<std::string> acknowledged;
  {
    std::unique_ptr<TokenStore> store = Create();
    ASSERT_NE(store, nullptr);
    for (int b = 0; b < 5; ++b) {
      absl::StatusOr<WriteResult> written = store->AddDocuments(Batch(b));
      ASSERT_TRUE(written.ok()) << written.status();
      acknowledged.insert(written->ids.begin(), written->ids.end());
    }
  }
  fs_->set_free_bytes(0);

  StoreOptions no_fallback = options_;
  no_fallback.read_only_if_disk_full = false;
  auto writable = TokenStore::Open(dir_, kFingerprint, kShards, {}, no_fallback);
  EXPECT_TRUE(absl::IsResourceExhausted(writable.status())) << writable.status();
  EXPECT_TRUE(absl::StrContains(writable.status().message(), "no space left")) << writable.status();

  auto store = TokenStore::Open(dir_, kFingerprint, kShards, {}, options_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->read_only());
  EXPECT_TRUE(absl::StrContains((*store)->read_only_reason(), "no space left"))
      << (*store)->read_only_reason();
  for (const std::string& id : acknowledged) {
    ASSERT_TRUE((*store)->Get(id).ok()) << id;
  }
  int64_t documents = 0;
  for (int shard = 0; shard < kShards; ++shard) {
    auto stats = (*store)->GetShardStats(shard);
    ASSERT_TRUE(stats.ok()) << stats.status();
    documents += stats->documents;
  }
  EXPECT_EQ(documents, static_cast<int64_t>(acknowledged.size()));
  absl::StatusOr<WriteResult> refused = (*store)->AddDocuments(Batch(100));
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "read-only")) << refused.status();
}

TEST_F(StoreDiskFullTest, ReadOnlyOnRequest) {
  { ASSERT_NE(Create(), nullptr); }
  StoreOptions read_only;
  read_only.read_only = true;
  auto store = TokenStore::Open(dir_, kFingerprint, kShards, {}, read_only);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->read_only());
  absl::StatusOr<WriteResult> refused = (*store)->AddDocuments(Batch(0));
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
}

}  // namespace
}  // namespace maximus::data
