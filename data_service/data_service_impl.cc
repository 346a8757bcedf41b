#include "data_service/data_service_impl.h"

#include <grpcpp/support/method_handler.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "data_service/batch_packer.h"
#include "data_service/chat_template.h"
#include "data_service/store_opener.h"
#include "data_service/store_stats.h"
#include "rpc/grpc_status.h"
#include "tokenizer/end_of_text.h"

namespace maximus::data {

using ::maximus::rpc::ToGrpcStatus;

namespace {

absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
}

// Ingest's position among DataService's rpcs in proto/data.proto.
constexpr int kIngestMethodIndex = 0;

// How often a stream waiting for the byte budget looks for cancellation.
constexpr absl::Duration kBudgetPoll = absl::Milliseconds(50);

// An upper bound of a PackedBatch's serialized size.
uint64_t PackedBatchBytesBound(const StreamBatchesRequest& request) {
  const uint64_t tokens = uint64_t{request.batch_size()} * (uint64_t{request.seq_len()} + 1);
  // Token ids, a loss-mask byte per token, and the cursor's selection and ids.
  return tokens * (sizeof(int32_t) + 1) + 1024;
}

}  // namespace

DataServiceImpl::DataServiceImpl(TokenStore* store, DocumentIndex* index,
                                 const tokenizer::Tokenizer* tokenizer, int32_t eos_id,
                                 const Limits& limits)
    : store_(store),
      index_(index),
      tokenizer_(tokenizer),
      eos_id_(eos_id),
      limits_(limits),
      source_(store, index) {
  MarkMethodStreamed(
      kIngestMethodIndex,
      new grpc::internal::BidiStreamingHandler<DataServiceImpl, grpc::ByteBuffer, grpc::ByteBuffer>(
          [](DataServiceImpl* service, grpc::ServerContext* context,
             grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
            return service->IngestRaw(context, stream);
          },
          this));
}

DataServiceImpl::StreamSlot::StreamSlot(DataServiceImpl* service) : service_(service) {
  if (service_->active_streams_.fetch_add(1) >= service_->limits_.max_streams) {
    status_ =
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat("this server already serves ", service_->limits_.max_streams,
                                  " streams, its limit (max_streams); retry later"));
  }
}

DataServiceImpl::StreamSlot::~StreamSlot() { service_->active_streams_.fetch_sub(1); }

int64_t DataServiceImpl::bytes_in_flight() const {
  absl::MutexLock lock(&budget_mutex_);
  return bytes_in_flight_;
}

grpc::Status DataServiceImpl::AcquireBytes(grpc::ServerContext* context, int64_t bytes) {
  absl::MutexLock lock(&budget_mutex_);
  while (bytes_in_flight_ + bytes > limits_.max_bytes_in_flight) {
    budget_freed_.WaitWithTimeout(&budget_mutex_, kBudgetPoll);
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    if (stopping_) return ShuttingDown();
  }
  bytes_in_flight_ += bytes;
  return grpc::Status::OK;
}

void DataServiceImpl::ReleaseBytes(int64_t bytes) {
  absl::MutexLock lock(&budget_mutex_);
  bytes_in_flight_ -= bytes;
  budget_freed_.SignalAll();
}

absl::StatusOr<std::vector<Document>> DataServiceImpl::BuildDocuments(const IngestRequest& request,
                                                                      int64_t message) const {
  const int n = request.documents_size();
  std::vector<Document> documents(n);
  std::vector<absl::Status> errors(n);
  const ChatLossMode mode =
      request.train_on_user() ? ChatLossMode::kAllTurns : ChatLossMode::kModelTurns;
  base::ThreadPool& pool = base::ThreadPool::Shared();
  pool.ParallelFor(n, pool.size(), [&](size_t i) {
    const IngestDocument& in = request.documents(static_cast<int>(i));
    absl::StatusOr<Document> built;
    switch (in.content_case()) {
      case IngestDocument::kText:
        built = BuildTextDocument(*tokenizer_, in.text());
        break;
      case IngestDocument::kChat: {
        std::vector<ChatMessage> turns;
        for (const ChatTurn& turn : in.chat().turns())
          turns.push_back({turn.role(), turn.content()});
        built = BuildChatDocument(*tokenizer_, turns, mode);
        break;
      }
      case IngestDocument::kTokens: {
        Document doc;
        doc.tokens.assign(in.tokens().ids().begin(), in.tokens().ids().end());
        doc.loss_mask.assign(in.tokens().loss_mask().begin(), in.tokens().loss_mask().end());
        built = std::move(doc);
        break;
      }
      default:
        built = absl::InvalidArgumentError("no content (set text, chat or tokens)");
    }
    if (built.ok()) {
      documents[i] = *std::move(built);
    } else {
      errors[i] = built.status();
    }
  });
  for (int i = 0; i < n; ++i) {
    if (!errors[i].ok()) {
      return Prefixed(absl::StrCat("message ", message, ", documents[", i, "]"), errors[i]);
    }
  }
  return documents;
}

