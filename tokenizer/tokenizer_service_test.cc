// TokenizerService on loopback: a real server with the Gemma 3 vocabulary,
// a client over TCP, and every kind of bad request.

#include "tokenizer/tokenizer_service.h"

#include <grpcpp/generic/generic_stub.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "gtest/gtest.h"

namespace maximus::tokenizer {
namespace {

constexpr char kGemma[] = "external/tokenizers/gemma3/tokenizer.json";
constexpr int64_t kMaxResponseBytes = 4 << 20;

class TokenizerServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer = Tokenizer::FromFile(kGemma);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    TokenizerServer::Options options;
    options.address = "127.0.0.1:0";
    options.max_request_bytes = 1 << 20;
    options.max_response_bytes = kMaxResponseBytes;
    auto server = TokenizerServer::Start(*std::move(tokenizer), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    reference_ = Tokenizer::FromFile(kGemma)->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete reference_;
  }

  void SetUp() override {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = TokenizerService::NewStub(channel_);
  }

  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }

  grpc::Status Encode(const std::string& text, EncodeResponse* response, bool strict = false,
                      bool special = false) {
    grpc::ClientContext context;
    SetDeadline(&context);
    EncodeRequest request;
    request.set_text(text);
    request.set_strict_utf8(strict);
    request.set_add_special_tokens(special);
    return stub_->Encode(&context, request, response);
  }

  static TokenizerServer* server_;
  static Tokenizer* reference_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<TokenizerService::Stub> stub_;
};

TokenizerServer* TokenizerServiceTest::server_ = nullptr;
Tokenizer* TokenizerServiceTest::reference_ = nullptr;

TEST_F(TokenizerServiceTest, EncodeAndDecode) {
  const std::string text = "Hello world, this is Maximus. 世界 🙂";
  EncodeResponse encoded;
  ASSERT_TRUE(Encode(text, &encoded).ok());
  const std::vector<int32_t> expected = *reference_->Encode(text);
  EXPECT_EQ(std::vector<int32_t>(encoded.tokens().ids().begin(), encoded.tokens().ids().end()),
            expected);
  EXPECT_EQ(encoded.tokens().ids(0), 9259);  // "Hello" in Gemma 3.

  EncodeResponse special;
  ASSERT_TRUE(Encode(text, &special, false, true).ok());
  ASSERT_EQ(special.tokens().ids_size(), encoded.tokens().ids_size() + 1);
  EXPECT_EQ(special.tokens().ids(0), 2);  // <bos>

  grpc::ClientContext context;
  SetDeadline(&context);
  DecodeRequest request;
  *request.mutable_ids() = encoded.tokens().ids();
  DecodeResponse decoded;
  ASSERT_TRUE(stub_->Decode(&context, request, &decoded).ok());
  EXPECT_EQ(decoded.text(), text);
}

TEST_F(TokenizerServiceTest, EncodeBatchStreams) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->EncodeBatch(&context);
  std::vector<std::vector<std::string>> batches = {{"first document", "second\n\ndocument", ""},
                                                   {"third", "fourth 🙂"}};
  for (const auto& batch : batches) {
    EncodeBatchRequest request;
    for (const std::string& text : batch) request.add_texts(text);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  EncodeBatchResponse response;
  for (const auto& batch : batches) {
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.sequences_size(), static_cast<int>(batch.size()));
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& ids = response.sequences(i).ids();
      EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.end()), *reference_->Encode(batch[i]));
    }
  }
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(TokenizerServiceTest, GetInfo) {
  grpc::ClientContext context;
  SetDeadline(&context);
  TokenizerInfo info;
  ASSERT_TRUE(stub_->GetInfo(&context, GetInfoRequest(), &info).ok());
  std::ifstream in(kGemma, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  EXPECT_EQ(info.fingerprint().sha256(), base::Sha256Hex(bytes.str()));
  EXPECT_EQ(info.fingerprint().sha256(),
            "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795");
  EXPECT_EQ(info.fingerprint().vocab_size(), 262145);  // 262,144 + <image_soft_token>.
  EXPECT_EQ(info.num_merges(), 514906);
  ASSERT_EQ(info.template_special_ids_size(), 1);
  EXPECT_EQ(info.template_special_ids(0), 2);
  bool has_bos = false;
  for (const SpecialToken& token : info.special_tokens()) {
    has_bos |= token.id() == 2 && token.content() == "<bos>";
  }
  EXPECT_TRUE(has_bos);
}

TEST_F(TokenizerServiceTest, BadRequestsAreInvalidArgument) {
  EncodeResponse encoded;
  grpc::Status status = Encode("ok \xFF bytes", &encoded, /*strict=*/true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("UTF-8"), std::string::npos) << status.error_message();
  // Lenient: replaced, as the reference does.
  EXPECT_TRUE(Encode("ok \xFF bytes", &encoded).ok());

  status = Encode(std::string((1 << 20) + 10, 'a'), &encoded);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("exceeds the limit"), std::string::npos);

  for (int32_t id : {-1, 262145, 1 << 30}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    DecodeRequest request;
    request.add_ids(10);
    request.add_ids(id);
    DecodeResponse decoded;
    status = stub_->Decode(&context, request, &decoded);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
    EXPECT_NE(status.error_message().find(std::to_string(id)), std::string::npos);
  }

  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->EncodeBatch(&context);
  EncodeBatchRequest request;
  request.add_texts("fine");
  request.add_texts("bad \xC0\x80");
  request.set_strict_utf8(true);
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  EncodeBatchResponse response;
  EXPECT_FALSE(stream->Read(&response));
  status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("text 1"), std::string::npos) << status.error_message();

  // Garbage instead of a protobuf: rejected, and the server keeps serving.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext raw_context;
  SetDeadline(&raw_context);
  grpc::Slice slice(std::string("\xFF\xFF\xFF\xFF garbage"));
  grpc::ByteBuffer raw(&slice, 1), raw_response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&raw_context, "/maximus.TokenizerService/Encode", grpc::StubOptions(), &raw,
                    &raw_response, [&](grpc::Status s) { done.set_value(s); });
  EXPECT_FALSE(done.get_future().get().ok());
  EXPECT_TRUE(Encode("still serving", &encoded).ok());
}

