#include "embedding_service/shard_of.h"

#include "base/crc32c.h"

namespace maximus::embedding {

int ShardOf(absl::string_view id, int num_shards) {
  if (num_shards <= 1) return 0;
  return static_cast<int>(base::Crc32c(id) % static_cast<uint32_t>(num_shards));
}

}  // namespace maximus::embedding
