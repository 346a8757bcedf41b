// Which of N index shards holds an id: CRC-32C of the id's bytes modulo N,
// the same in every process and build (the servers refuse ids of other
// shards; the client sends each id to its shard).

#ifndef MAXIMUS_EMBEDDING_SERVICE_SHARD_OF_H_
#define MAXIMUS_EMBEDDING_SERVICE_SHARD_OF_H_

#include "absl/strings/string_view.h"

namespace maximus::embedding {

int ShardOf(absl::string_view id, int num_shards);

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_SHARD_OF_H_
