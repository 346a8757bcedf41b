// The index on a real RocksDB store: search against brute force, both
// element types, persistence across reopening, bad inputs, metadata
// filters, and concurrent upserts with searches.

#include "embedding_service/embedding_index.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/shard_of.h"
#include "embedding_service/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace maximus::embedding {
namespace {

using ::testing::HasSubstr;

using testing::RandomVector;
using testing::TestDir;

// testing::RandomRecords with {"parity": even|odd, "n": i} as metadata.
std::vector<VectorRecord> RandomRecords(int64_t n, int64_t dims, uint64_t seed,
                                        const std::string& prefix = "doc") {
  std::vector<VectorRecord> records = testing::RandomRecords(n, dims, seed, prefix);
  for (int64_t i = 0; i < n; ++i) {
    records[i].metadata = {{"parity", i % 2 == 0 ? "even" : "odd"}, {"n", absl::StrCat(i)}};
  }
  return records;
}

// Brute force in double: the k best ids by cosine.
std::vector<std::string> BruteForce(const std::vector<VectorRecord>& records,
                                    const std::vector<float>& query, int64_t k,
                                    const std::string& parity = "") {
  std::vector<std::pair<double, std::string>> scored;
  const std::vector<float> q = NormalizedPrefix(query, query.size());
  for (const VectorRecord& r : records) {
    if (!parity.empty() && r.metadata[0].second != parity) continue;
    const std::vector<float> v = NormalizedPrefix(r.values, r.values.size());
    double dot = 0;
    for (size_t j = 0; j < q.size(); ++j) dot += static_cast<double>(q[j]) * v[j];
    scored.emplace_back(-dot, r.id);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> ids;
  for (int64_t i = 0; i < k && i < static_cast<int64_t>(scored.size()); ++i) {
    ids.push_back(scored[i].second);
  }
  return ids;
}

std::vector<std::string> Ids(const std::vector<SearchHit>& hits) {
  std::vector<std::string> ids;
  for (const SearchHit& h : hits) ids.push_back(h.id);
  return ids;
}

constexpr int64_t kDims = 256;

TEST(VectorRecordTest, RoundTripsAndDetectsDamage) {
  std::mt19937_64 rng(1);
  VectorRecord record{"x", RandomVector(40, rng), {{"a", "b"}, {"", "empty key"}}};
  for (ElementType type : {ElementType::kFloat32, ElementType::kFloat16}) {
    const std::string bytes = EncodeVectorRecord(record, type);
    absl::StatusOr<VectorRecord> back = DecodeVectorRecord("x", bytes, type, 40);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->metadata, record.metadata);
    for (int j = 0; j < 40; ++j) {
      EXPECT_NEAR(back->values[j], record.values[j],
                  type == ElementType::kFloat16 ? 2e-3 * std::abs(record.values[j]) : 0);
    }
    // Every truncation and every flipped byte is caught.
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      EXPECT_EQ(DecodeVectorRecord("x", bytes.substr(0, cut), type, 40).status().code(),
                absl::StatusCode::kDataLoss);
    }
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::string damaged = bytes;
      damaged[i] ^= 0x10;
      EXPECT_EQ(DecodeVectorRecord("x", damaged, type, 40).status().code(),
                absl::StatusCode::kDataLoss);
    }
    EXPECT_EQ(DecodeVectorRecord("x", bytes, type, 41).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

class EmbeddingIndexTest : public ::testing::TestWithParam<ElementType> {
 protected:
  std::unique_ptr<EmbeddingIndex> OpenIndex(const std::string& dir) {
    auto index = EmbeddingIndex::Open(dir, IndexConfig{kDims, GetParam()});
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
};

TEST_P(EmbeddingIndexTest, SearchMatchesBruteForce) {
  auto index = OpenIndex(TestDir("search"));
  const std::vector<VectorRecord> records = RandomRecords(3000, kDims, 2);
  ASSERT_TRUE(index->Upsert(records).ok());
  EXPECT_EQ(index->vectors().size(), 3000);
  std::mt19937_64 rng(3);
  int exact_agree = 0, coarse_agree = 0;
  const int kQueries = 20;
  for (int q = 0; q < kQueries; ++q) {
    const std::vector<float> query = RandomVector(kDims, rng);
    const std::vector<std::string> truth = BruteForce(records, query, 10);
    SearchOptions exact;
    exact.mode = SearchMode::kExact;
    auto hits = index->Search(query, exact);
    ASSERT_TRUE(hits.ok()) << hits.status();
    ASSERT_EQ(hits->size(), 10u);
    for (size_t i = 1; i < hits->size(); ++i) EXPECT_GE((*hits)[i - 1].score, (*hits)[i].score);
    exact_agree += Ids(*hits) == truth;
    // With every vector a candidate, coarse to fine is exact search.
    SearchOptions all;
    all.k = 30;
    all.oversample = 100;
    auto everything = index->Search(query, all);
    ASSERT_TRUE(everything.ok()) << everything.status();
    everything->resize(10);
    EXPECT_EQ(Ids(*everything), Ids(*hits));
    // Prefiltering on 128 dimensions, and on the default 64.
    for (int64_t prefilter : {64, 128}) {
      SearchOptions coarse;
      coarse.prefilter_dims = prefilter;
      coarse.oversample = 20;
      auto found = index->Search(query, coarse);
      ASSERT_TRUE(found.ok());
      coarse_agree += Ids(*found) == truth;
    }
  }
  // fp16 rounding may swap near-ties; fp32 must agree always.
  EXPECT_GE(exact_agree, GetParam() == ElementType::kFloat32 ? kQueries : kQueries - 3);
  EXPECT_GE(coarse_agree, 2 * kQueries - 8);
}

TEST_P(EmbeddingIndexTest, PersistsAcrossReopening) {
  const std::string dir = TestDir(absl::StrCat("persist", static_cast<int>(GetParam())));
  std::vector<VectorRecord> records = RandomRecords(500, kDims, 4);
  std::vector<std::string> deleted = {"doc3", "doc100", "doc499"};
  std::vector<VectorRecord> stored;
  {
    auto index = OpenIndex(dir);
    ASSERT_TRUE(index->Upsert(records).ok());
    // Replacing one, deleting three.
    records[7].values = RandomRecords(1, kDims, 5)[0].values;
    records[7].metadata = {{"replaced", "yes"}};
    ASSERT_TRUE(index->Upsert({records[7]}).ok());
    ASSERT_TRUE(index->Delete(deleted).ok());
    for (const VectorRecord& r : records) {
      if (auto got = index->Get(r.id); got.ok()) stored.push_back(*got);
    }
  }
  auto index = OpenIndex(dir);
  EXPECT_EQ(index->vectors().size(), 497);
  for (const VectorRecord& before : stored) {
    auto after = index->Get(before.id);
    ASSERT_TRUE(after.ok()) << before.id;
    EXPECT_EQ(after->values, before.values) << before.id;
    EXPECT_EQ(after->metadata, before.metadata) << before.id;
  }
  EXPECT_EQ(index->Get("doc7")->metadata, (Metadata{{"replaced", "yes"}}));
  for (const std::string& id : deleted) {
    EXPECT_EQ(index->Get(id).status().code(), absl::StatusCode::kNotFound);
  }
  // Search after the reopen finds what it found before.
  SearchOptions exact;
  exact.mode = SearchMode::kExact;
  auto hits = index->Search(stored[10].values, exact);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ((*hits)[0].id, stored[10].id);
  // fp16 rounding moves a unit vector's norm by up to ~1e-4.
  EXPECT_NEAR((*hits)[0].score, 1.0, GetParam() == ElementType::kFloat16 ? 3e-4 : 1e-5);
}

TEST_P(EmbeddingIndexTest, FilterKeepsOnlyMatchingVectors) {
  auto index = OpenIndex(TestDir("filter"));
  const std::vector<VectorRecord> records = RandomRecords(1000, kDims, 6);
  ASSERT_TRUE(index->Upsert(records).ok());
  std::mt19937_64 rng(7);
  const std::vector<float> query = RandomVector(kDims, rng);
  for (SearchMode mode : {SearchMode::kExact, SearchMode::kCoarseToFine}) {
    SearchOptions options;
    options.mode = mode;
    options.oversample = 100;
    options.filter = std::make_pair(std::string("parity"), std::string("odd"));
    auto hits = index->Search(query, options);
    ASSERT_TRUE(hits.ok());
    ASSERT_EQ(hits->size(), 10u);
    for (const SearchHit& hit : *hits) EXPECT_EQ(hit.metadata[1].second, "odd") << hit.id;
    if (GetParam() == ElementType::kFloat32) {
      EXPECT_EQ(Ids(*hits), BruteForce(records, query, 10, "odd"));
    }
    options.filter = std::make_pair(std::string("parity"), std::string("none"));
    EXPECT_TRUE(index->Search(query, options)->empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Types, EmbeddingIndexTest,
                         ::testing::Values(ElementType::kFloat32, ElementType::kFloat16),
                         [](const auto& info) {
                           return std::string(ElementTypeName(info.param));
                         });

TEST(EmbeddingIndexErrorsTest, BadInputsNameTheField) {
  auto opened = EmbeddingIndex::Open(TestDir("errors"), IndexConfig{kDims, ElementType::kFloat32});
  ASSERT_TRUE(opened.ok());
  EmbeddingIndex& index = **opened;
  std::vector<VectorRecord> good = RandomRecords(3, kDims, 8);
  ASSERT_TRUE(index.Upsert(good).ok());

  auto expect_invalid = [](const absl::Status& s, const std::string& words) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(words));
  };
  std::vector<VectorRecord> bad = good;
  bad[1].values.pop_back();
  expect_invalid(index.Upsert(bad), "vectors[1].values has 255 dimensions; the index holds 256");
  bad = good;
  bad[2].values[5] = std::numeric_limits<float>::quiet_NaN();
  expect_invalid(index.Upsert(bad), "vectors[2].values[5] is nan");
  bad = good;
  bad[0].values[0] = std::numeric_limits<float>::infinity();
  expect_invalid(index.Upsert(bad), "vectors[0].values[0] is inf");
  bad = good;
  std::fill(bad[0].values.begin(), bad[0].values.end(), 0.0f);
  expect_invalid(index.Upsert(bad), "vectors[0].values is all zeros");
  bad = good;
  bad[1].id = "";
  expect_invalid(index.Upsert(bad), "vectors[1].id is empty");
  bad[1].id = std::string(513, 'x');
  expect_invalid(index.Upsert(bad), "vectors[1].id has 513 bytes");
  bad = good;
  bad[0].metadata.emplace_back("", "v");
  expect_invalid(index.Upsert(bad), "vectors[0].metadata has an empty key");
  expect_invalid(index.Upsert({}), "vectors is empty");
  expect_invalid(index.Upsert(RandomRecords(4097, 4, 1)), "at most 4096");
  // A refused batch stores nothing.
  EXPECT_EQ(index.vectors().size(), 3);

  std::vector<float> query = good[0].values;
  SearchOptions options;
  options.k = 0;
  expect_invalid(index.Search(query, options).status(), "k: 0 is not in [1, 1000]");
  options.k = 1001;
  expect_invalid(index.Search(query, options).status(), "k: 1001 is not in [1, 1000]");
  options.k = 10;
  options.oversample = 0;
  expect_invalid(index.Search(query, options).status(), "oversample: 0");
  options.oversample = 4;
  options.prefilter_dims = 100;
  expect_invalid(index.Search(query, options).status(),
                 "prefilter_dims: 100 is not a prefix size of this index (64, 128, 256)");
  options.prefilter_dims = 64;
  options.filter = std::make_pair(std::string(), std::string("x"));
  expect_invalid(index.Search(query, options).status(), "filter: the key is empty");
  options.filter.reset();
  query.resize(10);
  expect_invalid(index.Search(query, options).status(), "vector has 10 dimensions");
  query = good[0].values;
  query[3] = -std::numeric_limits<float>::infinity();
  expect_invalid(index.Search(query, options).status(), "vector[3] is -inf");
  // Fewer vectors than k: all of them.
  EXPECT_EQ(index.Search(good[0].values, options)->size(), 3u);

  absl::Status unknown = index.Get("nope").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("\"nope\""));
  absl::Status delete_unknown = index.Delete({"doc0", "nope"});
  EXPECT_EQ(delete_unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(delete_unknown.message()), HasSubstr("ids[1]"));
  EXPECT_TRUE(index.Get("doc0").ok()) << "a refused delete deletes nothing";
  expect_invalid(index.Delete({"doc0", "doc1", "doc0"}), "ids[2] repeats ids[0] (\"doc0\")");
  expect_invalid(index.Delete({}), "ids is empty");
}

TEST(EmbeddingIndexErrorsTest, ReopeningWithAnotherShapeIsRefused) {
  const std::string dir = TestDir("shape");
  ASSERT_TRUE(EmbeddingIndex::Open(dir, IndexConfig{64, ElementType::kFloat32}).ok());
  absl::Status other = EmbeddingIndex::Open(dir, IndexConfig{128, ElementType::kFloat32}).status();
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.message()), HasSubstr("64-dimensional fp32"));
  // Without a config, the stored one.
  auto reopened = EmbeddingIndex::Open(dir, std::nullopt);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->config().dims, 64);
  EXPECT_EQ(EmbeddingIndex::Open(TestDir("none"), std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EmbeddingIndexErrorsTest, ShardsRefuseOtherShardsIds) {
  auto opened = EmbeddingIndex::Open(TestDir("shard"), IndexConfig{kDims, ElementType::kFloat32},
                                     IndexLimits(), ShardAssignment{1, 2});
  ASSERT_TRUE(opened.ok());
  std::vector<VectorRecord> records = RandomRecords(20, kDims, 9);
  std::vector<VectorRecord> mine, theirs;
  for (VectorRecord& r : records) (ShardOf(r.id, 2) == 1 ? mine : theirs).push_back(r);
  ASSERT_FALSE(mine.empty());
  ASSERT_FALSE(theirs.empty());
  EXPECT_TRUE((*opened)->Upsert(mine).ok());
  absl::Status refused = (*opened)->Upsert({theirs[0]});
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("belongs to shard 0 of 2"));
}

