// A DataSource over a store opened in this process.

#ifndef MAXIMUS_DATA_SERVICE_EMBEDDED_DATA_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_EMBEDDED_DATA_SOURCE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "data_service/data_source.h"
#include "data_service/document_index.h"
#include "data_service/local_document_source.h"
#include "data_service/token_store.h"

namespace maximus::data {

class EmbeddedDataSource : public DataSource {
 public:
  // `store` must have every shard open. Indexes it, and holds its documents
  // in memory if they take at most `cache_bytes` (see DocumentIndex).
  static absl::StatusOr<std::unique_ptr<EmbeddedDataSource>> Open(
      std::unique_ptr<TokenStore> store, int32_t eos_id, int64_t cache_bytes = kDefaultCacheBytes);

  const ShardList& info() const override { return info_; }
  absl::StatusOr<std::unique_ptr<BatchStream>> OpenStream(
      const StreamBatchesRequest& request) override;
  absl::StatusOr<StoreStats> GetStats(double validation_fraction) override;

 private:
  EmbeddedDataSource(std::unique_ptr<TokenStore> store, std::unique_ptr<DocumentIndex> index,
                     int32_t eos_id);

  std::unique_ptr<TokenStore> store_;
  std::unique_ptr<DocumentIndex> index_;
  LocalDocumentSource source_;
  const int32_t eos_id_;
  const ShardList info_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_EMBEDDED_DATA_SOURCE_H_
