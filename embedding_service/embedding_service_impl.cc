#include "embedding_service/embedding_service_impl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "embedding_service/cuda_prefix_scanner.h"
#include "embedding_service/matryoshka.h"
#include "kernels/inner_product_scan.h"
#include "rpc/grpc_status.h"

namespace maximus::embedding {

using ::maximus::rpc::ToGrpcStatus;

namespace {

constexpr int64_t kDefaultPrefilterDims = kSmallestPrefix;
constexpr int64_t kDefaultOversample = 8;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

Pooling PoolingOf(v1::Pooling pooling) {
  return pooling == v1::POOLING_LAST_TOKEN ? Pooling::kLastToken : Pooling::kMean;
}

}  // namespace

EmbeddingServiceImpl::EmbeddingServiceImpl(EmbeddingIndex* index, Embedder* embedder,
                                           const Limits& limits, std::string scan_device)
    : index_(index),
      embedder_(embedder),
      limits_(limits),
      scan_device_(std::move(scan_device)) {}

absl::StatusOr<std::vector<std::vector<float>>> EmbeddingServiceImpl::EmbedTexts(
    const std::vector<std::string>& texts, Pooling pooling, absl::string_view field) {
  if (embedder_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": this server has no checkpoint to embed text with (start it with "
                            "--checkpoint); send vectors instead"));
  }
  if (static_cast<int64_t>(texts.size()) > limits_.max_texts) {
    return absl::InvalidArgumentError(absl::StrCat(field, " has ", texts.size(),
                                                   " texts; at most ", limits_.max_texts));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] is empty"));
    if (static_cast<int64_t>(texts[i].size()) > limits_.max_text_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] has ", texts[i].size(),
                                                     " bytes; at most ", limits_.max_text_bytes));
    }
  }
  absl::StatusOr<std::vector<std::vector<float>>> pooled = embedder_->Embed(texts, pooling);
  // The embedder names texts[i]; the caller's field is what the client sent.
  if (!pooled.ok() && pooled.status().code() == absl::StatusCode::kInvalidArgument) {
    return Prefixed(field, pooled.status());
  }
  return pooled;
}

grpc::Status EmbeddingServiceImpl::Embed(grpc::ServerContext*, const v1::EmbedRequest* request,
                                         v1::EmbedResponse* response) {
  if (request->texts_size() == 0) return Invalid("texts is empty");
  std::vector<int64_t> sizes;
  const int64_t dims = index_->config().dims;
  const std::vector<int64_t> allowed = PrefixSizes(embedder_ != nullptr ? embedder_->dims() : dims);
  for (int i = 0; i < request->prefix_sizes_size(); ++i) {
    const int64_t size = request->prefix_sizes(i);
    if (std::find(allowed.begin(), allowed.end(), size) == allowed.end()) {
      return Invalid(absl::StrCat("prefix_sizes[", i, "]: ", size,
                                  " is not a Matryoshka size of this model (64, 128, ... or ",
                                  allowed.back(), ")"));
    }
    sizes.push_back(size);
  }
  if (sizes.empty()) sizes.push_back(allowed.back());
  if (static_cast<int64_t>(sizes.size()) > static_cast<int64_t>(allowed.size())) {
    return Invalid(absl::StrCat("prefix_sizes has ", sizes.size(), " entries; at most ",
                                allowed.size()));
  }
  const std::vector<std::string> texts(request->texts().begin(), request->texts().end());
  absl::StatusOr<std::vector<std::vector<float>>> pooled =
      EmbedTexts(texts, PoolingOf(request->pooling()), "texts");
  if (!pooled.ok()) return ToGrpcStatus(pooled.status());
  response->set_dims(static_cast<uint32_t>(allowed.back()));
  for (const std::vector<float>& vector : *pooled) {
    v1::TextEmbedding* text = response->add_embeddings();
    for (int64_t size : sizes) {
      const std::vector<float> prefix = NormalizedPrefix(vector, size);
      text->add_prefixes()->mutable_values()->Add(prefix.begin(), prefix.end());
    }
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::vector<VectorRecord>> EmbeddingServiceImpl::RecordsOf(
    const v1::UpsertRequest& request) {
  std::vector<VectorRecord> records(request.vectors_size());
  std::vector<std::string> texts;
  std::vector<int> text_positions;
  for (int i = 0; i < request.vectors_size(); ++i) {
    const v1::VectorEntry& entry = request.vectors(i);
    records[i].id = entry.id();
    records[i].values.assign(entry.values().begin(), entry.values().end());
    records[i].metadata.assign(entry.metadata().begin(), entry.metadata().end());
    if (!entry.text().empty() && entry.values_size() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("vectors[", i, "] has both values and text; send one"));
    }
    if (!entry.text().empty()) {
      if (static_cast<int64_t>(entry.text().size()) > limits_.max_text_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("vectors[", i, "].text has ",
                                                       entry.text().size(), " bytes; at most ",
                                                       limits_.max_text_bytes));
      }
      texts.push_back(entry.text());
      text_positions.push_back(i);
    }
  }
  if (!texts.empty()) {
    // Errors about one text name it by its place among the texts.
    MAXIMUS_ASSIGN_OR_RETURN(std::vector<std::vector<float>> pooled,
                             EmbedTexts(texts, Pooling::kMean, "the message's texts"));
    for (size_t t = 0; t < texts.size(); ++t) records[text_positions[t]].values = std::move(pooled[t]);
  }
  return records;
}