TEST(EmbeddingIndexConcurrencyTest, UpsertsAndSearchesAtOnce) {
  auto opened =
      EmbeddingIndex::Open(TestDir("concurrent"), IndexConfig{kDims, ElementType::kFloat32});
  ASSERT_TRUE(opened.ok());
  EmbeddingIndex& index = **opened;
  ASSERT_TRUE(index.Upsert(RandomRecords(200, kDims, 10, "base")).ok());
  constexpr int kWriters = 3, kBatches = 20, kBatch = 25;
  std::atomic<bool> writing{true};
  std::atomic<int> searches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBatches; ++b) {
        if (!index.Upsert(RandomRecords(kBatch, kDims, 100 * w + b, absl::StrCat("w", w, "b", b, "_")))
                 .ok()) {
          ++failures;
        }
        // Deletes move the last vector into the freed slot mid-search.
        if (b % 4 == 3 && !index.Delete({absl::StrCat("w", w, "b", b, "_0")}).ok()) ++failures;
      }
    });
  }
  for (int s = 0; s < 2; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937_64 rng(50 + s);
      while (writing) {
        SearchOptions options;
        options.mode = s == 0 ? SearchMode::kExact : SearchMode::kCoarseToFine;
        auto hits = index.Search(RandomVector(kDims, rng), options);
        if (!hits.ok() || hits->size() != 10) ++failures;
        for (const SearchHit& h : *hits) {
          if (!(h.score <= 1.0001f && h.score >= -1.0001f)) ++failures;
        }
        ++searches;
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing = false;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(searches, 0);
  EXPECT_EQ(index.vectors().size(), 200 + kWriters * (kBatches * kBatch - kBatches / 4));
  // Every vector is where its id says.
  for (int w = 0; w < kWriters; ++w) {
    auto got = index.Get(absl::StrCat("w", w, "b0_1"));
    ASSERT_TRUE(got.ok());
    SearchOptions exact;
    exact.mode = SearchMode::kExact;
    exact.k = 1;
    EXPECT_EQ((*index.Search(got->values, exact))[0].id, got->id);
  }
}

}  // namespace
}  // namespace maximus::embedding
