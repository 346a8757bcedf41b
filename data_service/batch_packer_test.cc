#include "data_service/batch_packer.h"

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "data_service/embedded_data_source.h"
#include "data_service/epoch_order.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"

namespace maximus::data {
namespace {

constexpr int32_t kVocab = 1000;
constexpr int32_t kEos = 999;
constexpr char kFingerprint[] = "packer-test";

class BatchPackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("packer_store");
    StoreMetadata meta;
    meta.num_shards = 3;
    meta.tokenizer_fingerprint = kFingerprint;
    meta.vocab_size = kVocab;
    auto store = TokenStore::Create(dir_, meta);
    ASSERT_TRUE(store.ok()) << store.status();
    docs_ = SyntheticDocuments(300, 60, kEos, 11);
    ASSERT_TRUE((*store)->AddDocuments(docs_).ok());
    auto source = EmbeddedDataSource::Open(*std::move(store), kEos);
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
  }

  static StreamBatchesRequest Request(Split split, uint64_t seed, uint32_t rank, uint32_t world,
                                      uint32_t seq_len, uint32_t batch, uint32_t epochs) {
    StreamBatchesRequest r;
    r.mutable_selection()->set_split(split);
    r.mutable_selection()->set_seed(seed);
    r.mutable_selection()->set_rank(rank);
    r.mutable_selection()->set_world_size(world);
    r.mutable_selection()->set_validation_fraction(0.1);
    r.set_seq_len(seq_len);
    r.set_batch_size(batch);
    r.set_num_epochs(epochs);
    return r;
  }

  FlatStream Read(const StreamBatchesRequest& request, int max_batches) {
    auto stream = source_->OpenStream(request);
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return {};
    return ReadStream(stream->get(), max_batches);
  }

  // The documents of a split, as token vectors.
  std::multiset<std::vector<int32_t>> SplitDocs(Split split) const {
    std::multiset<std::vector<int32_t>> out;
    for (const Document& d : docs_) {
      RawId id;
      EXPECT_TRUE(ParseHexId(TokenStore::DocumentId(d.tokens), &id));
      if (InValidation(id, 0.1) == (split == SPLIT_VALIDATION)) out.insert(d.tokens);
    }
    return out;
  }

  std::string dir_;
  std::vector<Document> docs_;
  std::unique_ptr<EmbeddedDataSource> source_;
};

TEST_F(BatchPackerTest, OneEpochHoldsEveryDocumentOfTheSplitOnce) {
  for (Split split : {SPLIT_TRAIN, SPLIT_VALIDATION}) {
    const FlatStream flat = Read(Request(split, 5, 0, 1, 31, 4, 1), -1);
    const std::vector<std::vector<int32_t>> got = SplitDocuments(flat.tokens, kEos);
    EXPECT_EQ(std::multiset<std::vector<int32_t>>(got.begin(), got.end()), SplitDocs(split));
    ASSERT_FALSE(flat.batches.empty());
    for (size_t i = 0; i + 1 < flat.batches.size(); ++i) EXPECT_EQ(flat.batches[i].rows(), 4u);
    EXPECT_EQ(flat.tokens.size() % 32, 0u);
  }
  // The validation split is about a tenth and disjoint from training.
  const auto valid = SplitDocs(SPLIT_VALIDATION);
  EXPECT_GT(valid.size(), 10u);
  EXPECT_LT(valid.size(), 60u);
}

TEST_F(BatchPackerTest, RanksPartitionAnEpochWithNothingDroppedOrRepeated) {
  const int world = 3;
  std::multiset<std::vector<int32_t>> all;
  std::set<size_t> sizes;
  for (int rank = 0; rank < world; ++rank) {
    const FlatStream flat = Read(Request(SPLIT_TRAIN, 9, rank, world, 16, 2, 1), -1);
    const auto docs = SplitDocuments(flat.tokens, kEos);
    sizes.insert(docs.size());
    all.insert(docs.begin(), docs.end());
  }
  EXPECT_EQ(all, SplitDocs(SPLIT_TRAIN));
  EXPECT_GT(sizes.size(), 0u);
}

