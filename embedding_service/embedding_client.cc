#include "embedding_service/embedding_client.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "embedding_service/shard_of.h"
#include "rpc/grpc_status.h"

namespace maximus::embedding {

using ::maximus::rpc::FromGrpcStatus;

namespace {

SearchHit HitOf(const v1::SearchHit& hit) {
  SearchHit out;
  out.id = hit.id();
  out.score = hit.score();
  out.metadata.assign(hit.metadata().begin(), hit.metadata().end());
  std::sort(out.metadata.begin(), out.metadata.end());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EmbeddingClient>> EmbeddingClient::Connect(
    const std::vector<std::string>& addresses, const Options& options) {
  if (addresses.empty()) return absl::InvalidArgumentError("no EmbeddingService address given");
  if (options.batch < 1) return absl::InvalidArgumentError("batch must be positive");
  std::unique_ptr<EmbeddingClient> client(new EmbeddingClient());
  client->options_ = options;
  client->shards_.resize(addresses.size());
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  for (const std::string& address : addresses) {
    MAXIMUS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                             rpc::MakeChannel(address, options.security, args));
    auto stub = v1::EmbeddingService::NewStub(channel);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.connect_timeout));
    v1::StatsResponse stats;
    const grpc::Status status = stub->Stats(&context, v1::StatsRequest(), &stats);
    if (!status.ok()) return FromGrpcStatus(status, absl::StrCat("EmbeddingService at ", address));
    if (stats.num_shards() != addresses.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the EmbeddingService at ", address, " is shard ", stats.shard(), " of ",
          stats.num_shards(), ", but ", addresses.size(), " addresses were given (",
          absl::StrJoin(addresses, ", "), ")"));
    }
    if (client->dims_ != 0 && stats.dims() != client->dims_) {
      return absl::InvalidArgumentError(absl::StrCat("the EmbeddingService at ", address,
                                                     " holds ", stats.dims(),
                                                     "-dimensional vectors, the others ",
                                                     client->dims_));
    }
    client->dims_ = stats.dims();
    Shard& shard = client->shards_[stats.shard()];
    if (shard.stub != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the EmbeddingServices at ", shard.address,
                                                     " and ", address, " both hold shard ",
                                                     stats.shard()));
    }
    shard.address = address;
    shard.stub = std::move(stub);
  }
  return client;
}

void EmbeddingClient::SetDeadline(grpc::ClientContext* context) const {
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
}