grpc::Status DataServiceImpl::IngestRaw(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
  StreamSlot slot(this);
  if (!slot.status().ok()) return slot.status();
  IngestResponse response;
  grpc::ByteBuffer raw;
  for (int64_t message = 0; stream->Read(&raw); ++message) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    const size_t bytes = raw.Length();
    if (static_cast<int64_t>(bytes) > limits_.max_request_bytes) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("message ", message, " has ", bytes, " bytes; at most ",
                                       limits_.max_request_bytes, " per message"));
    }
    IngestRequest request;
    if (!grpc::SerializationTraits<IngestRequest>::Deserialize(&raw, &request).ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("message ", message, " (", bytes,
                                       " bytes) does not parse as an IngestRequest; the messages "
                                       "before it are stored"));
    }
    absl::StatusOr<std::vector<Document>> documents = BuildDocuments(request, message);
    if (!documents.ok()) return ToGrpcStatus(documents.status());
    absl::StatusOr<WriteResult> written = store_->AddDocuments(*documents);
    if (!written.ok()) {
      return ToGrpcStatus(Prefixed(absl::StrCat("message ", message), written.status()));
    }
    for (size_t i = 0; i < documents->size(); ++i) {
      RawId id;
      ParseHexId(written->ids[i], &id);
      index_->Add(id, (*documents)[i]);
      response.set_tokens(response.tokens() + (*documents)[i].tokens.size());
    }
    response.set_documents(response.documents() + documents->size());
    response.set_added(response.added() + written->added);
    response.set_duplicates(response.duplicates() + written->duplicates);
  }
  grpc::ByteBuffer raw_response;
  bool own_buffer = false;
  grpc::Status serialized =
      grpc::SerializationTraits<IngestResponse>::Serialize(response, &raw_response, &own_buffer);
  if (!serialized.ok()) return serialized;
  if (!stream->Write(raw_response)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

grpc::Status DataServiceImpl::StreamBatches(grpc::ServerContext* context,
                                            const StreamBatchesRequest* request,
                                            grpc::ServerWriter<PackedBatch>* writer) {
  StreamSlot slot(this);
  if (!slot.status().ok()) return slot.status();
  if (!store_->owns_all_shards()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("this server serves ", store_->open_shards().size(), " of ",
                                     store_->num_shards(),
                                     " shards; give the client every server's address, and it "
                                     "merges their StreamDocuments"));
  }
  if (absl::Status s = ValidateStreamRequest(*request); !s.ok()) return ToGrpcStatus(s);
  const uint64_t batch_bytes = PackedBatchBytesBound(*request);
  if (batch_bytes > static_cast<uint64_t>(limits_.max_response_bytes)) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("a batch of batch_size * (seq_len + 1) = ", request->batch_size(), " * ",
                     request->seq_len() + 1, " tokens takes up to ", batch_bytes,
                     " bytes, over the response limit of ", limits_.max_response_bytes,
                     " bytes (max_response_bytes)"));
  }
  // The batch and its serialized copy, which the transport holds until the
  // client's flow-control window takes it.
  const int64_t charge = 2 * static_cast<int64_t>(batch_bytes);
  if (charge > limits_.max_bytes_in_flight) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("a batch in flight takes up to ", charge,
                                     " bytes, over the server's limit of ",
                                     limits_.max_bytes_in_flight, " (max_bytes_in_flight)"));
  }
  absl::StatusOr<std::unique_ptr<BatchPacker>> packer =
      BatchPacker::Open(&source_, *request, eos_id_);
  if (!packer.ok()) return ToGrpcStatus(packer.status());
  // A stream continued from a cursor: a client that reconnected, or a resumed
  // run. Rare, and what an operator looks for after a restart.
  if (!request->resume().document_id().empty()) {
    const StreamCursor& cursor = request->resume();
    absl::FPrintF(stderr,
                  "data server: StreamBatches resumed from a cursor: epoch %d, document key %d, "
                  "%d tokens of it consumed (rank %d of %d)\n",
                  cursor.epoch(), cursor.document_key(), cursor.consumed(),
                  request->selection().rank(), request->selection().world_size());
  }
  for (;;) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    if (stopping_) return ShuttingDown();
    if (grpc::Status budget = AcquireBytes(context, charge); !budget.ok()) return budget;
    grpc::Status status;
    bool more = false;
    {
      // One batch at a time, freed before the budget is given back.
      PackedBatch batch;
      absl::StatusOr<bool> next = (*packer)->Next(&batch);
      if (!next.ok()) {
        status = ToGrpcStatus(next.status());
      } else if (*next) {
        more = true;
        // Write blocks while the client's flow-control window is full, and
        // fails once the call is cancelled or past its deadline.
        if (!writer->Write(batch)) {
          status = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        }
      }
    }
    ReleaseBytes(charge);
    if (!status.ok() || !more) return status;
  }
}

