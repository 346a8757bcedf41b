#include "data_service/remote_data_source.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "data_service/batch_packer.h"
#include "data_service/merged_document_source.h"
#include "rpc/grpc_status.h"

namespace maximus::data {

using ::maximus::rpc::FromGrpcStatus;

namespace {

// Retries calls that failed with UNAVAILABLE, with exponential backoff, until
// `timeout` has passed since the first failure in a row.
class Reconnector {
 public:
  explicit Reconnector(absl::Duration timeout) : timeout_(timeout) {}

  bool ShouldRetry(const grpc::Status& status) {
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
    const absl::Time now = absl::Now();
    if (!failing_) {
      failing_ = true;
      deadline_ = now + timeout_;
      backoff_ = absl::Milliseconds(50);
    }
    if (now >= deadline_) return false;
    absl::SleepFor(std::min(backoff_, deadline_ - now));
    backoff_ = std::min(backoff_ * 2, absl::Seconds(2));
    return true;
  }
  void Succeeded() { failing_ = false; }

 private:
  const absl::Duration timeout_;
  bool failing_ = false;
  absl::Time deadline_;
  absl::Duration backoff_;
};

// Ends a streaming call that is still open.
template <typename Reader>
void CancelCall(grpc::ClientContext* context, std::unique_ptr<Reader>* reader) {
  if (*reader == nullptr) return;
  context->TryCancel();
  (*reader)->Finish().ok();
  reader->reset();
}

// A server-streaming call that is reopened, with its request as last
// updated by the caller, when it fails with UNAVAILABLE.
template <typename Request, typename Message>
class ResumableCall {
 public:
  using Opener = std::unique_ptr<grpc::ClientReader<Message>> (DataService::Stub::*)(
      grpc::ClientContext*, const Request&);

  ResumableCall(const RemoteDataSource::Server* server, Opener open, Request request,
                absl::Duration reconnect_timeout)
      : server_(server), open_(open), request_(std::move(request)), reconnect_(reconnect_timeout) {}
  ~ResumableCall() { CancelCall(context_.get(), &reader_); }

  // The next message; false at the end of the stream.
  absl::StatusOr<bool> Read(Message* message) {
    for (;;) {
      if (ended_) return false;
      if (reader_ == nullptr) {
        context_ = std::make_unique<grpc::ClientContext>();
        reader_ = (server_->stub.get()->*open_)(context_.get(), request_);
      }
      if (reader_->Read(message)) {
        reconnect_.Succeeded();
        return true;
      }
      const grpc::Status status = reader_->Finish();
      reader_.reset();
      if (status.ok()) {
        ended_ = true;
        return false;
      }
      if (!reconnect_.ShouldRetry(status)) return FromGrpcStatus(status, server_->address);
    }
  }

  Request* mutable_request() { return &request_; }
  const std::string& address() const { return server_->address; }

 private:
  const RemoteDataSource::Server* server_;
  const Opener open_;
  Request request_;
  Reconnector reconnect_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<Message>> reader_;
  bool ended_ = false;
};

class RemoteBatchStream : public BatchStream {
 public:
  RemoteBatchStream(const RemoteDataSource::Server* server, StreamBatchesRequest request,
                    absl::Duration reconnect_timeout)
      : call_(server, &DataService::Stub::StreamBatches, std::move(request), reconnect_timeout) {}

  absl::StatusOr<bool> Next(PackedBatch* batch) override {
    absl::StatusOr<bool> more = call_.Read(batch);
    // A reopened stream starts right after this batch.
    if (more.ok() && *more) *call_.mutable_request()->mutable_resume() = batch->next();
    return more;
  }

