#include "tokenizer/tokenizer_service.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "rpc/grpc_status.h"

namespace maximus::tokenizer {
namespace {

void Fill(const std::vector<int32_t>& ids, TokenSequence* sequence) {
  sequence->mutable_ids()->Add(ids.begin(), ids.end());
}

// Ids decoded at a time when measuring a text that may be too large.
constexpr size_t kMeasureSliceIds = 1 << 16;
// Response bytes allowed per id of a Decode call: bounds the ids of one call.
constexpr int64_t kResponseBytesPerDecodedId = 16;

}  // namespace

grpc::Status TokenizerServiceImpl::CheckSize(const google::protobuf::Message& request) const {
  const size_t bytes = request.ByteSizeLong();
  if (static_cast<int64_t>(bytes) > max_request_bytes_) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("request of ", bytes, " bytes exceeds the limit of ",
                                     max_request_bytes_, " bytes; split it (EncodeBatch streams)"));
  }
  return grpc::Status::OK;
}

grpc::Status TokenizerServiceImpl::CheckResponseSize(absl::string_view field, int64_t bytes) const {
  if (bytes > max_response_bytes_) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(field, " would take ", bytes, " bytes, over the response limit of ",
                     max_response_bytes_, " bytes; split the request"));
  }
  return grpc::Status::OK;
}

int64_t TokenizerServiceImpl::PackedIdsBytes(const std::vector<int32_t>& ids) {
  int64_t bytes = 0;
  for (const int32_t id : ids) {
    bytes += google::protobuf::io::CodedOutputStream::VarintSize32SignExtended(id);
  }
  return bytes;
}

bool TokenizerServiceImpl::DecodedTextMayExceedLimit(absl::Span<const int32_t> ids,
                                                     const DecodeOptions& options) const {
  // Decoders only shrink token strings (byte-level maps a character to one
  // byte, metaspace its mark to a space, byte fallback <0xNN> to a byte)
  // and add at most a separator per token.
  int64_t bound = 0;
  for (const int32_t id : ids) {
    const std::string* token = tokenizer_->IdToToken(id);
    bound += (token == nullptr ? 0 : static_cast<int64_t>(token->size())) + 1;
  }
  if (bound <= max_response_bytes_) return false;
  // Slices decode to about the whole's size: they differ by a few bytes at
  // each cut (a split character, a stripped first space).
  constexpr int64_t kSlackPerSlice = 8;
  int64_t measured = 0;
  for (size_t start = 0; start < ids.size(); start += kMeasureSliceIds) {
    absl::StatusOr<std::string> text =
        tokenizer_->Decode(ids.subspan(start, kMeasureSliceIds), options);
    // The whole decode reports the error with its position.
    if (!text.ok()) return false;
    measured += static_cast<int64_t>(text->size()) - kSlackPerSlice;
    if (measured > max_response_bytes_) return true;
  }
  return false;
}

grpc::Status TokenizerServiceImpl::Encode(grpc::ServerContext*, const EncodeRequest* request,
                                          EncodeResponse* response) {
  if (grpc::Status size = CheckSize(*request); !size.ok()) return size;
  auto ids = tokenizer_->Encode(
      request->text(), EncodeOptions{request->add_special_tokens(), request->strict_utf8()});
  if (!ids.ok()) return rpc::ToGrpcStatus(ids.status());
  if (grpc::Status size = CheckResponseSize("tokens.ids", PackedIdsBytes(*ids)); !size.ok()) {
    return size;
  }
  Fill(*ids, response->mutable_tokens());
  return grpc::Status::OK;
}