grpc::Status DataServiceImpl::StreamDocuments(grpc::ServerContext* context,
                                              const StreamDocumentsRequest* request,
                                              grpc::ServerWriter<DocumentChunk>* writer) {
  StreamSlot slot(this);
  if (!slot.status().ok()) return slot.status();
  if (absl::Status s = ValidateSelection(request->selection()); !s.ok()) return ToGrpcStatus(s);
  EpochPosition from;
  if (!request->from_id().empty()) {
    if (!IdFromBytes(request->from_id(), &from.id)) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("from_id has ", request->from_id().size(), " bytes, not 32"));
    }
    from.from_start = false;
    from.key = request->from_key();
  }
  absl::StatusOr<std::unique_ptr<EpochReader>> reader =
      source_.OpenEpoch(request->selection(), request->epoch(), from);
  if (!reader.ok()) return ToGrpcStatus(reader.status());
  DocumentChunk chunk;
  SequencedDocument doc;
  // Sends the chunk, within the byte budget, and starts a fresh one.
  auto send = [&]() -> grpc::Status {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    // The chunk and its serialized copy; a chunk larger than the whole
    // budget (one huge document) waits until it has the budget alone.
    const int64_t charge = std::min<int64_t>(2 * static_cast<int64_t>(chunk.ByteSizeLong()),
                                             limits_.max_bytes_in_flight);
    if (grpc::Status budget = AcquireBytes(context, charge); !budget.ok()) return budget;
    const bool written = writer->Write(chunk);
    // A fresh chunk: Clear() would keep the strings' capacity.
    chunk = DocumentChunk();
    ReleaseBytes(charge);
    if (!written) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    return grpc::Status::OK;
  };
  // Per document: its tokens, its mask, and its key, id and length fields.
  constexpr int64_t kDocumentOverhead = 64;
  for (;;) {
    // A failed Write below notices a cancelled call; IsCancelled polls the
    // call's completion queue, too slow to ask per document.
    if (stopping_) return ShuttingDown();
    absl::StatusOr<bool> more = (*reader)->Next(&doc);
    if (!more.ok()) return ToGrpcStatus(more.status());
    if (*more) {
      const int64_t doc_bytes =
          static_cast<int64_t>(doc.tokens.size() * sizeof(int32_t) + doc.loss_mask.size()) +
          kDocumentOverhead;
      // A message holds whole documents, so one document bounds a message.
      if (doc_bytes > limits_.max_response_bytes) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("document ", doc.key, " of ", doc.tokens.size(),
                                         " tokens takes more than the response limit of ",
                                         limits_.max_response_bytes, " bytes (--max_response_mb)"));
      }
      if (chunk.keys_size() > 0 &&
          static_cast<int64_t>(chunk.ByteSizeLong()) + doc_bytes > limits_.max_response_bytes) {
        if (grpc::Status sent = send(); !sent.ok()) return sent;
      }
      chunk.add_keys(doc.key);
      chunk.mutable_ids()->append(IdBytes(doc.id).data(), sizeof(RawId));
      chunk.add_lengths(static_cast<uint32_t>(doc.tokens.size()));
      chunk.mutable_tokens()->append(reinterpret_cast<const char*>(doc.tokens.data()),
                                     doc.tokens.size() * sizeof(int32_t));
      chunk.mutable_masked()->push_back(doc.loss_mask.empty() ? 0 : 1);
      chunk.mutable_loss_masks()->append(reinterpret_cast<const char*>(doc.loss_mask.data()),
                                         doc.loss_mask.size());
    }
    const size_t bytes = chunk.tokens().size() + chunk.loss_masks().size();
    if ((!*more && chunk.keys_size() > 0) || bytes >= limits_.chunk_bytes) {
      if (grpc::Status sent = send(); !sent.ok()) return sent;
    }
    if (!*more) return grpc::Status::OK;
  }
}

