// Real EmbeddingServers on loopback over real RocksDB indexes: a server with
// a checkpoint (random small model, the real Gemma 3 tokenizer, real
// English text) answering every call; bad inputs answered with
// INVALID_ARGUMENT or NOT_FOUND naming the field; health and reflection;
// TLS with a bearer token; restart; concurrent upserts and searches; and two
// sharded servers through the client giving what one server gives.
//
// Usage: embedding_service_test PATH/tokenizer.json

#include "embedding_service/embedding_service_impl.h"

#include <atomic>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/embedding_client.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/test_checkpoint.h"
#include "embedding_service/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/client_security.h"
#include "rpc/grpc_test_util.h"
#include "rpc/test_certificates.h"

namespace maximus::embedding {

std::string g_tokenizer_path;

namespace {

using ::testing::HasSubstr;

using testing::RandomRecords;
using testing::RandomVector;
using testing::TestDir;

const std::vector<std::string>& kSentences = testing::AustenOpenings();

std::unique_ptr<v1::EmbeddingService::Stub> StubFor(const EmbeddingServer& server) {
  return v1::EmbeddingService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
}

// Sends one Upsert stream of `requests`; the status and the acknowledged count.
grpc::Status UpsertAll(v1::EmbeddingService::Stub& stub,
                       const std::vector<v1::UpsertRequest>& requests, uint64_t* acknowledged) {
  grpc::ClientContext context;
  auto stream = stub.Upsert(&context);
  v1::UpsertResponse response;
  *acknowledged = 0;
  for (const v1::UpsertRequest& request : requests) {
    if (!stream->Write(request) || !stream->Read(&response)) break;
    *acknowledged = response.total();
  }
  stream->WritesDone();
  return stream->Finish();
}

void ExpectError(const grpc::Status& status, grpc::StatusCode code, const std::string& words) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(words));
}

class EmbeddingServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(TestDir("checkpoint"));
    ASSERT_TRUE(WriteTestCheckpoint(*checkpoint_, g_tokenizer_path).ok());
  }
  static void TearDownTestSuite() { delete checkpoint_; }

  std::unique_ptr<EmbeddingServer> StartServer(const std::string& data_dir,
                                               EmbeddingServer::Options options = {}) {
    options.data_dir = data_dir;
    if (options.dims == 0) options.checkpoint = *checkpoint_;
    options.embedder.backend = "cpu";
    auto server = EmbeddingServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  static std::string* checkpoint_;
};

std::string* EmbeddingServiceTest::checkpoint_ = nullptr;

