// Test check shared by the crash tests: after a crash, every acknowledged
// document is present and intact and no stored document is partial.

#ifndef MAXIMUS_DATA_SERVICE_STORE_CHECK_H_
#define MAXIMUS_DATA_SERVICE_STORE_CHECK_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data_service/token_store.h"
#include "gtest/gtest.h"

namespace maximus::data {

// Opens the store in `dir` and checks it against `acknowledged` ids. When
// `sent` is given (id -> document as sent), every stored document must be
// one of them, token for token and mask for mask. Returns the number of
// stored documents.
inline int64_t ExpectStoreIntact(const std::string& dir, const std::set<std::string>& acknowledged,
                                 const std::map<std::string, Document>* sent = nullptr) {
  absl::StatusOr<StoreMetadata> meta = TokenStore::ReadMetadata(dir);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (!meta.ok()) return -1;
  absl::StatusOr<std::unique_ptr<TokenStore>> store =
      TokenStore::Open(dir, meta->tokenizer_fingerprint, meta->num_shards);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return -1;
  for (const std::string& id : acknowledged) {
    absl::StatusOr<Document> doc = (*store)->Get(id);
    EXPECT_TRUE(doc.ok()) << "acknowledged document lost: " << doc.status();
    if (doc.ok()) {
      EXPECT_EQ(TokenStore::DocumentId(doc->tokens), id);
    }
  }
  int64_t stored = 0;
  for (int shard = 0; shard < meta->num_shards; ++shard) {
    absl::StatusOr<std::vector<std::string>> ids = (*store)->DocumentIds(shard);
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (!ids.ok()) continue;
    for (const std::string& id : *ids) {
      absl::StatusOr<Document> doc = (*store)->Get(id);
      EXPECT_TRUE(doc.ok()) << doc.status();
      if (!doc.ok()) continue;
      EXPECT_EQ(TokenStore::DocumentId(doc->tokens), id);
      EXPECT_TRUE(doc->loss_mask.empty() || doc->loss_mask.size() == doc->tokens.size());
      if (sent != nullptr) {
        auto it = sent->find(id);
        EXPECT_NE(it, sent->end()) << "stored document " << id << " was never sent";
        if (it != sent->end()) {
          EXPECT_EQ(doc->tokens, it->second.tokens);
          EXPECT_EQ(doc->loss_mask, it->second.loss_mask);
        }
      }
      ++stored;
    }
    EXPECT_TRUE((*store)->GetShardStats(shard).ok());
  }
  EXPECT_GE(stored, static_cast<int64_t>(acknowledged.size()));
  return stored;
}

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_STORE_CHECK_H_