grpc::Status DataServiceImpl::GetStats(grpc::ServerContext*, const GetStatsRequest* request,
                                       StoreStats* response) {
  absl::StatusOr<StoreStats> stats =
      ComputeStoreStats(*store_, *index_, request->validation_fraction());
  if (!stats.ok()) return ToGrpcStatus(stats.status());
  *response = *std::move(stats);
  return grpc::Status::OK;
}

grpc::Status DataServiceImpl::ListShards(grpc::ServerContext*, const ListShardsRequest*,
                                         ShardList* response) {
  *response = DescribeStore(*store_, eos_id_);
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<DataServer>> DataServer::Start(
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer, const Options& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is required");
  std::unique_ptr<DataServer> server(new DataServer());
  absl::StatusOr<int32_t> eos = tokenizer::EndOfTextId(*tokenizer);
  if (!eos.ok()) return eos.status();
  absl::StatusOr<std::unique_ptr<TokenStore>> store =
      OpenOrCreateStore(options.data_dir, *tokenizer, options.num_shards, options.shards);
  if (!store.ok()) return store.status();
  server->store_ = *std::move(store);
  absl::StatusOr<std::unique_ptr<DocumentIndex>> index =
      DocumentIndex::Build(*server->store_, options.cache_bytes);
  if (!index.ok()) return index.status();
  server->index_ = *std::move(index);
  server->tokenizer_ = std::move(tokenizer);
  DataServiceImpl::Limits limits;
  limits.max_request_bytes = options.max_request_bytes;
  limits.max_response_bytes = options.max_response_bytes;
  limits.max_streams = options.max_streams;
  limits.max_bytes_in_flight = options.max_bytes_in_flight;
  limits.chunk_bytes = options.chunk_bytes;
  server->service_ = std::make_unique<DataServiceImpl>(server->store_.get(), server->index_.get(),
                                                       server->tokenizer_.get(), *eos, limits);
  rpc::GrpcServer::Options grpc_options;
  grpc_options.address = options.address;
  grpc_options.security = options.security;
  grpc_options.service_name = "maximus.data.DataService";
  // The transport admits somewhat more than the limit, so that an oversize
  // Ingest message reaches the service and gets an error that names it.
  grpc_options.max_receive_message_bytes =
      static_cast<int>(std::min<int64_t>(INT32_MAX, options.max_request_bytes + (4 << 20)));
  // Packed batches are bounded by max_response_bytes, but a document chunk
  // holds at least one whole document, which may be larger.
  grpc_options.max_send_message_bytes = INT32_MAX;
  grpc_options.shutdown_grace = options.shutdown_grace;
  server->grpc_server_ = std::make_unique<rpc::GrpcServer>(grpc_options);
  server->grpc_server_->AddService(server->service_.get());
  // Open streams end at once instead of running out the grace period.
  DataServiceImpl* service = server->service_.get();
  server->grpc_server_->OnShutdown([service] { service->BeginShutdown(); });
  MAXIMUS_RETURN_IF_ERROR(server->grpc_server_->Start());
  return server;
}

}  // namespace maximus::data