TEST_F(EmbeddingServiceTest, EmbedsUpsertsSearchesGetsDeletes) {
  std::unique_ptr<EmbeddingServer> server = StartServer(TestDir("full"));
  ASSERT_NE(server, nullptr);
  auto stub = StubFor(*server);

  // Embed: each requested Matryoshka prefix, unit length.
  v1::EmbedRequest embed;
  for (const std::string& s : kSentences) embed.add_texts(s);
  embed.add_prefix_sizes(64);
  embed.add_prefix_sizes(kTestModelDims);
  v1::EmbedResponse embedded;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Embed(&context, embed, &embedded).ok());
  }
  ASSERT_EQ(embedded.embeddings_size(), static_cast<int>(kSentences.size()));
  EXPECT_EQ(embedded.dims(), kTestModelDims);
  for (const v1::TextEmbedding& text : embedded.embeddings()) {
    ASSERT_EQ(text.prefixes_size(), 2);
    EXPECT_EQ(text.prefixes(0).values_size(), 64);
    EXPECT_EQ(text.prefixes(1).values_size(), kTestModelDims);
    for (const v1::Embedding& prefix : text.prefixes()) {
      const std::vector<float> v(prefix.values().begin(), prefix.values().end());
      EXPECT_NEAR(PrefixNorm(v, v.size()), 1.0, 1e-5);
    }
  }

  // Upsert: texts (embedded by the server) and vectors, two messages.
  std::vector<v1::UpsertRequest> requests(2);
  for (size_t i = 0; i < kSentences.size(); ++i) {
    v1::VectorEntry* entry = requests[0].add_vectors();
    entry->set_id(absl::StrCat("austen", i));
    entry->set_text(kSentences[i]);
    (*entry->mutable_metadata())["novel"] = absl::StrCat(i);
  }
  std::mt19937_64 rng(1);
  for (int i = 0; i < 50; ++i) {
    v1::VectorEntry* entry = requests[1].add_vectors();
    entry->set_id(absl::StrCat("random", i));
    const std::vector<float> v = RandomVector(kTestModelDims, rng);
    entry->mutable_values()->Add(v.begin(), v.end());
  }
  uint64_t acknowledged = 0;
  ASSERT_TRUE(UpsertAll(*stub, requests, &acknowledged).ok());
  EXPECT_EQ(acknowledged, kSentences.size() + 50);

  // Search by text finds the same text first, with the server's embedding.
  for (size_t i = 0; i < kSentences.size(); ++i) {
    v1::SearchRequest search;
    search.set_text(kSentences[i]);
    search.set_k(3);
    v1::SearchResponse found;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Search(&context, search, &found).ok());
    ASSERT_EQ(found.hits_size(), 3);
    EXPECT_EQ(found.hits(0).id(), absl::StrCat("austen", i));
    EXPECT_NEAR(found.hits(0).score(), 1.0, 1e-4);
    EXPECT_EQ(found.hits(0).metadata().at("novel"), absl::StrCat(i));
  }
  // By vector, exact and coarse to fine, with a metadata filter.
  {
    v1::SearchRequest search;
    const auto& values = embedded.embeddings(2).prefixes(1).values();
    search.mutable_vector()->mutable_values()->Add(values.begin(), values.end());
    search.set_k(1);
    search.set_mode(v1::SEARCH_MODE_EXACT);
    search.mutable_filter()->set_key("novel");
    search.mutable_filter()->set_value("2");
    v1::SearchResponse found;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Search(&context, search, &found).ok());
    ASSERT_EQ(found.hits_size(), 1);
    EXPECT_EQ(found.hits(0).id(), "austen2");
  }
  // Get returns the stored (normalised) vector.
  {
    v1::GetRequest get;
    get.set_id("austen3");
    v1::GetResponse got;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Get(&context, get, &got).ok());
    EXPECT_EQ(got.vector().values_size(), kTestModelDims);
    EXPECT_EQ(got.vector().metadata().at("novel"), "3");
    for (int j = 0; j < kTestModelDims; ++j) {
      EXPECT_NEAR(got.vector().values(j), embedded.embeddings(3).prefixes(1).values(j), 1e-5);
    }
  }
  // Stats, Delete, Stats.
  v1::StatsResponse stats;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Stats(&context, v1::StatsRequest(), &stats).ok());
  }
  EXPECT_EQ(stats.vectors(), kSentences.size() + 50);
  EXPECT_EQ(stats.dims(), kTestModelDims);
  EXPECT_EQ(stats.vector_type(), "fp32");
  EXPECT_TRUE(stats.has_embedder());
  EXPECT_EQ(stats.prefix_sizes_size(), 2);
  {
    v1::DeleteRequest request;
    request.add_ids("random7");
    request.add_ids("austen0");
    v1::DeleteResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Delete(&context, request, &response).ok());
    EXPECT_EQ(response.deleted(), 2u);
  }
  EXPECT_EQ(server->index().vectors().size(), static_cast<int64_t>(kSentences.size()) + 48);

  // Health checking and reflection, as every server has them.
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  EXPECT_TRUE(rpc::ReportsServing(channel));
  std::string response;
  EXPECT_TRUE(rpc::CallRaw(channel, "/maximus.ServerInfoService/GetServerInfo", "", &response)
                  .ok());
  EXPECT_THAT(response, HasSubstr("maximus.embedding.v1.EmbeddingService"));
}