 private:
  ResumableCall<StreamBatchesRequest, PackedBatch> call_;
};

// Checks that a chunk's columns agree; the readers below then index them
// without further checks.
absl::Status CheckChunk(const DocumentChunk& chunk, const std::string& address) {
  const size_t n = chunk.keys_size();
  uint64_t tokens = 0;
  uint64_t masked_tokens = 0;
  bool ok = chunk.ids().size() == n * sizeof(RawId) &&
            static_cast<size_t>(chunk.lengths_size()) == n && chunk.masked().size() == n;
  for (size_t i = 0; ok && i < n; ++i) {
    tokens += chunk.lengths(i);
    if (chunk.masked()[i] != 0) masked_tokens += chunk.lengths(i);
  }
  ok = ok && chunk.tokens().size() == tokens * sizeof(int32_t) &&
       chunk.loss_masks().size() == masked_tokens;
  if (!ok) return absl::DataLossError(absl::StrCat(address, " sent a malformed document chunk"));
  return absl::OkStatus();
}

// One epoch of one server's documents (StreamDocuments). Documents point
// into the current chunk.
class RemoteEpochReader : public EpochReader {
 public:
  RemoteEpochReader(const RemoteDataSource::Server* server, StreamDocumentsRequest request,
                    absl::Duration reconnect_timeout)
      : call_(server, &DataService::Stub::StreamDocuments, std::move(request), reconnect_timeout) {}

  absl::StatusOr<bool> Next(SequencedDocument* out) override {
    while (next_ >= chunk_.keys_size()) {
      absl::StatusOr<bool> more = call_.Read(&chunk_);
      if (!more.ok() || !*more) return more;
      MAXIMUS_RETURN_IF_ERROR(CheckChunk(chunk_, call_.address()));
      next_ = 0;
      token_offset_ = 0;
      mask_offset_ = 0;
      // A reopened stream starts at the last document returned: skip it.
      if (returned_any_ && chunk_.keys_size() > 0 &&
          chunk_.ids().compare(0, sizeof(RawId), call_.mutable_request()->from_id()) == 0) {
        Skip();
      }
    }
    const int i = next_;
    const absl::string_view id =
        absl::string_view(chunk_.ids()).substr(i * sizeof(RawId), sizeof(RawId));
    out->key = chunk_.keys(i);
    IdFromBytes(id, &out->id);
    out->tokens = absl::MakeConstSpan(
        reinterpret_cast<const int32_t*>(chunk_.tokens().data()) + token_offset_,
        chunk_.lengths(i));
    out->loss_mask =
        chunk_.masked()[i] == 0
            ? absl::Span<const uint8_t>()
            : absl::MakeConstSpan(
                  reinterpret_cast<const uint8_t*>(chunk_.loss_masks().data()) + mask_offset_,
                  chunk_.lengths(i));
    Skip();
    // Where a reopened call starts.
    call_.mutable_request()->set_from_key(out->key);
    call_.mutable_request()->set_from_id(std::string(id));
    returned_any_ = true;
    return true;
  }

 private:
  void Skip() {
    token_offset_ += chunk_.lengths(next_);
    if (chunk_.masked()[next_] != 0) mask_offset_ += chunk_.lengths(next_);
    ++next_;
  }

  ResumableCall<StreamDocumentsRequest, DocumentChunk> call_;
  DocumentChunk chunk_;
  int next_ = 0;
  size_t token_offset_ = 0;
  size_t mask_offset_ = 0;
  bool returned_any_ = false;
};

class RemoteDocumentSource : public DocumentSource {
 public:
  RemoteDocumentSource(const RemoteDataSource::Server* server, absl::Duration reconnect_timeout)
      : server_(server), reconnect_timeout_(reconnect_timeout) {}

  absl::StatusOr<std::unique_ptr<EpochReader>> OpenEpoch(const Selection& selection, uint64_t epoch,
                                                         const EpochPosition& from) override {
    StreamDocumentsRequest request;
    *request.mutable_selection() = selection;
    request.set_epoch(epoch);
    if (!from.from_start) {
      request.set_from_key(from.key);
      request.set_from_id(std::string(IdBytes(from.id)));
    }
    return std::unique_ptr<EpochReader>(
        new RemoteEpochReader(server_, std::move(request), reconnect_timeout_));
  }

