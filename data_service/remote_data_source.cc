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
#include "data_service/batch_packer.h"
#include "data_service/merged_document_source.h"
#include "proto/grpc_status.h"

namespace maximus::data {
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

class RemoteBatchStream : public BatchStream {
 public:
  RemoteBatchStream(const RemoteDataSource::Server* server, StreamBatchesRequest request,
                    absl::Duration reconnect_timeout)
      : server_(server), request_(std::move(request)), reconnect_(reconnect_timeout) {}
  ~RemoteBatchStream() override { CancelCall(context_.get(), &reader_); }

  absl::StatusOr<bool> Next(PackedBatch* batch) override {
    for (;;) {
      if (ended_) return false;
      if (reader_ == nullptr) {
        context_ = std::make_unique<grpc::ClientContext>();
        reader_ = server_->stub->StreamBatches(context_.get(), request_);
      }
      if (reader_->Read(batch)) {
        reconnect_.Succeeded();
        // A reopened stream starts right after this batch.
        *request_.mutable_resume() = batch->next();
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

 private:
  const RemoteDataSource::Server* server_;
  StreamBatchesRequest request_;
  Reconnector reconnect_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<PackedBatch>> reader_;
  bool ended_ = false;
};

absl::Status ToDocument(const StreamedDocument& in, const std::string& address,
                        SequencedDocument* out) {
  if (!IdFromBytes(in.id(), &out->id) || in.tokens().size() % sizeof(int32_t) != 0 ||
      (!in.loss_mask().empty() && in.loss_mask().size() * sizeof(int32_t) != in.tokens().size())) {
    return absl::DataLossError(absl::StrCat(address, " sent a malformed document"));
  }
  out->key = in.key();
  out->document.tokens.resize(in.tokens().size() / sizeof(int32_t));
  std::memcpy(out->document.tokens.data(), in.tokens().data(), in.tokens().size());
  out->document.loss_mask.assign(in.loss_mask().begin(), in.loss_mask().end());
  return absl::OkStatus();
}

// One epoch of one server's documents (StreamDocuments).
class RemoteEpochReader : public EpochReader {
 public:
  RemoteEpochReader(const RemoteDataSource::Server* server, StreamDocumentsRequest request,
                    absl::Duration reconnect_timeout)
      : server_(server), request_(std::move(request)), reconnect_(reconnect_timeout) {}
  ~RemoteEpochReader() override { CancelCall(context_.get(), &reader_); }

  absl::StatusOr<bool> Next(SequencedDocument* out) override {
    for (;;) {
      if (next_ < chunk_.documents_size()) {
        const StreamedDocument& doc = chunk_.documents(next_++);
        if (absl::Status s = ToDocument(doc, server_->address, out); !s.ok()) return s;
        request_.set_from_key(doc.key());
        request_.set_from_id(doc.id());
        skip_from_ = true;
        return true;
      }
      if (ended_) return false;
      if (reader_ == nullptr) {
        context_ = std::make_unique<grpc::ClientContext>();
        reader_ = server_->stub->StreamDocuments(context_.get(), request_);
      }
      if (reader_->Read(&chunk_)) {
        reconnect_.Succeeded();
        next_ = 0;
        // A reopened stream starts at the last document returned: skip it.
        if (skip_from_ && chunk_.documents_size() > 0 &&
            chunk_.documents(0).id() == request_.from_id()) {
          next_ = 1;
        }
        skip_from_ = false;
        continue;
      }
      chunk_.Clear();
      next_ = 0;
      const grpc::Status status = reader_->Finish();
      reader_.reset();
      if (status.ok()) {
        ended_ = true;
        return false;
      }
      if (!reconnect_.ShouldRetry(status)) return FromGrpcStatus(status, server_->address);
    }
  }

 private:
  const RemoteDataSource::Server* server_;
  StreamDocumentsRequest request_;
  Reconnector reconnect_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<DocumentChunk>> reader_;
  DocumentChunk chunk_;
  int next_ = 0;
  bool skip_from_ = false;
  bool ended_ = false;
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
    absl::StatusOr<std::unique_ptr<BatchPacker>> packer =
        BatchPacker::Open(source.get(), request, eos_id);
    if (!packer.ok()) return packer.status();
    return std::unique_ptr<BatchStream>(
        new MergingBatchStream(std::move(source), *std::move(packer)));
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
  for (const std::string& address : addresses) {
    Server server;
    server.address = address;
    server.stub = DataService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
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
  source->info_ = first.shards;
  source->info_.clear_shards();
  for (uint32_t shard = 0; shard < num_shards; ++shard) source->info_.add_shards(shard);
  return source;
}

absl::StatusOr<std::unique_ptr<BatchStream>> RemoteDataSource::OpenStream(
    const StreamBatchesRequest& request) {
  if (absl::Status s = ValidateStreamRequest(request); !s.ok()) return s;
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