TEST_F(EmbeddingServiceTest, BadInputsAreRefusedWithTheField) {
  std::unique_ptr<EmbeddingServer> server = StartServer(TestDir("bad"));
  ASSERT_NE(server, nullptr);
  auto stub = StubFor(*server);
  auto upsert = [&](const v1::VectorEntry& entry) {
    v1::UpsertRequest request;
    *request.add_vectors() = entry;
    uint64_t acknowledged = 0;
    return UpsertAll(*stub, {request}, &acknowledged);
  };
  v1::VectorEntry entry;
  entry.set_id("x");
  for (int j = 0; j < kTestModelDims; ++j) entry.add_values(1.0f);
  ASSERT_TRUE(upsert(entry).ok());

  v1::VectorEntry bad = entry;
  bad.add_values(1.0f);
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT,
              "message 0 (the messages before it are stored): vectors[0].values has 129 "
              "dimensions; the index holds 128");
  bad = entry;
  bad.set_values(5, std::nanf(""));
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT, "vectors[0].values[5] is nan");
  bad.set_values(5, INFINITY);
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT, "vectors[0].values[5] is inf");
  bad = entry;
  bad.set_id("");
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT, "vectors[0].id is empty");
  bad = entry;
  bad.set_text("both");
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT,
              "vectors[0] has both values and text");
  bad = v1::VectorEntry();
  bad.set_id("y");
  ExpectError(upsert(bad), grpc::StatusCode::INVALID_ARGUMENT, "vectors[0].values has 0");

  auto embed = [&](const std::vector<std::string>& texts) {
    v1::EmbedRequest request;
    for (const std::string& t : texts) request.add_texts(t);
    v1::EmbedResponse response;
    grpc::ClientContext context;
    return stub->Embed(&context, request, &response);
  };
  ExpectError(embed({"fine", ""}), grpc::StatusCode::INVALID_ARGUMENT, "texts[1] is empty");
  ExpectError(embed({}), grpc::StatusCode::INVALID_ARGUMENT, "texts is empty");
  ExpectError(embed(std::vector<std::string>(65, "a")), grpc::StatusCode::INVALID_ARGUMENT,
              "texts has 65 texts; at most 64");
  ExpectError(embed({std::string(70000, 'a')}), grpc::StatusCode::INVALID_ARGUMENT,
              "texts[0] has 70000 bytes; at most 65536");
  {
    v1::EmbedRequest request;
    request.add_texts("a");
    request.add_prefix_sizes(100);
    v1::EmbedResponse response;
    grpc::ClientContext context;
    ExpectError(stub->Embed(&context, request, &response), grpc::StatusCode::INVALID_ARGUMENT,
                "prefix_sizes[0]: 100 is not a Matryoshka size");
  }

  auto search = [&](const std::function<void(v1::SearchRequest*)>& edit) {
    v1::SearchRequest request;
    request.mutable_vector()->mutable_values()->Add(entry.values().begin(), entry.values().end());
    request.set_k(5);
    edit(&request);
    v1::SearchResponse response;
    grpc::ClientContext context;
    return stub->Search(&context, request, &response);
  };
  ExpectError(search([](v1::SearchRequest* r) { r->set_k(0); }),
              grpc::StatusCode::INVALID_ARGUMENT, "k: 0 is not in [1, 1000]");
  ExpectError(search([](v1::SearchRequest* r) { r->set_k(1001); }),
              grpc::StatusCode::INVALID_ARGUMENT, "k: 1001 is not in [1, 1000]");
  ExpectError(search([](v1::SearchRequest* r) { r->set_oversample(101); }),
              grpc::StatusCode::INVALID_ARGUMENT, "oversample: 101 is not in [1, 100]");
  ExpectError(search([](v1::SearchRequest* r) { r->set_prefilter_dims(32); }),
              grpc::StatusCode::INVALID_ARGUMENT, "prefilter_dims: 32");
  ExpectError(search([](v1::SearchRequest* r) { r->mutable_vector()->add_values(1); }),
              grpc::StatusCode::INVALID_ARGUMENT, "vector has 129 dimensions");
  ExpectError(search([](v1::SearchRequest* r) { r->mutable_vector()->set_values(0, NAN); }),
              grpc::StatusCode::INVALID_ARGUMENT, "vector[0] is nan");
  ExpectError(search([](v1::SearchRequest* r) { r->set_text(""); }),
              grpc::StatusCode::INVALID_ARGUMENT, "text[0] is empty");
  ExpectError(search([](v1::SearchRequest* r) { r->clear_query(); }),
              grpc::StatusCode::INVALID_ARGUMENT, "query: set text or vector");
  EXPECT_TRUE(search([](v1::SearchRequest*) {}).ok());

  {
    v1::GetRequest request;
    request.set_id("unknown");
    v1::GetResponse response;
    grpc::ClientContext context;
    ExpectError(stub->Get(&context, request, &response), grpc::StatusCode::NOT_FOUND,
                "no vector has id \"unknown\"");
  }
  {
    v1::DeleteRequest request;
    request.add_ids("unknown");
    v1::DeleteResponse response;
    grpc::ClientContext context;
    ExpectError(stub->Delete(&context, request, &response), grpc::StatusCode::NOT_FOUND,
                "ids[0]: no vector has id \"unknown\"");
  }
  // A message over the request limit is refused by the transport.
  {
    v1::UpsertRequest huge;
    for (int i = 0; i < 2; ++i) {
      v1::VectorEntry* e = huge.add_vectors();
      e->set_id(absl::StrCat("huge", i));
      (*e->mutable_metadata())["blob"] = std::string(40 << 20, 'x');
    }
    uint64_t acknowledged = 0;
    const grpc::Status status = UpsertAll(*stub, {huge}, &acknowledged);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  }
  EXPECT_EQ(server->index().vectors().size(), 1);
}