grpc::Status TokenizerServiceImpl::EncodeBatch(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<EncodeBatchResponse, EncodeBatchRequest>* stream) {
  EncodeBatchRequest request;
  while (stream->Read(&request)) {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    if (grpc::Status size = CheckSize(request); !size.ok()) return size;
    std::vector<std::string> texts(request.texts().begin(), request.texts().end());
    auto batch = tokenizer_->EncodeBatch(
        texts, EncodeOptions{request.add_special_tokens(), request.strict_utf8()});
    if (!batch.ok()) return rpc::ToGrpcStatus(batch.status());
    int64_t bytes = 0;
    for (const std::vector<int32_t>& ids : *batch) bytes += PackedIdsBytes(ids);
    if (grpc::Status size = CheckResponseSize("sequences.ids", bytes); !size.ok()) return size;
    EncodeBatchResponse response;
    for (const std::vector<int32_t>& ids : *batch) Fill(ids, response.add_sequences());
    if (!stream->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  return grpc::Status::OK;
}

grpc::Status TokenizerServiceImpl::Decode(grpc::ServerContext*, const DecodeRequest* request,
                                          DecodeResponse* response) {
  if (grpc::Status size = CheckSize(*request); !size.ok()) return size;
  const DecodeOptions options{request->skip_special_tokens()};
  const absl::Span<const int32_t> ids(request->ids().data(), request->ids().size());
  // Decoding holds each id's token string until the text is joined (about
  // 40 bytes an id), so the ids of one call are bounded too, by the response
  // limit: however short the text, memory stays a small multiple of it.
  const int64_t max_ids = std::max<int64_t>(1, max_response_bytes_ / kResponseBytesPerDecodedId);
  if (static_cast<int64_t>(ids.size()) > max_ids) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("DecodeRequest.ids holds ", ids.size(), " ids; at most ", max_ids,
                     " per call (the response limit of ", max_response_bytes_, " bytes / ",
                     kResponseBytesPerDecodedId, "); split the request"));
  }
  if (DecodedTextMayExceedLimit(ids, options)) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("text of ", ids.size(), " ids would take more than the response limit of ",
                     max_response_bytes_, " bytes; decode fewer ids per call"));
  }
  auto text = tokenizer_->Decode(ids, options);
  if (!text.ok()) return rpc::ToGrpcStatus(text.status());
  if (grpc::Status size = CheckResponseSize("text", static_cast<int64_t>(text->size()));
      !size.ok()) {
    return size;
  }
  response->set_text(*std::move(text));
  return grpc::Status::OK;
}

grpc::Status TokenizerServiceImpl::GetInfo(grpc::ServerContext*, const GetInfoRequest*,
                                           TokenizerInfo* response) {
  response->mutable_fingerprint()->set_sha256(tokenizer_->fingerprint());
  response->mutable_fingerprint()->set_vocab_size(tokenizer_->vocab_size());
  for (const AddedToken& token : tokenizer_->added_tokens()) {
    if (!token.special) continue;
    SpecialToken* special = response->add_special_tokens();
    special->set_id(token.id);
    special->set_content(token.content);
  }
  const std::vector<int32_t> ids = tokenizer_->template_special_ids();
  response->mutable_template_special_ids()->Add(ids.begin(), ids.end());
  response->set_num_merges(static_cast<int64_t>(tokenizer_->model().num_merges()));
  response->set_max_request_bytes(max_request_bytes_);
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<TokenizerServer>> TokenizerServer::Start(
    std::unique_ptr<Tokenizer> tokenizer, const Options& options) {
  std::unique_ptr<TokenizerServer> server(new TokenizerServer());
  server->tokenizer_ = std::move(tokenizer);
  server->service_ = std::make_unique<TokenizerServiceImpl>(
      server->tokenizer_.get(), options.max_request_bytes, options.max_response_bytes);
  rpc::GrpcServer::Options grpc_options;
  grpc_options.address = options.address;
  grpc_options.security = options.security;
  grpc_options.service_name = "maximus.TokenizerService";
  // The transport admits somewhat more than the limit, so that an oversize
  // request reaches the service and gets an error that names the limit.
  grpc_options.max_receive_message_bytes =
      static_cast<int>(std::min<int64_t>(INT32_MAX, options.max_request_bytes + (4 << 20)));
  // The service refuses larger responses with an error that names the limit.
  grpc_options.max_send_message_bytes =
      static_cast<int>(std::min<int64_t>(INT32_MAX, options.max_response_bytes + (4 << 20)));
  server->grpc_server_ = std::make_unique<rpc::GrpcServer>(grpc_options);
  server->grpc_server_->AddService(server->service_.get());
  MAXIMUS_RETURN_IF_ERROR(server->grpc_server_->Start());
  return server;
}

}  // namespace maximus::tokenizer
