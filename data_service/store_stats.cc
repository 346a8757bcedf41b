#include "data_service/store_stats.h"

#include "absl/strings/str_cat.h"

namespace maximus::data {

absl::StatusOr<StoreStats> ComputeStoreStats(const TokenStore& store, const DocumentIndex& index,
                                             double validation_fraction) {
  if (!(validation_fraction >= 0 && validation_fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_fraction ", validation_fraction, " outside [0, 0.5]"));
  }
  // From the index, which holds every document of the open shards.
  SplitCounts train;
  SplitCounts validation;
  std::vector<SplitCounts> by_shard;
  index.CountSplits(validation_fraction, &train, &validation, store.num_shards(), &by_shard);
  StoreStats response;
  for (int shard : store.open_shards()) {
    ShardSummary* out = response.add_shards();
    out->set_shard(shard);
    out->set_documents(by_shard[shard].documents);
    out->set_tokens(by_shard[shard].tokens);
  }
  response.set_documents(train.documents + validation.documents);
  response.set_tokens(train.tokens + validation.tokens);
  response.mutable_train()->set_documents(train.documents);
  response.mutable_train()->set_tokens(train.tokens);
  response.mutable_validation()->set_documents(validation.documents);
  response.mutable_validation()->set_tokens(validation.tokens);
  return response;
}

ShardList DescribeStore(const TokenStore& store, int32_t eos_id) {
  ShardList list;
  list.set_num_shards(store.num_shards());
  for (int shard : store.open_shards()) list.add_shards(shard);
  list.mutable_tokenizer()->set_sha256(store.metadata().tokenizer_fingerprint);
  list.mutable_tokenizer()->set_vocab_size(store.metadata().vocab_size);
  list.set_eos_id(eos_id);
  list.set_format_version(store.metadata().format_version);
  return list;
}

}  // namespace maximus::data