TEST_F(EmbeddingServiceTest, WithoutACheckpointTextIsRefused) {
  EmbeddingServer::Options options;
  options.dims = 32;
  std::unique_ptr<EmbeddingServer> server = StartServer(TestDir("vectors_only"), options);
  ASSERT_NE(server, nullptr);
  auto stub = StubFor(*server);
  v1::SearchRequest request;
  request.set_text("a query");
  request.set_k(1);
  v1::SearchResponse response;
  grpc::ClientContext context;
  ExpectError(stub->Search(&context, request, &response), grpc::StatusCode::FAILED_PRECONDITION,
              "no checkpoint");
}

TEST_F(EmbeddingServiceTest, VectorsSurviveARestart) {
  const std::string dir = TestDir("restart");
  const std::vector<VectorRecord> records = RandomRecords(300, kTestModelDims, 2);
  {
    std::unique_ptr<EmbeddingServer> server = StartServer(dir);
    ASSERT_NE(server, nullptr);
    EmbeddingClient::Options options;
    options.batch = 64;
    auto client = EmbeddingClient::Connect({server->address()}, options);
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Upsert(records).ok());
    server->Shutdown();
  }
  std::unique_ptr<EmbeddingServer> server = StartServer(dir);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->index().vectors().size(), 300);
  auto client = EmbeddingClient::Connect({server->address()}, {});
  ASSERT_TRUE(client.ok());
  auto got = (*client)->Get("v123");
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<float> expected = NormalizedPrefix(records[123].values, kTestModelDims);
  for (int j = 0; j < kTestModelDims; ++j) EXPECT_NEAR(got->values[j], expected[j], 1e-6);
  EXPECT_EQ(got->metadata, records[123].metadata);
}

TEST_F(EmbeddingServiceTest, TlsAndTokenGuardTheServer) {
  const std::string cert_dir = TestDir("certs");
  std::filesystem::create_directories(cert_dir);
  const std::optional<rpc::TestCertificates> certificates = rpc::MakeTestCertificates(cert_dir);
  if (!certificates.has_value()) {
    GTEST_SKIP() << "no test certificates: the openssl tool is missing or failed";
  }
  EmbeddingServer::Options server_options;
  server_options.dims = 16;
  server_options.security.tls_cert_pem = certificates->server_cert_pem;
  server_options.security.tls_key_pem = certificates->server_key_pem;
  server_options.security.token = "embedding-token";
  std::unique_ptr<EmbeddingServer> server = StartServer(TestDir("tls"), server_options);
  ASSERT_NE(server, nullptr);
  EmbeddingClient::Options options;
  options.connect_timeout = absl::Seconds(2);
  EXPECT_FALSE(EmbeddingClient::Connect({server->address()}, options).ok());  // Plaintext.
  options.security.tls = true;
  options.security.tls_ca_pem = certificates->ca_pem;
  EXPECT_EQ(EmbeddingClient::Connect({server->address()}, options).status().code(),
            absl::StatusCode::kUnauthenticated);
  options.security.token = "embedding-token";
  auto client = EmbeddingClient::Connect({server->address()}, options);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Upsert(RandomRecords(10, 16, 3)).ok());
  EXPECT_EQ(*(*client)->Size(), 10);
}

