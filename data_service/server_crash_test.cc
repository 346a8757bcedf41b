// Kills a real DataService process with SIGKILL while a client ingests
// through it, restarts it on the same store, and checks that every
// acknowledged document is present and intact, that nothing partial or
// unsent is stored, and that re-sent documents are not stored twice.
//
//   server_crash_test SERVER_BINARY TOKENIZER_JSON

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data_service/server_process.h"
#include "data_service/store_check.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"
#include "proto/data.grpc.pb.h"

namespace maximus::data {
namespace {

const char* server_path = nullptr;
const char* tokenizer_path = nullptr;
constexpr int32_t kVocab = 262144;

// Sends Ingest calls of two messages each until one fails; records the
// documents of every call that was acknowledged.
class Client {
 public:
  Client(int port, uint64_t seed, std::map<std::string, Document>* sent,
         std::set<std::string>* acknowledged)
      : stub_(DataService::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                       grpc::InsecureChannelCredentials()))),
        rng_(seed),
        sent_(sent),
        acknowledged_(acknowledged) {}

  void Run() {
    for (;;) {
      std::vector<Document> call_docs;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      IngestResponse response;
      auto writer = stub_->Ingest(&context, &response);
      for (int message = 0; message < 2; ++message) {
        IngestRequest request;
        std::vector<Document> docs = SyntheticDocuments(6, 3000, 1, rng_(), kVocab);
        // Re-send an acknowledged document now and then: stored once.
        if (!call_docs.empty() && rng_() % 2 == 0) docs.push_back(call_docs[0]);
        for (const Document& d : docs) {
          TokenSequence* t = request.add_documents()->mutable_tokens();
          t->mutable_ids()->Add(d.tokens.begin(), d.tokens.end());
          t->set_loss_mask(std::string(d.loss_mask.begin(), d.loss_mask.end()));
          std::lock_guard<std::mutex> lock(mu_);
          sent_->emplace(TokenStore::DocumentId(d.tokens), d);
          call_docs.push_back(d);
        }
        if (!writer->Write(request)) break;
      }
      writer->WritesDone();
      if (!writer->Finish().ok()) return;
      std::lock_guard<std::mutex> lock(mu_);
      for (const Document& d : call_docs) acknowledged_->insert(TokenStore::DocumentId(d.tokens));
      ++calls_;
    }
  }

  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::unique_ptr<DataService::Stub> stub_;
  std::mt19937_64 rng_;
  std::mutex mu_;
  std::map<std::string, Document>* sent_;
  std::set<std::string>* acknowledged_;
  int calls_ = 0;
};

TEST(ServerCrashTest, AcknowledgedIngestsSurviveSigkillOfTheServer) {
  ASSERT_NE(server_path, nullptr);
  const std::string dir = FreshTestDir("server_crash_store");
  const uint64_t seed = std::random_device()();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::map<std::string, Document> sent;
  std::set<std::string> acknowledged;
  for (int round = 0; round < 4; ++round) {
    absl::StatusOr<ServerProcess> server = ServerProcess::Start(
        server_path,
        {"--data_dir=" + dir, absl::StrCat("--tokenizer=", tokenizer_path), "--shards=3"});
    ASSERT_TRUE(server.ok()) << server.status();
    Client client(server->port(), seed + round, &sent, &acknowledged);
    std::thread thread([&client] { client.Run(); });
    // Kill at a random moment after the first acknowledgement.
    while (client.calls() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
    const int status = server->Stop(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    thread.join();
    const int64_t stored = ExpectStoreIntact(dir, acknowledged, &sent);
    EXPECT_LE(stored, static_cast<int64_t>(sent.size()));
    std::printf("round %d: %d calls acknowledged, %zu documents acknowledged, %lld stored\n", round,
                client.calls(), acknowledged.size(), static_cast<long long>(stored));
  }
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SERVER_BINARY TOKENIZER_JSON\n", argv[0]);
    return 2;
  }
  maximus::data::server_path = argv[1];
  maximus::data::tokenizer_path = argv[2];
  return RUN_ALL_TESTS();
}
