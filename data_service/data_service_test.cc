// DataService end to end: real servers on loopback ports over a real
// RocksDB store with the real Gemma 3 tokenizer, against the embedded reader.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "data_service/data_service_impl.h"
#include "data_service/embedded_data_source.h"
#include "data_service/remote_data_source.h"
#include "data_service/store_opener.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"
#include "rpc/grpc_test_util.h"
#include "rpc/test_certificates.h"
#include "tokenizer/end_of_text.h"

namespace maximus::data {
namespace {

std::string g_tokenizer_path;
constexpr int32_t kGemmaEos = 1;

class DataServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer = tokenizer::Tokenizer::FromFile(g_tokenizer_path);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::shared_ptr<const tokenizer::Tokenizer>(*std::move(tokenizer));
  }

  void SetUp() override {
    dir_ = FreshTestDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    docs_ = SyntheticDocuments(400, 120, kGemmaEos, 5, tokenizer_->vocab_size());
  }

  std::unique_ptr<DataServer> StartServer(
      std::vector<int> shards = {}, int port = 0, size_t chunk_bytes = 256 << 10,
      const std::function<void(DataServer::Options*)>& adjust = [](DataServer::Options*) {}) {
    DataServer::Options options;
    options.address = absl::StrCat("127.0.0.1:", port);
    options.data_dir = dir_;
    options.shards = std::move(shards);
    options.num_shards = 4;
    options.max_request_bytes = 1 << 20;
    options.shutdown_grace = absl::Milliseconds(200);
    options.chunk_bytes = chunk_bytes;
    adjust(&options);
    auto server = DataServer::Start(tokenizer_, options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  static std::string Address(const DataServer& server) {
    return absl::StrCat("127.0.0.1:", server.port());
  }

  static std::unique_ptr<DataService::Stub> Stub(const DataServer& server) {
    return DataService::NewStub(
        grpc::CreateChannel(Address(server), grpc::InsecureChannelCredentials()));
  }

  // docs_[start, start + 50) as token documents.
  IngestRequest IngestMessage(size_t start) const {
    IngestRequest request;
    for (size_t i = start; i < std::min(docs_.size(), start + 50); ++i) {
      TokenSequence* tokens = request.add_documents()->mutable_tokens();
      tokens->mutable_ids()->Add(docs_[i].tokens.begin(), docs_[i].tokens.end());
      tokens->set_loss_mask(std::string(docs_[i].loss_mask.begin(), docs_[i].loss_mask.end()));
    }
    return request;
  }

  // Ingests docs_ as token documents, 50 per message.
  IngestResponse IngestAll(DataService::Stub* stub) {
    grpc::ClientContext context;
    IngestResponse response;
    auto writer = stub->Ingest(&context, &response);
    for (size_t start = 0; start < docs_.size(); start += 50) {
      EXPECT_TRUE(writer->Write(IngestMessage(start)));
    }
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static StreamBatchesRequest Request(uint64_t seed, uint32_t rank, uint32_t world) {
    StreamBatchesRequest r;
    r.mutable_selection()->set_split(SPLIT_TRAIN);
    r.mutable_selection()->set_seed(seed);
    r.mutable_selection()->set_rank(rank);
    r.mutable_selection()->set_world_size(world);
    r.mutable_selection()->set_validation_fraction(0.05);
    r.set_seq_len(127);
    r.set_batch_size(3);
    return r;
  }

  static FlatStream ReadFrom(DataSource* source, const StreamBatchesRequest& request, int batches) {
    auto stream = source->OpenStream(request);
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? ReadStream(stream->get(), batches) : FlatStream();
  }

  FlatStream ReadEmbedded(const StreamBatchesRequest& request, int batches) {
    auto store = OpenOrCreateStore(dir_, *tokenizer_, 4);
    EXPECT_TRUE(store.ok()) << store.status();
    auto source = EmbeddedDataSource::Open(*std::move(store), kGemmaEos);
    EXPECT_TRUE(source.ok()) << source.status();
    return ReadFrom(source->get(), request, batches);
  }

  // Creates the store through a server and fills it.
  void Populate() {
    std::unique_ptr<DataServer> server = StartServer();
    ASSERT_NE(server, nullptr);
    IngestAll(Stub(*server).get());
  }

  static std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  std::string dir_;
  std::vector<Document> docs_;
};

std::shared_ptr<const tokenizer::Tokenizer> DataServiceTest::tokenizer_;

TEST_F(DataServiceTest, EndOfTextOfGemma) {
  auto eos = tokenizer::EndOfTextId(*tokenizer_);
  ASSERT_TRUE(eos.ok());
  EXPECT_EQ(*eos, kGemmaEos);
}

TEST_F(DataServiceTest, IngestAcknowledgesAndDeduplicates) {
  std::unique_ptr<DataServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  IngestResponse first = IngestAll(stub.get());
  EXPECT_EQ(first.documents(), 400);
  EXPECT_EQ(first.added(), 400);
  EXPECT_EQ(first.duplicates(), 0);
  IngestResponse again = IngestAll(stub.get());
  EXPECT_EQ(again.added(), 0);
  EXPECT_EQ(again.duplicates(), 400);

  // Text and chat documents are tokenized by the server.
  grpc::ClientContext context;
  IngestResponse response;
  auto writer = stub->Ingest(&context, &response);
  IngestRequest request;
  request.add_documents()->set_text("It is a truth universally acknowledged.");
  Conversation* chat = request.add_documents()->mutable_chat();
  ChatTurn* turn = chat->add_turns();
  turn->set_role("user");
  turn->set_content("Who wrote Persuasion?");
  turn = chat->add_turns();
  turn->set_role("model");
  turn->set_content("Jane Austen.");
  ASSERT_TRUE(writer->Write(request));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(response.added(), 2);
  auto expected = tokenizer_->Encode("It is a truth universally acknowledged.");
  ASSERT_TRUE(expected.ok());
  auto stored = server->store().Get(TokenStore::DocumentId(*expected));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->loss_mask.empty());

  grpc::ClientContext stats_context;
  GetStatsRequest stats_request;
  stats_request.set_validation_fraction(0.05);
  StoreStats stats;
  ASSERT_TRUE(stub->GetStats(&stats_context, stats_request, &stats).ok());
  EXPECT_EQ(stats.documents(), 402);
  EXPECT_EQ(stats.shards_size(), 4);
  EXPECT_EQ(stats.train().documents() + stats.validation().documents(), 402);
  EXPECT_TRUE(rpc::ReportsServing(
      grpc::CreateChannel(Address(*server), grpc::InsecureChannelCredentials())));
}

TEST_F(DataServiceTest, BadIngestMessagesNameTheDocumentAndStoreNothing) {
  std::unique_ptr<DataServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  struct Case {
    std::function<void(IngestRequest*)> fill;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](IngestRequest* r) {
         r->add_documents()->set_text("fine");
         r->add_documents()->mutable_tokens()->add_ids(300000);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "document 1, position 0: token id 300000"},
      {[](IngestRequest* r) { r->add_documents(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "message 0, documents[0]: no content"},
      {[](IngestRequest* r) {
         ChatTurn* t = r->add_documents()->mutable_chat()->add_turns();
         t->set_role("narrator");
         t->set_content("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "documents[0]"},
      {[](IngestRequest* r) { r->add_documents()->set_text(std::string(2 << 20, 'a')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "at most 1048576"},
      {[](IngestRequest* r) {
         TokenSequence* t = r->add_documents()->mutable_tokens();
         t->add_ids(5);
         t->set_loss_mask(std::string("\x01\x01", 2));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "loss mask has 2 entries for 1 tokens"},
  };
  for (const Case& c : cases) {
    grpc::ClientContext context;
    IngestResponse response;
    auto writer = stub->Ingest(&context, &response);
    IngestRequest request;
    c.fill(&request);
    writer->Write(request);
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << status.error_message();
  }
  EXPECT_EQ(server->documents(), 0);
}

// Polls `condition` for up to 10 s.
bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

TEST_F(DataServiceTest, AMalformedIngestMessageIsInvalidArgumentNamingIt) {
  std::unique_ptr<DataServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  // Message 1 is cut inside a length-delimited field; a typed stub cannot
  // send it, so the call goes through the generic stub.
  std::vector<std::string> messages = {IngestMessage(0).SerializeAsString(), "\x0a\x05ab",
                                       IngestMessage(50).SerializeAsString()};
  grpc::GenericStub generic(
      grpc::CreateChannel(Address(*server), grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      generic.PrepareCall(&context, "/maximus.data.DataService/Ingest", &cq);
  auto await = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, reinterpret_cast<void*>(want));
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(await(1));
  for (size_t i = 0; i < messages.size(); ++i) {
    grpc::Slice slice(messages[i]);
    grpc::ByteBuffer raw(&slice, 1);
    call->Write(raw, reinterpret_cast<void*>(2));
    // A write after the server ended the call fails.
    if (!await(2)) break;
  }
  call->WritesDone(reinterpret_cast<void*>(3));
  await(3);
  // No response comes with an error (Finish would wait for one unread).
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(5));
  EXPECT_FALSE(await(5));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  ASSERT_TRUE(await(4));
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("message 1 "), std::string::npos) << status.error_message();
  // Each message is stored before the next is read: message 0's documents
  // are in, message 2's never were.
  EXPECT_EQ(server->documents(), 50);
  // The server stays up.
  EXPECT_EQ(IngestAll(Stub(*server).get()).documents(), static_cast<int64_t>(docs_.size()));
}

TEST_F(DataServiceTest, StreamsBeyondMaxStreamsAreRefused) {
  Populate();
  std::unique_ptr<DataServer> server =
      StartServer({}, 0, 256 << 10, [](DataServer::Options* o) { o->max_streams = 2; });
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  grpc::ClientContext contexts[3];
  std::unique_ptr<grpc::ClientReader<PackedBatch>> readers[3];
  PackedBatch batch;
  for (int i = 0; i < 2; ++i) {
    readers[i] = stub->StreamBatches(&contexts[i], Request(7, 0, 1));
    ASSERT_TRUE(readers[i]->Read(&batch));
  }
  EXPECT_EQ(server->active_streams(), 2);
  readers[2] = stub->StreamBatches(&contexts[2], Request(7, 0, 1));
  const bool got = readers[2]->Read(&batch);
  EXPECT_FALSE(got);
  // Else the stream goes on, and Finish would wait for it.
  if (got) contexts[2].TryCancel();
  const grpc::Status refused = readers[2]->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_NE(refused.error_message().find("2 streams, its limit (max_streams)"), std::string::npos)
      << refused.error_message();
  // The open streams go on.
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(readers[i]->Read(&batch));
  for (int i = 0; i < 2; ++i) {
    contexts[i].TryCancel();
    readers[i]->Finish();
  }
  EXPECT_TRUE(Eventually([&] { return server->active_streams() == 0; }));
}

TEST_F(DataServiceTest, ACancelledStreamEndsOnTheServerWhileWaitingForTheByteBudget) {
  Populate();
  // Room for one batch in flight: a stream whose client does not read
  // holds it (its Write blocks on flow control), and a second waits.
  std::unique_ptr<DataServer> server = StartServer(
      {}, 0, 256 << 10, [](DataServer::Options* o) { o->max_bytes_in_flight = 1 << 20; });
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  StreamBatchesRequest request = Request(7, 0, 1);
  request.set_seq_len(4095);
  request.set_batch_size(16);
  grpc::ClientContext unread_context;
  auto unread = stub->StreamBatches(&unread_context, request);
  // Its client's flow-control window fills, and its Write blocks holding
  // the budget.
  ASSERT_TRUE(Eventually([&] {
    for (int i = 0; i < 30; ++i) {
      if (server->bytes_in_flight() == 0) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }));
  grpc::ClientContext waiting_context;
  auto waiting = stub->StreamBatches(&waiting_context, request);
  ASSERT_TRUE(Eventually([&] { return server->active_streams() == 2; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_LE(server->bytes_in_flight(), 1 << 20);
  waiting_context.TryCancel();
  EXPECT_TRUE(Eventually([&] { return server->active_streams() == 1; }));
  unread_context.TryCancel();
  EXPECT_TRUE(Eventually([&] { return server->active_streams() == 0; }));
  EXPECT_EQ(server->bytes_in_flight(), 0);
  EXPECT_EQ(waiting->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(unread->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(DataServiceTest, ABatchLargerThanTheResponseLimitIsRefused) {
  Populate();
  std::unique_ptr<DataServer> server = StartServer(
      {}, 0, 256 << 10, [](DataServer::Options* o) { o->max_response_bytes = 1 << 20; });
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  StreamBatchesRequest request = Request(7, 0, 1);
  request.set_seq_len(65535);
  request.set_batch_size(8);
  grpc::ClientContext context;
  auto reader = stub->StreamBatches(&context, request);
  PackedBatch batch;
  const bool got = reader->Read(&batch);
  EXPECT_FALSE(got);
  // Else the stream goes on, and Finish would wait for it.
  if (got) context.TryCancel();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("batch_size * (seq_len + 1) = 8 * 65536"),
            std::string::npos)
      << status.error_message();
  // A batch within the limit streams.
  grpc::ClientContext small_context;
  auto small = stub->StreamBatches(&small_context, Request(7, 0, 1));
  EXPECT_TRUE(small->Read(&batch));
  small_context.TryCancel();
  small->Finish();
}

// StreamDocuments sends whole documents: one larger than the response limit
// is refused by name rather than sent as an unbounded message.
TEST_F(DataServiceTest, ADocumentLargerThanTheResponseLimitIsRefused) {
  Populate();
  int64_t longest = 0;
  for (const auto& doc : docs_) longest = std::max<int64_t>(longest, doc.tokens.size());
  std::unique_ptr<DataServer> server = StartServer({}, 0, 256 << 10, [&](DataServer::Options* o) {
    o->max_response_bytes = longest * 4 / 2;  // The longest document cannot fit.
  });
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server);
  StreamDocumentsRequest request;
  request.mutable_selection()->set_split(SPLIT_TRAIN);
  request.mutable_selection()->set_world_size(1);
  grpc::ClientContext context;
  auto reader = stub->StreamDocuments(&context, request);
  DocumentChunk chunk;
  int64_t bytes_read = 0;
  while (reader->Read(&chunk)) {
    bytes_read = std::max<int64_t>(bytes_read, chunk.ByteSizeLong());
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("takes more than the response limit"), std::string::npos)
      << status.error_message();
  EXPECT_LE(bytes_read, longest * 4 / 2) << "a message over the limit was sent";
}

TEST_F(DataServiceTest, RemoteStreamEqualsEmbeddedStream) {
  Populate();
  const StreamBatchesRequest request = Request(7, 1, 2);
  FlatStream remote;
  {
    std::unique_ptr<DataServer> server = StartServer();
    ASSERT_NE(server, nullptr);
    auto source = RemoteDataSource::Connect({Address(*server)});
    ASSERT_TRUE(source.ok()) << source.status();
    EXPECT_EQ((*source)->info().eos_id(), kGemmaEos);
    remote = ReadFrom(source->get(), request, 40);
    // Bad requests are refused before and by the server.
    StreamBatchesRequest bad = request;
    bad.set_seq_len(0);
    EXPECT_EQ((*source)->OpenStream(bad).status().code(), absl::StatusCode::kInvalidArgument);
    grpc::ClientContext context;
    auto reader = Stub(*server)->StreamBatches(&context, bad);
    PackedBatch batch;
    EXPECT_FALSE(reader->Read(&batch));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("seq_len"), std::string::npos);
  }
  ASSERT_EQ(remote.batches.size(), 40u);
  const FlatStream embedded = ReadEmbedded(request, 40);
  EXPECT_EQ(remote.tokens, embedded.tokens);
  EXPECT_EQ(remote.mask, embedded.mask);
}

TEST_F(DataServiceTest, TlsAndTokenGuardTheRemoteSource) {
  const std::string cert_dir = dir_ + "_certs";
  ASSERT_EQ(std::system(("mkdir -p '" + cert_dir + "'").c_str()), 0);
  const std::optional<rpc::TestCertificates> certificates = rpc::MakeTestCertificates(cert_dir);
  if (!certificates.has_value()) {
    GTEST_SKIP() << "no test certificates: the openssl tool is missing or failed";
  }
  Populate();
  rpc::ServerSecurity security;
  security.tls_cert_pem = certificates->server_cert_pem;
  security.tls_key_pem = certificates->server_key_pem;
  security.token = "data-token";
  std::unique_ptr<DataServer> server =
      StartServer({}, 0, 256 << 10, [&](DataServer::Options* o) { o->security = security; });
  ASSERT_NE(server, nullptr);

  RemoteDataSource::Options options;
  options.connect_timeout = absl::Seconds(2);
  EXPECT_FALSE(RemoteDataSource::Connect({Address(*server)}, options).ok());  // Plaintext.
  options.security.tls = true;
  options.security.tls_ca_pem = certificates->ca_pem;
  EXPECT_EQ(RemoteDataSource::Connect({Address(*server)}, options).status().code(),
            absl::StatusCode::kUnauthenticated);
  options.security.token = "wrong";
  EXPECT_EQ(RemoteDataSource::Connect({Address(*server)}, options).status().code(),
            absl::StatusCode::kUnauthenticated);
  options.security.token = "data-token";
  auto source = RemoteDataSource::Connect({Address(*server)}, options);
  ASSERT_TRUE(source.ok()) << source.status();
  const StreamBatchesRequest request = Request(7, 1, 2);
  const FlatStream remote = ReadFrom(source->get(), request, 5);
  source->reset();
  server.reset();  // Frees the store for the embedded reader.
  ASSERT_EQ(remote.batches.size(), 5u);
  EXPECT_EQ(remote.tokens, ReadEmbedded(request, 5).tokens);
}

TEST_F(DataServiceTest, TwoServersServeOneShardedStore) {
  Populate();
  const StreamBatchesRequest request = Request(3, 0, 1);
  const FlatStream embedded = ReadEmbedded(request, 60);
  std::unique_ptr<DataServer> low = StartServer({0, 1});
  std::unique_ptr<DataServer> high = StartServer({2, 3});
  ASSERT_NE(low, nullptr);
  ASSERT_NE(high, nullptr);
  auto source = RemoteDataSource::Connect({Address(*low), Address(*high)});
  ASSERT_TRUE(source.ok()) << source.status();
  const FlatStream merged = ReadFrom(source->get(), request, 60);
  EXPECT_EQ(merged.tokens, embedded.tokens);
  EXPECT_EQ(merged.mask, embedded.mask);

  // Resuming through the merged path continues exactly.
  StreamBatchesRequest resumed = request;
  *resumed.mutable_resume() = merged.batches[24].next();
  const FlatStream rest = ReadFrom(source->get(), resumed, 35);
  for (int i = 0; i < 35; ++i) {
    EXPECT_EQ(rest.batches[i].tokens(), merged.batches[25 + i].tokens());
  }

  auto stats = (*source)->GetStats(0.05);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->documents(), 400);
  EXPECT_EQ(stats->shards_size(), 4);

  // A partial server does not pack batches itself.
  grpc::ClientContext context;
  auto reader = Stub(*low)->StreamBatches(&context, request);
  PackedBatch batch;
  EXPECT_FALSE(reader->Read(&batch));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  auto missing = RemoteDataSource::Connect({Address(*low)});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("shard 2 of 4 is served by none"),
            absl::string_view::npos)
      << missing.status();
  auto twice = RemoteDataSource::Connect({Address(*low), Address(*low), Address(*high)});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("shard 0 is served by both"), absl::string_view::npos)
      << twice.status();

  // Through the client, documents reach the server of their shard.
  std::vector<Document> extra = SyntheticDocuments(40, 30, kGemmaEos, 77, tokenizer_->vocab_size());
  auto ingested = (*source)->IngestTokens(extra, 7);
  ASSERT_TRUE(ingested.ok()) << ingested.status();
  EXPECT_EQ(ingested->added(), 40);
  auto again = (*source)->IngestTokens(extra);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates(), 40);
  auto grown = (*source)->GetStats(0.05);
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(grown->documents(), 440);
  EXPECT_EQ(low->documents() + high->documents(), 440);

  // A document of another server's shard is refused, naming the shard.
  grpc::ClientContext ingest_context;
  IngestResponse response;
  auto writer = Stub(*low)->Ingest(&ingest_context, &response);
  IngestRequest ingest;
  for (int i = 0; i < 8; ++i) ingest.add_documents()->mutable_tokens()->add_ids(1000 + i);
  writer->Write(ingest);
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("not open here"), std::string::npos);
}

TEST_F(DataServiceTest, ResumeAcrossClientAndServerRestart) {
  Populate();
  const StreamBatchesRequest request = Request(11, 2, 3);
  std::mt19937 rng(std::random_device{}());
  const int stop = static_cast<int>(rng() % 30);
  FlatStream whole;
  StreamCursor cursor;
  {
    std::unique_ptr<DataServer> server = StartServer();
    ASSERT_NE(server, nullptr);
    auto source = RemoteDataSource::Connect({Address(*server)});
    ASSERT_TRUE(source.ok());
    whole = ReadFrom(source->get(), request, 40);
    cursor = ReadFrom(source->get(), request, stop + 1).batches.back().next();
  }
  std::unique_ptr<DataServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  auto source = RemoteDataSource::Connect({Address(*server)});
  ASSERT_TRUE(source.ok());
  StreamBatchesRequest resumed = request;
  *resumed.mutable_resume() = cursor;
  const FlatStream rest = ReadFrom(source->get(), resumed, 39 - stop);
  ASSERT_EQ(rest.batches.size(), static_cast<size_t>(39 - stop)) << "stopped at " << stop;
  for (int i = 0; i < 39 - stop; ++i) {
    EXPECT_EQ(rest.batches[i].tokens(), whole.batches[stop + 1 + i].tokens()) << stop;
    EXPECT_EQ(rest.batches[i].loss_mask(), whole.batches[stop + 1 + i].loss_mask()) << stop;
  }
}

TEST_F(DataServiceTest, AnOpenStreamSurvivesAServerRestart) {
  Populate();
  const StreamBatchesRequest request = Request(5, 0, 1);
  const FlatStream expected = ReadEmbedded(request, 50);
  std::unique_ptr<DataServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  auto source = RemoteDataSource::Connect({Address(*server)});
  ASSERT_TRUE(source.ok());
  auto stream = (*source)->OpenStream(request);
  ASSERT_TRUE(stream.ok());
  FlatStream got = ReadStream(stream->get(), 20);
  server.reset();  // stops; the stream breaks with UNAVAILABLE
  server = StartServer({}, port);
  ASSERT_NE(server, nullptr);
  FlatStream more = ReadStream(stream->get(), 30);
  got.tokens.insert(got.tokens.end(), more.tokens.begin(), more.tokens.end());
  EXPECT_EQ(got.tokens, expected.tokens);
}

TEST_F(DataServiceTest, AMergedStreamSurvivesARestartOfOneServer) {
  // Each server's part of an epoch (about 6 MB) exceeds what gRPC buffers
  // ahead, so the restart breaks a call in the middle of an epoch.
  docs_ = SyntheticDocuments(3000, 2000, kGemmaEos, 9, tokenizer_->vocab_size());
  Populate();
  StreamBatchesRequest request = Request(8, 0, 1);
  request.set_seq_len(1023);
  request.set_batch_size(8);
  const FlatStream expected = ReadEmbedded(request, 800);
  std::unique_ptr<DataServer> low = StartServer({0, 1}, 0, 64 << 10);
  std::unique_ptr<DataServer> high = StartServer({2, 3}, 0, 64 << 10);
  ASSERT_NE(low, nullptr);
  ASSERT_NE(high, nullptr);
  const int port = high->port();
  auto source = RemoteDataSource::Connect({Address(*low), Address(*high)});
  ASSERT_TRUE(source.ok()) << source.status();
  auto stream = (*source)->OpenStream(request);
  ASSERT_TRUE(stream.ok());
  FlatStream got = ReadStream(stream->get(), 20);
  high.reset();
  high = StartServer({2, 3}, port, 64 << 10);
  ASSERT_NE(high, nullptr);
  FlatStream more = ReadStream(stream->get(), 780);
  got.tokens.insert(got.tokens.end(), more.tokens.begin(), more.tokens.end());
  ASSERT_EQ(got.tokens.size(), expected.tokens.size());
  EXPECT_TRUE(got.tokens == expected.tokens);
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    absl::FPrintF(stderr, "usage: %s PATH/tokenizer.json\n", argv[0]);
    return 2;
  }
  maximus::data::g_tokenizer_path = argv[1];
  return RUN_ALL_TESTS();
}