TEST_F(BatchPackerTest, DeterministicAndReshuffledPerSeedAndEpoch) {
  const FlatStream a = Read(Request(SPLIT_TRAIN, 1, 0, 1, 63, 2, 0), 200);
  const FlatStream b = Read(Request(SPLIT_TRAIN, 1, 0, 1, 63, 2, 0), 200);
  const FlatStream c = Read(Request(SPLIT_TRAIN, 2, 0, 1, 63, 2, 0), 200);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_NE(a.tokens, c.tokens);
  // Endless: 200 batches of 128 tokens cross several epochs (about 9,000
  // tokens each), whose document orders differ.
  ASSERT_GE(a.batches.back().epoch(), 2u);
  const FlatStream one = Read(Request(SPLIT_TRAIN, 1, 0, 1, 63, 2, 1), -1);
  const auto first = SplitDocuments(one.tokens, kEos);
  const auto stream_docs = SplitDocuments(a.tokens, kEos);
  ASSERT_GT(stream_docs.size(), 2 * first.size());
  const std::vector<std::vector<int32_t>> second(stream_docs.begin() + first.size(),
                                                 stream_docs.begin() + 2 * first.size());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), stream_docs.begin()));
  EXPECT_NE(first, second);
  EXPECT_TRUE(std::is_permutation(first.begin(), first.end(), second.begin()));
}

TEST_F(BatchPackerTest, ResumeContinuesExactlyFromAnyBatch) {
  const StreamBatchesRequest request = Request(SPLIT_TRAIN, 3, 1, 2, 47, 3, 0);
  const FlatStream whole = Read(request, 60);
  ASSERT_EQ(whole.batches.size(), 60u);
  std::mt19937 rng(17);
  for (int trial = 0; trial < 8; ++trial) {
    const int stop = static_cast<int>(rng() % 59);
    StreamBatchesRequest resumed = request;
    *resumed.mutable_resume() = whole.batches[stop].next();
    const FlatStream rest = Read(resumed, 59 - stop);
    ASSERT_EQ(rest.batches.size(), static_cast<size_t>(59 - stop));
    for (int i = 0; i < 59 - stop; ++i) {
      EXPECT_EQ(rest.batches[i].tokens(), whole.batches[stop + 1 + i].tokens()) << stop;
      EXPECT_EQ(rest.batches[i].loss_mask(), whole.batches[stop + 1 + i].loss_mask()) << stop;
      EXPECT_EQ(rest.batches[i].next().SerializeAsString(),
                whole.batches[stop + 1 + i].next().SerializeAsString());
    }
  }
  // The cursor is a token position: another batch shape continues the same
  // token stream.
  StreamBatchesRequest reshaped = request;
  reshaped.set_seq_len(9);
  reshaped.set_batch_size(5);
  *reshaped.mutable_resume() = whole.batches[10].next();
  const FlatStream rest = Read(reshaped, 20);
  const size_t offset = 11 * 3 * 48;
  ASSERT_LE(offset + rest.tokens.size(), whole.tokens.size());
  EXPECT_TRUE(std::equal(rest.tokens.begin(), rest.tokens.end(), whole.tokens.begin() + offset));
  EXPECT_TRUE(std::equal(rest.mask.begin(), rest.mask.end(), whole.mask.begin() + offset));
}

TEST_F(BatchPackerTest, ResumingAtTheEndOfABoundedStreamYieldsNothing) {
  const StreamBatchesRequest request = Request(SPLIT_TRAIN, 3, 0, 1, 100, 4, 1);
  const FlatStream whole = Read(request, -1);
  StreamBatchesRequest resumed = request;
  *resumed.mutable_resume() = whole.batches.back().next();
  EXPECT_TRUE(Read(resumed, -1).batches.empty());
}

TEST_F(BatchPackerTest, LossMaskFollowsDocumentsAndPadding) {
  const FlatStream flat = Read(Request(SPLIT_TRAIN, 4, 0, 1, 255, 1, 1), -1);
  std::map<std::vector<int32_t>, const Document*> by_tokens;
  for (const Document& d : docs_) by_tokens[d.tokens] = &d;
  size_t start = 0;
  int checked = 0;
  for (size_t i = 0; i < flat.tokens.size(); ++i) {
    if (flat.tokens[i] != kEos) continue;
    if (i == start) {  // padding after the end
      EXPECT_EQ(flat.mask[i], 0);
      start = i + 1;
      continue;
    }
    const std::vector<int32_t> tokens(flat.tokens.begin() + start, flat.tokens.begin() + i);
    const Document* doc = by_tokens.at(tokens);
    for (size_t j = 0; j < tokens.size(); ++j) {
      EXPECT_EQ(flat.mask[start + j], doc->loss_mask.empty() ? 1 : doc->loss_mask[j]);
    }
    EXPECT_EQ(flat.mask[i], doc->loss_mask.empty() ? 1 : doc->loss_mask.back());
    ++checked;
    start = i + 1;
  }
  EXPECT_GT(checked, 100);
  // A batch of documents without masks sends no mask at all.
  StoreMetadata meta;
  meta.num_shards = 1;
  meta.tokenizer_fingerprint = kFingerprint;
  meta.vocab_size = kVocab;
  auto store = TokenStore::Create(FreshTestDir("unmasked"), meta);
  ASSERT_TRUE(store.ok());
  std::vector<Document> plain = SyntheticDocuments(50, 40, kEos, 3);
  for (Document& d : plain) d.loss_mask.clear();
  ASSERT_TRUE((*store)->AddDocuments(plain).ok());
  auto source = EmbeddedDataSource::Open(*std::move(store), kEos);
  ASSERT_TRUE(source.ok());
  auto stream = (*source)->OpenStream(Request(SPLIT_TRAIN, 1, 0, 1, 15, 2, 0));
  ASSERT_TRUE(stream.ok());
  PackedBatch batch;
  ASSERT_TRUE(*(*stream)->Next(&batch));
  EXPECT_TRUE(batch.loss_mask().empty());
}