 private:
  const RemoteDataSource::Server* server_;
  const absl::Duration reconnect_timeout_;
};

// A packer that owns its document source.
class MergingBatchStream : public BatchStream {
 public:
  static absl::StatusOr<std::unique_ptr<BatchStream>> Open(std::unique_ptr<DocumentSource> source,
                                                           const StreamBatchesRequest& request,
                                                           int32_t eos_id) {
    MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<BatchPacker> packer,
                             BatchPacker::Open(source.get(), request, eos_id));
    return std::unique_ptr<BatchStream>(
        new MergingBatchStream(std::move(source), std::move(packer)));
  }
  absl::StatusOr<bool> Next(PackedBatch* batch) override { return packer_->Next(batch); }

 private:
  MergingBatchStream(std::unique_ptr<DocumentSource> source, std::unique_ptr<BatchPacker> packer)
      : source_(std::move(source)), packer_(std::move(packer)) {}

  std::unique_ptr<DocumentSource> source_;
  std::unique_ptr<BatchPacker> packer_;
};

absl::Status DescribeMismatch(const std::string& a, const std::string& b, absl::string_view what,
                              const std::string& va, const std::string& vb) {
  return absl::FailedPreconditionError(
      absl::StrCat(a, " and ", b, " serve different stores: ", what, " ", va, " vs ", vb));
}

}  // namespace

std::vector<std::string> SplitAddresses(absl::string_view addresses) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(addresses, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RemoteDataSource>> RemoteDataSource::Connect(
    const std::vector<std::string>& addresses, const Options& options) {
  if (addresses.empty()) return absl::InvalidArgumentError("no DataService address given");
  std::unique_ptr<RemoteDataSource> source(new RemoteDataSource());
  source->options_ = options;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (options.stream_window_bytes > 0) {
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, options.stream_window_bytes);
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  }
  for (const std::string& address : addresses) {
    Server server;
    server.address = address;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        rpc::MakeChannel(address, options.security, args);
    if (!channel.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("DataService at ", address, ": ", channel.status().message()));
    }
    server.stub = DataService::NewStub(*channel);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.connect_timeout));
    const grpc::Status status =
        server.stub->ListShards(&context, ListShardsRequest(), &server.shards);
    if (!status.ok()) return FromGrpcStatus(status, absl::StrCat("DataService at ", address));
    source->servers_.push_back(std::move(server));
  }
  const Server& first = source->servers_[0];
  const uint32_t num_shards = first.shards.num_shards();
  std::vector<int> owner(num_shards, -1);
  for (size_t i = 0; i < source->servers_.size(); ++i) {
    const Server& server = source->servers_[i];
    const ShardList& list = server.shards;
    if (list.num_shards() != num_shards) {
      return DescribeMismatch(first.address, server.address, "shard count",
                              absl::StrCat(num_shards), absl::StrCat(list.num_shards()));
    }
    if (list.tokenizer().sha256() != first.shards.tokenizer().sha256()) {
      return DescribeMismatch(first.address, server.address, "tokenizer",
                              first.shards.tokenizer().sha256(), list.tokenizer().sha256());
    }
    if (list.eos_id() != first.shards.eos_id()) {
      return DescribeMismatch(first.address, server.address, "end-of-text id",
                              absl::StrCat(first.shards.eos_id()), absl::StrCat(list.eos_id()));
    }
    for (uint32_t shard : list.shards()) {
      if (shard >= num_shards) {
        return absl::DataLossError(
            absl::StrCat(server.address, " lists shard ", shard, " of ", num_shards));
      }
      if (owner[shard] >= 0) {
        return absl::FailedPreconditionError(absl::StrCat("shard ", shard, " is served by both ",
                                                          source->servers_[owner[shard]].address,
                                                          " and ", server.address));
      }
      owner[shard] = static_cast<int>(i);
    }
    if (static_cast<uint32_t>(list.shards_size()) == num_shards) {
      source->full_server_ = static_cast<int>(i);
    }
  }
  for (uint32_t shard = 0; shard < num_shards; ++shard) {
    if (owner[shard] < 0) {
      std::vector<std::string> names;
      for (const Server& s : source->servers_) names.push_back(s.address);
      return absl::FailedPreconditionError(absl::StrCat("shard ", shard, " of ", num_shards,
                                                        " is served by none of ",
                                                        absl::StrJoin(names, ", ")));
    }
  }
  source->owner_ = owner;
  source->info_ = first.shards;
  source->info_.clear_shards();
  for (uint32_t shard = 0; shard < num_shards; ++shard) source->info_.add_shards(shard);
  return source;
}