TEST_F(TokenizerServiceTest, ADecodeLargerThanTheResponseLimitIsRefused) {
  // The vocabulary's longest token (a run of newlines or spaces), repeated
  // in a request under the request limit, decodes to several times the
  // response limit.
  int32_t longest = 0;
  for (int32_t id = 0; id < reference_->vocab_size(); ++id) {
    const std::string* token = reference_->IdToToken(id);
    if (token != nullptr && token->size() > reference_->IdToToken(longest)->size()) longest = id;
  }
  ASSERT_GE(reference_->IdToToken(longest)->size(), 16u);
  DecodeRequest request;
  for (int i = 0; i < 250000; ++i) request.add_ids(longest);
  ASSERT_LT(request.ByteSizeLong(), 1u << 20);
  // A client that takes any size, so that only the server's limit applies.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto stub = TokenizerService::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials(), args));
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    DecodeResponse response;
    const grpc::Status status = stub->Decode(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_NE(status.error_message().find(
                  absl::StrCat("response limit of ", kMaxResponseBytes, " bytes")),
              std::string::npos)
        << status.error_message();
    EXPECT_TRUE(response.text().empty());
  }
  // The server stays up and serves a small call.
  grpc::ClientContext context;
  SetDeadline(&context);
  request.mutable_ids()->Truncate(3);
  DecodeResponse response;
  const grpc::Status status = stub->Decode(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.text(), *reference_->Decode({longest, longest, longest}));
}

// Decoding holds every id's token string at once: the ids of one call are
// bounded by the response limit even when the text itself would fit.
TEST_F(TokenizerServiceTest, ADecodeOfTooManyIdsIsRefusedEvenIfItsTextFits) {
  int32_t one_byte = -1;
  for (int32_t id = 0; id < reference_->vocab_size() && one_byte < 0; ++id) {
    const std::string* token = reference_->IdToToken(id);
    if (token != nullptr && token->size() == 1 && (*token)[0] >= 'a' && (*token)[0] <= 'z') {
      one_byte = id;
    }
  }
  ASSERT_GE(one_byte, 0);
  const int64_t max_ids = kMaxResponseBytes / 16;
  DecodeRequest request;
  for (int64_t i = 0; i < max_ids + 1; ++i) request.add_ids(one_byte);
  ASSERT_LT(static_cast<int64_t>(request.ids_size()), kMaxResponseBytes);  // The text fits.
  grpc::ClientContext context;
  SetDeadline(&context);
  DecodeResponse response;
  grpc::Status status = stub_->Decode(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find(absl::StrCat("DecodeRequest.ids holds ", max_ids + 1)),
            std::string::npos)
      << status.error_message();
  // At the bound it decodes.
  request.mutable_ids()->Truncate(max_ids);
  grpc::ClientContext at_bound;
  SetDeadline(&at_bound);
  status = stub_->Decode(&at_bound, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(static_cast<int64_t>(response.text().size()), max_ids);
}

TEST_F(TokenizerServiceTest, ReflectionListsTheServices) {
  // ServerReflectionRequest{list_services: ""} over the generic bidi stub.
  grpc::GenericStub generic(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  SetDeadline(&context);
  auto call = generic.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto step = [&](int id) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, reinterpret_cast<void*>(id));
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1), response;
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->Read(&response, reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  call->WritesDone(reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_NE(bytes.find("maximus.TokenizerService"), std::string::npos);
  EXPECT_NE(bytes.find("maximus.ServerInfoService"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(TokenizerServiceTest, HealthAndServerInfo) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Slice empty(std::string(""));
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // SERVING

  auto info_stub = ServerInfoService::NewStub(channel_);
  grpc::ClientContext info_context;
  SetDeadline(&info_context);
  ServerInfo info;
  ASSERT_TRUE(info_stub->GetServerInfo(&info_context, GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.service(), "maximus.TokenizerService");
  EXPECT_GT(info.pid(), 0);
}

}  // namespace
}  // namespace maximus::tokenizer