TEST_F(EmbeddingServiceTest, ConcurrentUpsertsAndSearches) {
  EmbeddingServer::Options options;
  options.dims = 64;
  std::unique_ptr<EmbeddingServer> server = StartServer(TestDir("concurrent"), options);
  ASSERT_NE(server, nullptr);
  std::atomic<bool> writing{true};
  std::atomic<int> failures{0}, searches{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      auto client = EmbeddingClient::Connect({server->address()}, {});
      if (!client.ok()) {
        ++failures;
        return;
      }
      for (int b = 0; b < 10; ++b) {
        std::vector<VectorRecord> records = RandomRecords(40, 64, 100 * w + b);
        for (VectorRecord& r : records) r.id = absl::StrCat("w", w, "_", b, "_", r.id);
        if (!(*client)->Upsert(records).ok()) ++failures;
      }
    });
  }
  for (int s = 0; s < 2; ++s) {
    threads.emplace_back([&, s] {
      auto client = EmbeddingClient::Connect({server->address()}, {});
      if (!client.ok()) {
        ++failures;
        return;
      }
      std::mt19937_64 rng(s);
      while (writing) {
        SearchOptions search;
        search.mode = s == 0 ? SearchMode::kExact : SearchMode::kCoarseToFine;
        auto hits = (*client)->Search(RandomVector(64, rng), search);
        if (!hits.ok() || hits->size() > 10) ++failures;
        ++searches;
      }
    });
  }
  for (int w = 0; w < 3; ++w) threads[w].join();
  writing = false;
  for (size_t t = 3; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(searches, 0);
  EXPECT_EQ(server->index().vectors().size(), 3 * 10 * 40);
}

TEST_F(EmbeddingServiceTest, TwoShardsAnswerAsOneServer) {
  constexpr int64_t kDims = 256;
  EmbeddingServer::Options options;
  options.dims = kDims;
  std::unique_ptr<EmbeddingServer> single = StartServer(TestDir("single"), options);
  std::vector<std::unique_ptr<EmbeddingServer>> shards;
  for (int s = 0; s < 2; ++s) {
    options.shard = ShardAssignment{s, 2};
    shards.push_back(StartServer(TestDir(absl::StrCat("shard", s)), options));
    ASSERT_NE(shards.back(), nullptr);
  }
  ASSERT_NE(single, nullptr);
  auto one = EmbeddingClient::Connect({single->address()}, {});
  // Addresses in any order: each server says which shard it holds.
  auto two = EmbeddingClient::Connect({shards[1]->address(), shards[0]->address()}, {});
  ASSERT_TRUE(one.ok() && two.ok());
  const std::vector<VectorRecord> records = RandomRecords(3000, kDims, 4);
  ASSERT_TRUE((*one)->Upsert(records).ok());
  ASSERT_TRUE((*two)->Upsert(records).ok());
  EXPECT_EQ(*(*two)->Size(), 3000);
  EXPECT_GT(shards[0]->index().vectors().size(), 1200);
  EXPECT_GT(shards[1]->index().vectors().size(), 1200);
  // A server refuses ids of the other shard.
  EmbeddingClient::Options options_one;
  auto direct = EmbeddingClient::Connect({shards[0]->address()}, options_one);
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kInvalidArgument);

  std::mt19937_64 rng(5);
  for (int q = 0; q < 20; ++q) {
    const std::vector<float> query = RandomVector(kDims, rng);
    for (SearchMode mode : {SearchMode::kExact, SearchMode::kCoarseToFine}) {
      SearchOptions search;
      search.mode = mode;
      search.k = 10;
      search.oversample = 50;
      if (q % 2 == 1) search.filter = std::make_pair(std::string("group"), std::string("1"));
      auto a = (*one)->Search(query, search);
      auto b = (*two)->Search(query, search);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->size(), 10u);
      ASSERT_EQ(a->size(), b->size());
      for (size_t i = 0; i < a->size(); ++i) {
        EXPECT_EQ((*a)[i].id, (*b)[i].id) << "query " << q << " rank " << i;
        EXPECT_EQ((*a)[i].score, (*b)[i].score);
        EXPECT_EQ((*a)[i].metadata, (*b)[i].metadata);
      }
    }
  }
  // Get and Delete go to the id's shard.
  ASSERT_TRUE((*two)->Delete({"v1", "v2", "v3"}).ok());
  EXPECT_EQ(*(*two)->Size(), 2997);
  EXPECT_EQ((*two)->Get("v2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*two)->Get("v4").ok());
}

}  // namespace
}  // namespace maximus::embedding

int main(int argc, char** argv) {
  return maximus::embedding::testing::RunTestsWithPath(argc, argv, "PATH/tokenizer.json",
                                                       &maximus::embedding::g_tokenizer_path);
}