absl::Status EmbeddingClient::Upsert(absl::Span<const VectorRecord> records) {
  std::vector<std::vector<const VectorRecord*>> by_shard(shards_.size());
  for (const VectorRecord& record : records) {
    by_shard[ShardOf(record.id, num_shards())].push_back(&record);
  }
  std::vector<absl::Status> results(shards_.size());
  std::vector<std::thread> threads;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (by_shard[s].empty()) continue;
    threads.emplace_back([&, s] {
      grpc::ClientContext context;
      SetDeadline(&context);
      auto stream = shards_[s].stub->Upsert(&context);
      const std::vector<const VectorRecord*>& mine = by_shard[s];
      v1::UpsertResponse response;
      for (size_t begin = 0; begin < mine.size(); begin += options_.batch) {
        v1::UpsertRequest request;
        const size_t end = std::min(mine.size(), begin + options_.batch);
        for (size_t i = begin; i < end; ++i) {
          v1::VectorEntry* entry = request.add_vectors();
          entry->set_id(mine[i]->id);
          entry->mutable_values()->Add(mine[i]->values.begin(), mine[i]->values.end());
          for (const auto& [key, value] : mine[i]->metadata) (*entry->mutable_metadata())[key] = value;
        }
        // One message in flight: its acknowledgement before the next.
        if (!stream->Write(request) || !stream->Read(&response)) break;
      }
      stream->WritesDone();
      results[s] = FromGrpcStatus(stream->Finish(),
                                  absl::StrCat("Upsert to the EmbeddingService at ",
                                               shards_[s].address));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) MAXIMUS_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status EmbeddingClient::Delete(absl::Span<const std::string> ids) {
  std::vector<v1::DeleteRequest> requests(shards_.size());
  for (const std::string& id : ids) requests[ShardOf(id, num_shards())].add_ids(id);
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (requests[s].ids_size() == 0) continue;
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::DeleteResponse response;
    MAXIMUS_RETURN_IF_ERROR(
        FromGrpcStatus(shards_[s].stub->Delete(&context, requests[s], &response),
                       absl::StrCat("Delete at ", shards_[s].address)));
  }
  return absl::OkStatus();
}

absl::StatusOr<VectorRecord> EmbeddingClient::Get(const std::string& id) {
  const Shard& shard = shards_[ShardOf(id, num_shards())];
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::GetRequest request;
  request.set_id(id);
  v1::GetResponse response;
  MAXIMUS_RETURN_IF_ERROR(FromGrpcStatus(shard.stub->Get(&context, request, &response),
                                         absl::StrCat("Get at ", shard.address)));
  VectorRecord record;
  record.id = response.vector().id();
  record.values.assign(response.vector().values().begin(), response.vector().values().end());
  record.metadata.assign(response.vector().metadata().begin(), response.vector().metadata().end());
  std::sort(record.metadata.begin(), record.metadata.end());
  return record;
}

v1::SearchRequest EmbeddingClient::SearchRequestOf(absl::Span<const float> query,
                                                   const SearchOptions& options) const {
  v1::SearchRequest request;
  request.mutable_vector()->mutable_values()->Add(query.begin(), query.end());
  request.set_k(static_cast<uint32_t>(options.k));
  request.set_mode(options.mode == SearchMode::kExact ? v1::SEARCH_MODE_EXACT
                                                      : v1::SEARCH_MODE_COARSE_TO_FINE);
  request.set_prefilter_dims(static_cast<uint32_t>(options.prefilter_dims));
  request.set_oversample(static_cast<uint32_t>(options.oversample));
  if (options.filter.has_value()) {
    request.mutable_filter()->set_key(options.filter->first);
    request.mutable_filter()->set_value(options.filter->second);
  }
  return request;
}

absl::StatusOr<std::vector<SearchHit>> EmbeddingClient::Search(absl::Span<const float> query,
                                                               const SearchOptions& options) {
  const v1::SearchRequest request = SearchRequestOf(query, options);
  std::vector<v1::SearchResponse> responses(shards_.size());
  std::vector<absl::Status> results(shards_.size());
  std::vector<std::thread> threads;
  for (size_t s = 0; s < shards_.size(); ++s) {
    threads.emplace_back([&, s] {
      grpc::ClientContext context;
      SetDeadline(&context);
      results[s] = FromGrpcStatus(shards_[s].stub->Search(&context, request, &responses[s]),
                                  absl::StrCat("Search at ", shards_[s].address));
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<SearchHit> hits;
  for (size_t s = 0; s < shards_.size(); ++s) {
    MAXIMUS_RETURN_IF_ERROR(results[s]);
    for (const v1::SearchHit& hit : responses[s].hits()) hits.push_back(HitOf(hit));
  }
  const size_t k = std::min<size_t>(hits.size(), options.k);
  std::partial_sort(hits.begin(), hits.begin() + k, hits.end(), BetterHit);
  hits.resize(k);
  return hits;
}

absl::StatusOr<std::vector<SearchHit>> EmbeddingClient::SearchText(const std::string& text,
                                                                   const SearchOptions& options) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::EmbedRequest request;
  request.add_texts(text);
  v1::EmbedResponse response;
  MAXIMUS_RETURN_IF_ERROR(FromGrpcStatus(shards_[0].stub->Embed(&context, request, &response),
                                         absl::StrCat("Embed at ", shards_[0].address)));
  const auto& values = response.embeddings(0).prefixes(0).values();
  return Search(std::vector<float>(values.begin(), values.end()), options);
}

absl::StatusOr<int64_t> EmbeddingClient::Size() {
  int64_t total = 0;
  for (const Shard& shard : shards_) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::StatsResponse stats;
    MAXIMUS_RETURN_IF_ERROR(FromGrpcStatus(shard.stub->Stats(&context, v1::StatsRequest(), &stats),
                                           absl::StrCat("Stats at ", shard.address)));
    total += static_cast<int64_t>(stats.vectors());
  }
  return total;
}

}  // namespace maximus::embedding
