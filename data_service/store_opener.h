// Opens the store in a directory for a tokenizer, creating it if absent.

#ifndef MAXIMUS_DATA_SERVICE_STORE_OPENER_H_
#define MAXIMUS_DATA_SERVICE_STORE_OPENER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data_service/token_store.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {

// An existing store must have been built with `tokenizer` and, unless
// `num_shards` is 0, have `num_shards` shards. A missing one is created with
// `num_shards` (4 if 0) shards, unless only some shards are asked for.
// `shards`: the shards to open; empty: all. By default an existing store
// on a full disk opens read-only (see StoreOptions).
absl::StatusOr<std::unique_ptr<TokenStore>> OpenOrCreateStore(const std::string& dir,
                                                              const tokenizer::Tokenizer& tokenizer,
                                                              int num_shards,
                                                              absl::Span<const int> shards = {},
                                                              const StoreOptions& options = {});

// Parses "0,2,5-7" into {0, 2, 5, 6, 7}; "" or "all" is empty (every shard).
absl::StatusOr<std::vector<int>> ParseShardList(absl::string_view text);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_STORE_OPENER_H_