grpc::Status EmbeddingServiceImpl::Upsert(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::UpsertResponse, v1::UpsertRequest>* stream) {
  v1::UpsertRequest request;
  v1::UpsertResponse response;
  for (int64_t message = 0; stream->Read(&request); ++message) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    absl::StatusOr<std::vector<VectorRecord>> records = RecordsOf(request);
    absl::Status stored = records.ok() ? index_->Upsert(*std::move(records)) : records.status();
    if (!stored.ok()) {
      return ToGrpcStatus(Prefixed(
          absl::StrCat("message ", message, " (the messages before it are stored)"), stored));
    }
    response.set_upserted(request.vectors_size());
    response.set_total(response.total() + request.vectors_size());
    if (!stream->Write(response)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  return grpc::Status::OK;
}

grpc::Status EmbeddingServiceImpl::Delete(grpc::ServerContext*, const v1::DeleteRequest* request,
                                          v1::DeleteResponse* response) {
  const std::vector<std::string> ids(request->ids().begin(), request->ids().end());
  if (absl::Status s = index_->Delete(ids); !s.ok()) return ToGrpcStatus(s);
  response->set_deleted(ids.size());
  return grpc::Status::OK;
}

grpc::Status EmbeddingServiceImpl::Get(grpc::ServerContext*, const v1::GetRequest* request,
                                       v1::GetResponse* response) {
  absl::StatusOr<VectorRecord> record = index_->Get(request->id());
  if (!record.ok()) return ToGrpcStatus(record.status());
  v1::VectorEntry* entry = response->mutable_vector();
  entry->set_id(record->id);
  entry->mutable_values()->Add(record->values.begin(), record->values.end());
  for (const auto& [key, value] : record->metadata) (*entry->mutable_metadata())[key] = value;
  return grpc::Status::OK;
}

grpc::Status EmbeddingServiceImpl::Search(grpc::ServerContext*, const v1::SearchRequest* request,
                                          v1::SearchResponse* response) {
  SearchOptions options;
  options.k = request->k();
  options.mode = request->mode() == v1::SEARCH_MODE_EXACT ? SearchMode::kExact
                                                       : SearchMode::kCoarseToFine;
  // Unset: 64, or the whole vector of an index of fewer dimensions.
  options.prefilter_dims = request->prefilter_dims() != 0
                               ? request->prefilter_dims()
                               : std::min(kDefaultPrefilterDims, index_->config().dims);
  options.oversample = request->oversample() == 0 ? kDefaultOversample : request->oversample();
  if (request->has_filter()) {
    options.filter = std::make_pair(request->filter().key(), request->filter().value());
  }
  // Options first: a bad k should not cost an embedding.
  if (absl::Status s = index_->CheckSearchOptions(options); !s.ok()) return ToGrpcStatus(s);
  std::vector<float> query;
  switch (request->query_case()) {
    case v1::SearchRequest::kVector:
      query.assign(request->vector().values().begin(), request->vector().values().end());
      break;
    case v1::SearchRequest::kText: {
      absl::StatusOr<std::vector<std::vector<float>>> pooled =
          EmbedTexts({request->text()}, PoolingOf(request->pooling()), "text");
      if (!pooled.ok()) return ToGrpcStatus(pooled.status());
      query = std::move((*pooled)[0]);
      break;
    }
    default:
      return Invalid("query: set text or vector");
  }
  absl::StatusOr<std::vector<SearchHit>> hits = index_->Search(query, options);
  if (!hits.ok()) return ToGrpcStatus(hits.status());
  for (const SearchHit& hit : *hits) {
    v1::SearchHit* out = response->add_hits();
    out->set_id(hit.id);
    out->set_score(hit.score);
    for (const auto& [key, value] : hit.metadata) (*out->mutable_metadata())[key] = value;
  }
  return grpc::Status::OK;
}

grpc::Status EmbeddingServiceImpl::Stats(grpc::ServerContext*, const v1::StatsRequest*,
                                         v1::StatsResponse* response) {
  const VectorIndex& vectors = index_->vectors();
  response->set_vectors(vectors.size());
  response->set_dims(static_cast<uint32_t>(index_->config().dims));
  response->set_vector_type(std::string(ElementTypeName(index_->config().type)));
  for (int64_t size : vectors.prefix_sizes()) response->add_prefix_sizes(size);
  response->set_index_bytes(vectors.MemoryBytes());
  response->set_has_embedder(embedder_ != nullptr);
  response->set_backend(embedder_ != nullptr ? embedder_->backend_description() : "");
  response->set_shard(index_->shard().index);
  response->set_num_shards(index_->shard().count);
  response->set_max_k(index_->limits().max_k);
  response->set_scan_device(scan_device_);
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<EmbeddingServer>> EmbeddingServer::Start(const Options& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is required");
  std::unique_ptr<EmbeddingServer> server(new EmbeddingServer());
  std::optional<IndexConfig> config;
  if (!options.checkpoint.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(server->embedder_,
                             Embedder::Load(options.checkpoint, options.tokenizer,
                                            options.embedder));
    if (options.dims != 0 && options.dims != server->embedder_->dims()) {
      return absl::InvalidArgumentError(absl::StrCat("dim: ", options.dims,
                                                     " differs from the model's hidden size ",
                                                     server->embedder_->dims()));
    }
    config = IndexConfig{server->embedder_->dims(), options.vector_type};
  } else if (options.dims != 0) {
    config = IndexConfig{options.dims, options.vector_type};
  }
  MAXIMUS_ASSIGN_OR_RETURN(server->index_,
                           EmbeddingIndex::Open(options.data_dir, config, options.index_limits,
                                                options.shard));
  server->scan_device_ = kernels::CpuHasAvx2() ? "cpu (AVX2)" : "cpu (scalar)";
  if (options.embedder.backend != "cpu") {
    absl::StatusOr<std::unique_ptr<CudaPrefixScanner>> scanner = CudaPrefixScanner::Create();
    if (scanner.ok()) {
      server->index_->SetPrefixScanner(*std::move(scanner));
      server->scan_device_ = "cuda (cuBLAS)";
    } else if (options.embedder.backend == "cuda") {
      return Prefixed("backend cuda: stage 1 of search needs a usable GPU", scanner.status());
    }
  }
  server->service_ = std::make_unique<EmbeddingServiceImpl>(
      server->index_.get(), server->embedder_.get(), options.limits, server->scan_device_);
  rpc::GrpcServer::Options grpc_options;
  grpc_options.address = options.address;
  grpc_options.security = options.security;
  grpc_options.service_name = "maximus.embedding.v1.EmbeddingService";
  grpc_options.max_receive_message_bytes =
      static_cast<int>(std::min<int64_t>(INT32_MAX, options.max_request_bytes));
  // The largest answer: max_k hits with their metadata, or an Embed call's
  // vectors; both far below this.
  grpc_options.max_send_message_bytes = 64 << 20;
  grpc_options.shutdown_grace = options.shutdown_grace;
  server->grpc_server_ = std::make_unique<rpc::GrpcServer>(grpc_options);
  server->grpc_server_->AddService(server->service_.get());
  MAXIMUS_RETURN_IF_ERROR(server->grpc_server_->Start());
  return server;
}

}  // namespace maximus::embedding