absl::StatusOr<std::unique_ptr<BatchStream>> RemoteDataSource::OpenStream(
    const StreamBatchesRequest& request) {
  MAXIMUS_RETURN_IF_ERROR(ValidateStreamRequest(request));
  if (full_server_ >= 0) {
    return std::unique_ptr<BatchStream>(
        new RemoteBatchStream(&servers_[full_server_], request, options_.reconnect_timeout));
  }
  std::vector<std::unique_ptr<DocumentSource>> parts;
  for (const Server& server : servers_) {
    parts.push_back(std::make_unique<RemoteDocumentSource>(&server, options_.reconnect_timeout));
  }
  return MergingBatchStream::Open(std::make_unique<MergedDocumentSource>(std::move(parts)), request,
                                  info_.eos_id());
}

absl::StatusOr<IngestResponse> RemoteDataSource::IngestTokens(absl::Span<const Document> documents,
                                                              int message_documents) {
  std::vector<std::vector<const Document*>> by_server(servers_.size());
  for (const Document& doc : documents) {
    const int shard = TokenStore::ShardOf(TokenStore::DocumentId(doc.tokens), info_.num_shards());
    by_server[owner_[shard]].push_back(&doc);
  }
  IngestResponse total;
  for (size_t s = 0; s < servers_.size(); ++s) {
    if (by_server[s].empty()) continue;
    grpc::ClientContext context;
    IngestResponse response;
    std::unique_ptr<grpc::ClientWriter<IngestRequest>> writer =
        servers_[s].stub->Ingest(&context, &response);
    for (size_t start = 0; start < by_server[s].size(); start += message_documents) {
      IngestRequest request;
      for (size_t i = start; i < std::min(by_server[s].size(), start + message_documents); ++i) {
        TokenSequence* tokens = request.add_documents()->mutable_tokens();
        tokens->mutable_ids()->Add(by_server[s][i]->tokens.begin(), by_server[s][i]->tokens.end());
        tokens->set_loss_mask(
            std::string(by_server[s][i]->loss_mask.begin(), by_server[s][i]->loss_mask.end()));
      }
      if (!writer->Write(request)) break;  // Finish says why
    }
    writer->WritesDone();
    if (grpc::Status status = writer->Finish(); !status.ok()) {
      return FromGrpcStatus(status, servers_[s].address);
    }
    total.set_documents(total.documents() + response.documents());
    total.set_added(total.added() + response.added());
    total.set_duplicates(total.duplicates() + response.duplicates());
    total.set_tokens(total.tokens() + response.tokens());
  }
  return total;
}

absl::StatusOr<StoreStats> RemoteDataSource::GetStats(double validation_fraction) {
  StoreStats total;
  GetStatsRequest request;
  request.set_validation_fraction(validation_fraction);
  for (const Server& server : servers_) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.connect_timeout));
    StoreStats stats;
    const grpc::Status status = server.stub->GetStats(&context, request, &stats);
    if (!status.ok()) return FromGrpcStatus(status, server.address);
    for (const ShardSummary& shard : stats.shards()) *total.add_shards() = shard;
    total.set_documents(total.documents() + stats.documents());
    total.set_tokens(total.tokens() + stats.tokens());
    for (auto [sum, part] : {std::pair(total.mutable_train(), &stats.train()),
                             std::pair(total.mutable_validation(), &stats.validation())}) {
      sum->set_documents(sum->documents() + part->documents());
      sum->set_tokens(sum->tokens() + part->tokens());
    }
  }
  std::sort(total.mutable_shards()->begin(), total.mutable_shards()->end(),
            [](const ShardSummary& a, const ShardSummary& b) { return a.shard() < b.shard(); });
  return total;
}

}  // namespace maximus::data
