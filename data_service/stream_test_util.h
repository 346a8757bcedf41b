// Helpers for tests of packed-batch streams.

#ifndef MAXIMUS_DATA_SERVICE_STREAM_TEST_UTIL_H_
#define MAXIMUS_DATA_SERVICE_STREAM_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data_service/batch_stream.h"
#include "data_service/token_store.h"
#include "gtest/gtest.h"

namespace maximus::data {

inline std::string FreshTestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

// `count` distinct documents of 1..max_length tokens in [0, vocab) other than
// `eos` (so the end-of-text never occurs inside one); every third carries a
// loss mask.
inline std::vector<Document> SyntheticDocuments(int count, int max_length, int32_t eos,
                                                uint64_t seed, int32_t vocab = 0) {
  if (vocab == 0) vocab = eos + 1;
  std::vector<Document> docs(count);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  auto next = [&x]() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < count; ++i) {
    const int length = 1 + static_cast<int>(next() % max_length);
    docs[i].tokens.push_back(i < eos ? i : i + 1);  // distinct
    for (int j = 1; j < length; ++j) {
      const int32_t t = static_cast<int32_t>(next() % (vocab - 1));
      docs[i].tokens.push_back(t < eos ? t : t + 1);
    }
    if (i % 3 == 2) {
      for (int j = 0; j < static_cast<int>(docs[i].tokens.size()); ++j) {
        docs[i].loss_mask.push_back(static_cast<uint8_t>(next() % 2));
      }
    }
  }
  return docs;
}

// Tokens and loss mask of a stream's batches, concatenated.
struct FlatStream {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  std::vector<PackedBatch> batches;
};

// Reads up to `max_batches` batches (all of a bounded stream if -1).
inline FlatStream ReadStream(BatchStream* stream, int max_batches) {
  FlatStream flat;
  PackedBatch batch;
  for (int i = 0; max_batches < 0 || i < max_batches; ++i) {
    absl::StatusOr<bool> more = stream->Next(&batch);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    EXPECT_EQ(batch.tokens().size(), size_t{batch.rows()} * batch.row_length() * 4);
    const absl::Span<const int32_t> tokens = BatchTokens(batch);
    flat.tokens.insert(flat.tokens.end(), tokens.begin(), tokens.end());
    const std::vector<uint8_t> mask = BatchLossMask(batch);
    flat.mask.insert(flat.mask.end(), mask.begin(), mask.end());
    flat.batches.push_back(batch);
  }
  return flat;
}

// Cuts a token stream into documents at each end-of-text (synthetic
// documents never contain it); the padding after the last document yields
// empty pieces, which are dropped.
inline std::vector<std::vector<int32_t>> SplitDocuments(const std::vector<int32_t>& tokens,
                                                        int32_t eos) {
  std::vector<std::vector<int32_t>> docs;
  std::vector<int32_t> current;
  for (int32_t t : tokens) {
    if (t == eos) {
      if (!current.empty()) docs.push_back(current);
      current.clear();
    } else {
      current.push_back(t);
    }
  }
  if (!current.empty()) docs.push_back(current);
  return docs;
}

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_STREAM_TEST_UTIL_H_
