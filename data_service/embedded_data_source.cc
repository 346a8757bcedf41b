#include "data_service/embedded_data_source.h"

#include <utility>

#include "base/status_macros.h"
#include "data_service/batch_packer.h"
#include "data_service/store_stats.h"

namespace maximus::data {

absl::StatusOr<std::unique_ptr<EmbeddedDataSource>> EmbeddedDataSource::Open(
    std::unique_ptr<TokenStore> store, int32_t eos_id, int64_t cache_bytes) {
  if (!store->owns_all_shards()) {
    return absl::FailedPreconditionError("an embedded data source needs every shard open");
  }
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<DocumentIndex> index,
                           DocumentIndex::Build(*store, cache_bytes));
  return std::unique_ptr<EmbeddedDataSource>(
      new EmbeddedDataSource(std::move(store), std::move(index), eos_id));
}

EmbeddedDataSource::EmbeddedDataSource(std::unique_ptr<TokenStore> store,
                                       std::unique_ptr<DocumentIndex> index, int32_t eos_id)
    : store_(std::move(store)),
      index_(std::move(index)),
      source_(store_.get(), index_.get()),
      eos_id_(eos_id),
      info_(DescribeStore(*store_, eos_id)) {}

absl::StatusOr<std::unique_ptr<BatchStream>> EmbeddedDataSource::OpenStream(
    const StreamBatchesRequest& request) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<BatchPacker> packer,
                           BatchPacker::Open(&source_, request, eos_id_));
  return std::unique_ptr<BatchStream>(std::move(packer));
}

absl::StatusOr<StoreStats> EmbeddedDataSource::GetStats(double validation_fraction) {
  return ComputeStoreStats(*store_, *index_, validation_fraction);
}

}  // namespace maximus::data