TEST_F(BatchPackerTest, BadRequestsNameTheField) {
  struct Case {
    std::function<void(StreamBatchesRequest*)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](StreamBatchesRequest* r) { r->set_seq_len(0); }, "seq_len"},
      {[](StreamBatchesRequest* r) { r->set_batch_size(0); }, "batch_size"},
      {[](StreamBatchesRequest* r) { r->set_seq_len(1 << 21); }, "seq_len"},
      {[](StreamBatchesRequest* r) { r->set_batch_size(65536), r->set_seq_len(100000); },
       "batch_size * (seq_len + 1)"},
      {[](StreamBatchesRequest* r) { r->mutable_selection()->set_rank(2); }, "selection.rank"},
      {[](StreamBatchesRequest* r) { r->mutable_selection()->set_split(SPLIT_UNSPECIFIED); },
       "selection.split"},
      {[](StreamBatchesRequest* r) { r->mutable_resume()->mutable_selection()->set_seed(4); },
       "resume.selection.split"},
      {[](StreamBatchesRequest* r) {
         *r->mutable_resume()->mutable_selection() = r->selection();
         r->mutable_resume()->mutable_selection()->set_seed(4);
       },
       "resume.selection.seed"},
      {[](StreamBatchesRequest* r) {
         *r->mutable_resume()->mutable_selection() = r->selection();
         r->mutable_resume()->set_document_id("short");
       },
       "resume.document_id"},
  };
  for (const Case& c : cases) {
    StreamBatchesRequest request = Request(SPLIT_TRAIN, 1, 0, 2, 15, 2, 0);
    c.change(&request);
    auto stream = source_->OpenStream(request);
    ASSERT_FALSE(stream.ok()) << c.field;
    EXPECT_EQ(stream.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(stream.status().message().find(c.field), absl::string_view::npos) << stream.status();
  }
}

TEST_F(BatchPackerTest, AnEmptySplitFailsInsteadOfSpinning) {
  StreamBatchesRequest request = Request(SPLIT_VALIDATION, 1, 0, 1, 15, 2, 0);
  request.mutable_selection()->set_validation_fraction(0);
  auto stream = source_->OpenStream(request);
  ASSERT_TRUE(stream.ok());
  PackedBatch batch;
  absl::StatusOr<bool> more = (*stream)->Next(&batch);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), absl::StatusCode::kFailedPrecondition);
  // Bounded, it is just empty.
  request.set_num_epochs(2);
  EXPECT_TRUE(Read(request, -1).batches.empty());
}

TEST_F(BatchPackerTest, ServingFromRocksDbEqualsServingFromMemory) {
  const StreamBatchesRequest request = Request(SPLIT_TRAIN, 6, 0, 1, 31, 4, 2);
  const FlatStream cached = Read(request, -1);
  source_.reset();  // releases the store
  auto store = TokenStore::Open(dir_, kFingerprint, 3);
  ASSERT_TRUE(store.ok()) << store.status();
  auto uncached = EmbeddedDataSource::Open(*std::move(store), kEos, /*cache_bytes=*/0);
  ASSERT_TRUE(uncached.ok());
  auto stream = (*uncached)->OpenStream(request);
  ASSERT_TRUE(stream.ok());
  const FlatStream read = ReadStream(stream->get(), -1);
  EXPECT_EQ(read.tokens, cached.tokens);
  EXPECT_EQ(read.mask, cached.mask);
}

TEST_F(BatchPackerTest, StatsCountTheSplits) {
  auto stats = source_->GetStats(0.1);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->documents(), 300);
  EXPECT_EQ(stats->shards_size(), 3);
  EXPECT_EQ(stats->train().documents() + stats->validation().documents(), 300);
  EXPECT_EQ(static_cast<size_t>(stats->validation().documents()),
            SplitDocs(SPLIT_VALIDATION).size());
  int64_t tokens = 0;
  for (const Document& d : docs_) tokens += d.tokens.size();
  EXPECT_EQ(stats->tokens(), tokens);
  EXPECT_EQ(stats->train().tokens() + stats->validation().tokens(), tokens);
  EXPECT_EQ(source_->GetStats(0.9).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::data
